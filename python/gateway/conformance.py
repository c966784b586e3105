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
        role = {"scp": "SCP", "scu": "SCU", "both": "SCP and SCU"}[svc.role]
        lines.append(f"- **{svc.name}** ({svc.plugin}, {role}){': ' + ops if ops else ''}. {svc.description}")
    lines += _scu_section(config, host)
    lines += _export_section(config)
    return "\n".join(lines) + "\n"


def _scu_section(config: Any, host: Any) -> list[str]:
    """Every service in the SCU role, from the registry: SOP classes, the
    syntaxes it proposes and how it negotiates (its ``scu_behaviour``)."""
    lines = ["", "## SOP classes (SCU)", "",
             "| SOP class | UID | service | transfer syntaxes proposed |", "| --- | --- | --- | --- |"]
    scus = host.services.scu_services()
    for svc in scus:
        proposed = svc.scu_transfer_syntaxes or svc.transfer_syntaxes
        syntaxes = ", ".join(SYNTAX_NAMES.get(ts, ts) for ts in proposed)
        for uid in sorted(svc.resolve_sop_classes(config)):
            lines.append(f"| {_sop_name(uid)} | {uid} | {svc.name} | {syntaxes} |")
    for svc in scus:
        lines += ["", f"### {svc.name} ({svc.plugin})", *(f"- {line}" for line in svc.scu_behaviour)]
    return lines


def _export_section(config: Any) -> list[str]:
    """How forwarding (the core's queue and sender, decision 0004) uses the
    Storage SCU, as configured: SND-6..SND-8, CFG-2."""
    f = config.forwarding
    lines = [
        "",
        "## Forwarding (SND-6..SND-8)",
        "- Association, DIMSE and session timers per destination; expiry aborts and fails the operation (SND-6)",
        f"- Durable queue: retries with exponential backoff ({f.backoff_initial:g} s doubling to "
        f"{f.backoff_max:g} s, jittered), dead letter after {f.max_attempts} tries, circuit breaker after "
        f"{f.breaker_threshold} failed associations; at-least-once delivery",
        "- Storage commitment (storage-commitment-scu) after each batch to a destination that requests it (SND-8)",
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
