"""Storage Commitment Push Model, SCU side (SND-8, PS3.4 Annex J): the results.

The N-ACTION requests leave from the sender (:mod:`gateway.net.commitment`).
A Storage Commitment SCP may send its N-EVENT-REPORT on a new association it
opens to one of our listeners (PS3.4 J.3.3), proposing the SCP role by SCP/SCU
Role Selection; this service registers the SOP class with role "scu", so the
listener accepts that association with us as SCU, and records the result in
the index (transaction and items committed / failed, re-sends queued).

Settings: ``plugins/commitment.toml`` (see docs/commitment.md)::

    report_wait = 3.0        # seconds the N-ACTION association waits for a report on it
    retry_after = 600        # re-send the N-ACTION of a transaction without report
    give_up_after = 604800   # then fail it
    max_resends = 3          # re-sends of an instance whose commitment failed
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.hookspecs import hookimpl
from gateway.services import Service

if TYPE_CHECKING:  # pragma: no cover
    from gateway.messages import EventReportRequest

# gateway.net.commitment (pynetdicom, pydicom, the index) is imported where it is
# used: every command line imports this module to collect its ``commit`` command.
#: PS3.4 J.3: the SOP Class UID (gateway.net.commitment.STORAGE_COMMITMENT_PUSH_MODEL).
STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"


class StorageCommitmentSCU:
    """Receives Storage Commitment results (N-EVENT-REPORT-RQ, PS3.4 J.3.3)."""

    def n_event_report(self, request: EventReportRequest) -> int:
        from gateway.net import commitment as sc

        peer = f"{request.association.calling_ae}@{request.association.peer_host}" if request.association else ""
        data = request.payload.read() if request.payload is not None else b""
        return sc.receive_event_report(sc.index_for(request.config), request.config, request.event_type_id, data,
                                       request.context.transfer_syntax, sop_instance_uid=request.sop_instance_uid,
                                       peer=peer)


class CommitmentClient:
    """What the sender (and any plugin) calls to request storage commitment."""

    def request(self, destination: Any, sent: list[tuple[str, str, str]], index: Any, config: Any) -> str | None:
        """Record a transaction for ``sent`` (SOP Class, SOP Instance, Study
        Instance UIDs) and send its N-ACTION; the Transaction UID. See
        :func:`gateway.net.commitment.request_commitment`."""
        from gateway.net import commitment as sc

        return sc.request_commitment(destination, sent, index, config)


@hookimpl
def gateway_register_services(registry: Any) -> None:
    registry.add(Service(
        name="storage-commitment-scu",
        sop_classes=(STORAGE_COMMITMENT_PUSH_MODEL,),
        handler=StorageCommitmentSCU(),
        role="scu",
        client=CommitmentClient(),
        scu_behaviour=(
            "Proposes Storage Commitment Push Model with Explicit VR LE, Implicit VR LE and Explicit VR BE, "
            "with an SCP/SCU role selection item for the SCU role, plus Verification (SND-8)",
            "N-ACTION (Action Type 1) to the destination's commitment AE; the N-EVENT-REPORT is accepted on "
            "that association within report_wait seconds, or later on a new association where the SCP "
            "proposes the SCP role, which every listener accepts",
        ),
        description="Storage Commitment Push Model SCU: N-EVENT-REPORT results on a new association (SND-8)",
    ))


@hookimpl
def gateway_config_loaded(config: Any) -> list[str]:
    from gateway.config import PluginSettingsError
    from gateway.net import commitment as sc

    try:
        config.plugin_settings_as("commitment", sc.CommitmentSettings)
    except PluginSettingsError as exc:
        return exc.problems
    return []


@hookimpl
def gateway_register_commands(commands):
    """``commit ls``: the state of storage commitment per study (SND-8)."""
    from gateway_plugins.commit_command import add_commit_parser

    add_commit_parser(commands)
