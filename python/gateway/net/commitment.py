"""Storage Commitment Push Model SCU (SND-8, PS3.4 Annex J).

After a batch was delivered to a destination with ``request_storage_commitment
= true``, the sender calls :func:`request_commitment`: the transaction is
recorded in the index first (so it survives a lost N-ACTION or a restart),
then an N-ACTION-RQ (Action Type 1, Transaction UID, Referenced SOP Sequence)
goes to the destination's commitment AE on an association of its own.

The result, an N-EVENT-REPORT (Event Type 1: all committed, 2: some failed),
arrives either on that association while we wait ``report_wait`` seconds for
it, or later on an association the SCP opens to one of our listeners; the
built-in plugin ``gateway_plugins.commitment`` serves that case (the listener
accepts the SCP role the SCP proposes, see :mod:`gateway.net.contexts`). Both
paths end in :func:`apply_event_report`.

Transactions still ``requested`` after ``retry_after`` seconds get their
N-ACTION again (:func:`retry_outstanding`, called periodically by the sender
service); after ``give_up_after`` they are failed.

Settings: ``plugins/commitment.toml`` (:class:`CommitmentSettings`).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from io import BytesIO
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from gateway.identity import IMPLEMENTATION_CLASS_UID
from gateway.metrics import METRICS

log = logging.getLogger("gateway.commitment")

__all__ = ["STORAGE_COMMITMENT_PUSH_MODEL", "STORAGE_COMMITMENT_INSTANCE", "CommitmentSettings",
           "settings_of", "request_commitment", "send_action", "apply_event_report", "receive_event_report",
           "pending_commitments", "retry_outstanding", "new_transaction_uid", "index_for"]

#: PS3.4 J.3.1: the SOP class and its well-known SOP instance.
STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
VERIFICATION = "1.2.840.10008.1.1"
#: PS3.4 J.3.2.1.1: Action Type ID "Request Storage Commitment".
ACTION_REQUEST_COMMITMENT = 1
#: PS3.4 J.3.3.1.1: Event Type IDs of the result.
EVENT_ALL_COMMITTED = 1
EVENT_SOME_FAILED = 2

_PROPOSED_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2")

# N-EVENT-REPORT-RSP statuses an SCU answers (PS3.7 10.1.1.1.8, C.4), in the standard's words.
SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
NO_SUCH_SOP_INSTANCE = 0x0112
NO_SUCH_EVENT_TYPE = 0x0113
INVALID_ARGUMENT_VALUE = 0x0115
RESOURCE_LIMITATION = 0x0213


class CommitmentSettings(BaseModel):
    """``plugins/commitment.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: seconds to keep the N-ACTION association open for an N-EVENT-REPORT on it
    report_wait: float = Field(3.0, ge=0, le=600)
    #: a transaction without a report is sent its N-ACTION again after this long
    retry_after: float = Field(600.0, gt=0)
    #: ... and failed after this long (its instances were delivered; not re-sent)
    give_up_after: float = Field(7 * 86400.0, gt=0)
    #: an instance whose commitment failed is sent again at most this many times per destination
    max_resends: int = Field(3, ge=0, le=100)


def settings_of(config: Any) -> CommitmentSettings:
    if config is None or not hasattr(config, "plugin_settings"):
        return CommitmentSettings.model_validate({})
    return CommitmentSettings.model_validate(config.plugin_settings("commitment"))


def new_transaction_uid() -> str:
    """A fresh Transaction UID (0008,1195) under the implementation's UID root."""
    root = IMPLEMENTATION_CLASS_UID.rsplit(".", 1)[0]
    return str(generate_uid(prefix=f"{root}.3."))


def index_for(config: Any) -> Any:
    """This process's index for commitment bookkeeping."""
    from gateway.index import shared_index

    return shared_index(config.effective_database_url())


def _store(index: Any) -> Any:
    from gateway.index.commitments import CommitmentStore

    return CommitmentStore(index)


# ---- N-ACTION ---------------------------------------------------------------------


def _commitment_peer(dest: Any) -> Any:
    """The destination, aimed at its commitment AE (SND-8: AE/host/port each default to the store's)."""
    return dataclasses.replace(dest, ae_title=dest.commitment_ae_title or dest.ae_title,
                               host=dest.commitment_host or dest.host,
                               port=dest.commitment_port or dest.port)


def _action_dataset(transaction_uid: str, items: Sequence[tuple[str, str]]) -> Dataset:
    # PS3.4 J.3.2.1.1 table J.3-1: Transaction UID and Referenced SOP Sequence.
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    refs = []
    for sop_class, sop_instance in items:
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        ref.ReferencedSOPInstanceUID = sop_instance
        refs.append(ref)
    ds.ReferencedSOPSequence = refs
    return ds


def send_action(dest: Any, commitment: Any, index: Any, config: Any, wait: float | None = None) -> str:
    """Send the N-ACTION of a recorded transaction and wait up to ``wait`` seconds
    for an N-EVENT-REPORT on the same association. Returns what happened:
    ``reported`` (settled on this association), ``accepted`` (report still to
    come), ``refused`` (the SCP answered a failure status: state ``error``) or
    ``unsent`` (no association or no response: retried later). Never raises
    for network problems."""
    from gateway.net.scu import AssociationFailed
    from gateway.net.storescu import open_association
    from pynetdicom import evt

    settings = settings_of(config)
    wait = settings.report_wait if wait is None else wait
    store = _store(index)
    peer = _commitment_peer(dest)
    uid = commitment.transaction_uid
    reported = threading.Event()
    settled: list[threading.Thread] = []

    def on_report(event: Any) -> tuple[int, None]:
        # PS3.4 J.3.3: the SCP may answer on the N-ACTION association, within its own SCP role.
        # pynetdicom runs this on a thread of its own, which then sends our response.
        status, transaction = _report_from_event(event, index, config, dest.name)
        if status == SUCCESS and transaction == uid:
            settled.append(threading.current_thread())
            reported.set()
        return status, None

    store.touch(uid)
    try:
        # The role selection item states our role (SCU); an SCP reporting on
        # this association needs nothing more, and PS3.4 J.3.3 has an SCP that
        # reports later open its own association proposing the SCP role.
        # Verification rides along so that a peer refusing the SOP class still
        # establishes the association, and the refusal is recorded, not retried.
        assoc = open_association(peer, [(STORAGE_COMMITMENT_PUSH_MODEL, _PROPOSED_SYNTAXES),
                                        (VERIFICATION, ("1.2.840.10008.1.2",))], config,
                                 roles=[(STORAGE_COMMITMENT_PUSH_MODEL, True, False)],
                                 evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])
    except AssociationFailed as exc:
        METRICS.inc("gateway_commitment_actions_total", result="unsent")
        log.warning("storage commitment: no association for the N-ACTION; will retry",
                    extra={"destination": dest.name, "transaction_uid": uid, "why": str(exc)})
        return "unsent"
    try:
        if not any(cx.abstract_syntax == STORAGE_COMMITMENT_PUSH_MODEL for cx in assoc.accepted_contexts):
            store.action_answered(uid, 0x0122)  # Refused: SOP Class not supported (PS3.7 C.4)
            METRICS.inc("gateway_commitment_actions_total", result="refused")
            log.error("storage commitment: the destination does not accept the Storage Commitment "
                      "Push Model SOP class", extra={"destination": dest.name, "transaction_uid": uid})
            return "refused"
        items = [(i.sop_class_uid, i.sop_instance_uid) for i in commitment.items]
        status_ds, _reply = assoc.send_n_action(_action_dataset(uid, items), ACTION_REQUEST_COMMITMENT,
                                                STORAGE_COMMITMENT_PUSH_MODEL, STORAGE_COMMITMENT_INSTANCE)
        if not status_ds or "Status" not in status_ds:
            METRICS.inc("gateway_commitment_actions_total", result="unsent")
            log.warning("storage commitment: no N-ACTION response (DIMSE timeout or abort); will retry",
                        extra={"destination": dest.name, "transaction_uid": uid})
            return "unsent"
        status = int(status_ds.Status)
        if status != SUCCESS:
            store.action_answered(uid, status)
            METRICS.inc("gateway_commitment_actions_total", result="refused")
            log.error("storage commitment: N-ACTION refused", extra={
                "destination": dest.name, "transaction_uid": uid, "status": f"0x{status:04X}",
                "error_comment": str(status_ds.get("ErrorComment", ""))})
            return "refused"
        store.action_answered(uid, SUCCESS)
        METRICS.inc("gateway_commitment_actions_total", result="accepted")
        log.info("storage commitment requested", extra={
            "destination": dest.name, "transaction_uid": uid, "instances": len(items)})
        if wait > 0:
            reported.wait(wait)
        for handler in settled:  # its N-EVENT-REPORT-RSP must leave before our A-RELEASE-RQ
            if handler is not threading.current_thread():
                handler.join(dest.dimse_timeout or None)
        return "reported" if settled else "accepted"
    finally:
        if assoc.is_established:
            assoc.release()
        else:
            assoc.abort()


def request_commitment(dest: Any, sent: list[tuple[str, str, str]], index: Any, config: Any) -> str | None:
    """SND-8: record a transaction (new Transaction UID, items pending) in the index,
    then send N-ACTION (Action Type 1, Referenced SOP Sequence) on a new
    association to the destination's commitment AE (``commitment_ae_title`` /
    ``commitment_host`` / ``commitment_port``, each defaulting to the store's),
    proposing the Storage Commitment Push Model SOP class with an SCP/SCU role
    selection item, and wait ``report_wait`` seconds for an N-EVENT-REPORT on that
    association before releasing it.

    ``sent`` is (SOP Class UID, SOP Instance UID, Study Instance UID) per
    delivered instance. Returns the Transaction UID, or None when ``sent`` is
    empty. Never raises for network problems: the transaction stays
    ``requested`` and :func:`retry_outstanding` sends the N-ACTION again. Raises
    :class:`gateway.index.IndexUnavailable` when the transaction cannot be
    recorded (then nothing was sent).
    """
    if not sent:
        return None
    uid = new_transaction_uid()
    commitment = _store(index).create(uid, dest.name, sent)
    try:
        send_action(dest, commitment, index, config)
    except Exception as exc:  # the row is there: the retry loop will try again
        METRICS.inc("gateway_commitment_actions_total", result="unsent")
        log.error("storage commitment: N-ACTION failed; will retry", exc_info=exc,
                  extra={"destination": dest.name, "transaction_uid": uid})
    return uid


# ---- N-EVENT-REPORT -------------------------------------------------------------------


def _sequence(ds: Dataset, keyword: str, with_reason: bool) -> list[tuple]:
    out: list[tuple] = []
    for item in ds.get(keyword) or ():
        sop_class = str(item.get("ReferencedSOPClassUID", "") or "")
        sop_instance = str(item.get("ReferencedSOPInstanceUID", "") or "")
        if not sop_instance:
            raise ValueError(f"an item of {keyword} has no Referenced SOP Instance UID")
        if with_reason:
            reason = item.get("FailureReason")
            out.append((sop_class, sop_instance, int(reason) if reason is not None else None))
        else:
            out.append((sop_class, sop_instance))
    return out


def apply_event_report(index: Any, config: Any, event_type_id: int, info: Dataset | None, *,
                       sop_instance_uid: str = STORAGE_COMMITMENT_INSTANCE, peer: str = "") -> tuple[int, str | None]:
    """Record a Storage Commitment result (PS3.4 J.3.3) and say what to answer.

    Returns (N-EVENT-REPORT-RSP status, the Transaction UID when it was ours).
    An unknown Transaction UID or unreadable Event Information is answered
    0115 Invalid Argument Value, an unknown Event Type 0113, another SOP
    instance than the well-known one 0112, an unusable index 0213 Resource
    Limitation (the SCP may report again later) — never an exception.
    """
    from gateway.index import IndexUnavailable

    where = {"peer": peer, "event_type": event_type_id}
    if sop_instance_uid and sop_instance_uid != STORAGE_COMMITMENT_INSTANCE:
        log.warning("N-EVENT-REPORT for another SOP instance than the well-known one",
                    extra={**where, "sop_instance_uid": sop_instance_uid})
        return NO_SUCH_SOP_INSTANCE, None
    if event_type_id not in (EVENT_ALL_COMMITTED, EVENT_SOME_FAILED):
        log.warning("N-EVENT-REPORT with an unknown Event Type ID", extra=where)
        return NO_SUCH_EVENT_TYPE, None
    try:
        if info is None:
            raise ValueError("no Event Information")
        uid = str(info.get("TransactionUID", "") or "").strip()
        if not uid:
            raise ValueError("no Transaction UID (0008,1195)")
        committed = _sequence(info, "ReferencedSOPSequence", with_reason=False)
        failed = _sequence(info, "FailedSOPSequence", with_reason=True)
    except Exception as exc:  # pydicom decodes lazily: a broken element raises here
        log.warning("unreadable storage commitment result", extra={**where, "why": str(exc)})
        return INVALID_ARGUMENT_VALUE, None
    settings = settings_of(config)
    try:
        outcome = _store(index).apply_report(uid, committed, failed, max_resends=settings.max_resends)
    except IndexUnavailable as exc:
        log.error("storage commitment result not recorded: index unavailable",
                  extra={**where, "transaction_uid": uid, "why": str(exc)})
        return RESOURCE_LIMITATION, None
    if outcome is None:
        METRICS.inc("gateway_commitment_reports_total", result="unknown")
        log.warning("N-EVENT-REPORT for an unknown storage commitment transaction",
                    extra={**where, "transaction_uid": uid})
        return INVALID_ARGUMENT_VALUE, None
    METRICS.inc("gateway_commitment_reports_total", result=outcome.state)
    log.info("storage commitment result", extra={
        **where, "transaction_uid": uid, "destination": outcome.destination, "state": outcome.state,
        "committed": outcome.committed, "failed": outcome.failed, "resent": len(outcome.resent),
        "gave_up": len(outcome.gave_up), "unknown_instances": len(outcome.unknown),
        "duplicate": outcome.duplicate})
    if outcome.gave_up:
        log.error("storage commitment failed and will not be re-sent", extra={
            "destination": outcome.destination, "transaction_uid": uid, "instances": outcome.gave_up[:20]})
    return SUCCESS, uid


def decode_event_information(data: bytes, transfer_syntax: str) -> Dataset | None:
    """The Event Information of an N-EVENT-REPORT, encoded in the context's syntax."""
    if not data:
        return None
    from pynetdicom.dsutils import decode

    ts = UID(transfer_syntax)
    return decode(BytesIO(data), ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)


def receive_event_report(index: Any, config: Any, event_type_id: int, data: bytes, transfer_syntax: str, *,
                         sop_instance_uid: str = STORAGE_COMMITMENT_INSTANCE, peer: str = "") -> int:
    """:func:`apply_event_report` from the encoded Event Information (our listener's path)."""
    try:
        info = decode_event_information(data, transfer_syntax)
    except Exception as exc:
        log.warning("undecodable storage commitment result", extra={"peer": peer, "why": str(exc)})
        return INVALID_ARGUMENT_VALUE
    return apply_event_report(index, config, event_type_id, info, sop_instance_uid=sop_instance_uid, peer=peer)[0]


def _report_from_event(event: Any, index: Any, config: Any, destination: str) -> tuple[int, str | None]:
    rq = event.request
    try:
        info = event.event_information if rq.EventInformation is not None else None
    except Exception as exc:
        log.warning("undecodable storage commitment result", extra={"destination": destination, "why": str(exc)})
        return INVALID_ARGUMENT_VALUE, None
    try:
        return apply_event_report(index, config, int(rq.EventTypeID or 0), info,
                                  sop_instance_uid=str(rq.AffectedSOPInstanceUID or ""),
                                  peer=f"{destination} (N-ACTION association)")
    except Exception as exc:  # never let a handler bug abort the association
        log.error("storage commitment result handling failed", exc_info=exc)
        return PROCESSING_FAILURE, None


# ---- outstanding transactions -------------------------------------------------------------


def pending_commitments(index: Any, older_than: float = 0.0) -> list[Any]:
    """Transactions still ``requested`` whose last N-ACTION try is at least
    ``older_than`` seconds old (:class:`gateway.index.commitments.Commitment`)."""
    return _store(index).pending(older_than)


def _resolve(name: str, config: Any) -> Any:
    from gateway.net.storescu import resolve_destination

    return resolve_destination(name, config)


def retry_outstanding(index: Any, config: Any) -> int:
    """Send the N-ACTION again for transactions without a report after
    ``retry_after`` seconds (the N-ACTION or the report may have been lost; the
    same Transaction UID lets the SCP recognise a repeat). Transactions older
    than ``give_up_after`` are failed instead. Returns how many N-ACTIONs were
    re-sent. Safe to call periodically from the sender service; never raises
    for network problems."""
    from datetime import datetime, timedelta, timezone

    settings = settings_of(config)
    store = _store(index)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    resent = 0
    for commitment in store.pending(settings.retry_after):
        if commitment.created_at <= now - timedelta(seconds=settings.give_up_after):
            if store.expire(commitment.transaction_uid):
                METRICS.inc("gateway_commitment_reports_total", result="expired")
                log.error("storage commitment: no result in time; transaction failed", extra={
                    "destination": commitment.destination, "transaction_uid": commitment.transaction_uid})
            continue
        if not store.claim_retry(commitment.transaction_uid, settings.retry_after):
            continue  # another sender took it
        try:
            dest = _resolve(commitment.destination, config)
        except LookupError as exc:
            log.warning("storage commitment: destination no longer configured; not retried",
                        extra={"transaction_uid": commitment.transaction_uid, "why": str(exc)})
            continue
        log.info("storage commitment: re-sending N-ACTION", extra={
            "destination": commitment.destination, "transaction_uid": commitment.transaction_uid})
        try:
            send_action(dest, commitment, index, config)
        except Exception as exc:
            log.error("storage commitment: N-ACTION retry failed", exc_info=exc,
                      extra={"transaction_uid": commitment.transaction_uid})
        resent += 1
    return resent
