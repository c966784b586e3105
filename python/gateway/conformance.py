"""`dicom-gateway conformance`: a PS3.2-style conformance statement generated
from the service registry of the running configuration, so it always says
what the gateway actually negotiates. Requirement IDs refer to the project's
CONFORMANCE.md (derived from the Philips GEMINI and GE GENIE statements)."""

from __future__ import annotations

from typing import Any

from gateway import __version__

SYNTAX_NAMES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
}


def _sop_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name != uid else "(private)"


def render(config: Any, host: Any) -> str:
    node = config.node
    lines = [
        f"# dicom-gateway {__version__} — DICOM Conformance Statement (generated)",
        "",
        "## Implementation",
        f"- Implementation Class UID: {node.implementation_class_uid}; Version Name: {node.implementation_version_name} (STO-11)",
        f"- AE titles: {', '.join(sorted(config.all_ae_titles()))}; ports: "
        + ", ".join(f"{l.port} ({'/'.join(l.ae_titles)})" for l in config.listeners),
        f"- Maximum PDU received: {node.max_pdu or 'unlimited'} (STO-10); associations: "
        f"{node.max_associations or 'unlimited'} (STO-9); one outstanding operation per association",
        "",
        "## Association policy (STO-4)",
        "- Called AE title not served on the port: A-ASSOCIATE-RJ rejected-permanent, service-user, reason 7",
        "- Application context other than 1.2.840.10008.3.1.1.1: rejected-permanent, service-user, reason 2",
        "- Unparseable A-ASSOCIATE-RQ: rejected-permanent, service-provider (ACSE), reason 1",
        "- Association limit or storage below its low-water mark: rejected-transient, service-provider "
        "(presentation), local-limit-exceeded",
        "- Protocol errors after association: A-ABORT from the service provider with the PS3.8 table 9-26 reason",
        "",
        "## SOP classes (SCP)",
        "",
        "| SOP class | UID | service | transfer syntaxes (preference order) | selection |",
        "| --- | --- | --- | --- | --- |",
    ]
    for uid, services in sorted(host.services.scp_table(config).items()):
        svc = services[0]
        syntaxes = ", ".join(SYNTAX_NAMES.get(ts, ts) for ts in svc.transfer_syntaxes)
        policy = "acceptor's order" if svc.resolve_syntax_policy(config) == "acceptor" else "proposer's order"
        lines.append(f"| {_sop_name(uid)} | {uid} | {svc.name} | {syntaxes} | {policy} (STO-3) |")
    lines += [
        "",
        "Several presentation contexts for one abstract syntax are all accepted (STO-3).",
        "",
        "## Services",
    ]
    for svc in sorted(host.services.services.values(), key=lambda s: s.name):
        ops = ", ".join(op.upper().replace("_", "-") for op in svc.operations())
        lines.append(f"- **{svc.name}** ({svc.plugin}): {ops}. {svc.description}")
    lines += _export_section(config)
    return "\n".join(lines) + "\n"


def _export_section(config: Any) -> list[str]:
    """The Storage SCU (export) as configured: SND-1..SND-8, CFG-2."""
    f = config.forwarding
    lines = [
        "",
        "## Storage SCU (export, SND-1..SND-8)",
        "- Proposes each needed storage SOP class with Implicit VR LE, Explicit VR LE and Explicit VR BE, "
        "plus the object's stored syntax (SND-1); Verification with Implicit VR LE",
        "- Sends in the first accepted of Explicit VR LE > Explicit VR BE > Implicit VR LE, converting in Rust "
        "when stored otherwise (SND-2); a route may prefer another accepted syntax",
        "- Many C-STOREs per association (SND-3); a SOP class the peer did not accept: the object is "
        "failed and skipped (SND-4)",
        "- Refused (A7xx): the association ends and the object is retried later; another failure: the "
        "object is failed and the rest continue on a new association; Warning (Bxxx): sent, logged (SND-5)",
        "- Association, DIMSE and session timers per destination; expiry aborts and fails the operation (SND-6)",
        f"- Durable queue: retries with exponential backoff ({f.backoff_initial:g} s doubling to "
        f"{f.backoff_max:g} s, jittered), dead letter after {f.max_attempts} tries, circuit breaker after "
        f"{f.breaker_threshold} failed associations; at-least-once delivery",
        "- Storage Commitment Push Model SCU (1.2.840.10008.1.20.1) when a destination requests it: "
        "N-ACTION, N-EVENT-REPORT on the same or a new association (SND-8)",
        "",
    ]
    if config.remotes:
        lines += ["| remote | AE title | address | calling AE | max PDU | timers (assoc/DIMSE/session s) | "
                  "commitment | SND-7 options |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, r in sorted(config.remotes.items()):
            commit = "no"
            if r.request_storage_commitment:
                commit = (f"{r.commitment_ae_title or r.ae_title}@{r.commitment_host or r.host}:"
                          f"{r.commitment_port or r.port}")
            opts = [f"color SC as {r.color_sc}"]
            if r.multiframe_sc_to_single:
                opts.append("multi-frame SC split")
            if r.treat_as_archive:
                opts.append("archive")
            lines.append(f"| {name} | {r.ae_title} | {r.host}:{r.port} | {config.calling_ae_title_for(name)} | "
                         f"{r.max_pdu or 'unlimited'} | {r.association_timeout:g}/{r.dimse_timeout:g}/"
                         f"{r.session_timeout or '-'} | {commit} | {', '.join(opts)} |")
    else:
        lines.append("No remote AEs are configured (remotes/*.toml, CFG-2).")
    return lines
