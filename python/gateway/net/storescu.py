"""Storage SCU: sending stored objects to a peer (SND-1..SND-7).

One :class:`StoreAssociation` carries many C-STOREs (SND-3). Objects go out
without being decoded by pydicom: the stored Part 10 file is streamed from
its dataset offset in PDU-sized chunks, or first converted by the Rust
transcoder into a temporary file when the peer accepted another syntax
(SND-2). SND-7 conversions (multi-frame SC split, colour SC to grayscale)
live in :mod:`gateway.outgoing`; everything else is sent byte-for-byte.

:func:`send_items` is the list-level policy (SND-4/SND-5) used by both the
``dicom-gateway send`` command and the sender workers.

Presentation contexts (SND-1): every needed SOP class is proposed with each
usable transfer syntax in a context of its own (Explicit LE, Explicit BE,
Implicit LE, plus the object's stored syntax when it is another one), so the
gateway - not the peer - picks among the accepted ones in SND-2 order, and a
route's preferred syntax can win when the peer accepted it. When that would
exceed PS3.8's 128 contexts (one is Verification), the uncompressed syntaxes of a SOP class share
one context (in SND-2 order, the peer picks); SOP classes that still do not fit
are left for the next association (``covers()`` is False for them).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import split_dataset

from gateway.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from gateway.config.models import DESTINATION_SPEC
from gateway.net.failures import AssociationFailed, describe_rejection
from gateway.net.selftest import requestor_fast_path
from gateway.status import category

if TYPE_CHECKING:  # pragma: no cover
    from gateway.config.models import Remote

log = logging.getLogger("gateway.send")

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
#: SND-2 preference order among the syntaxes the Rust transcoder converts between.
UNCOMPRESSED = (EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE)
MAX_CONTEXTS = 127  # PS3.8 9.3.2.2: odd context IDs 1..255 (128), one kept for Verification
VERIFICATION = "1.2.840.10008.1.1"

#: SND-3 association states, as shown to operators.
CONNECTING, ACTIVE, COMPLETED, FAILED = "CONNECTING", "ACTIVE", "COMPLETED", "FAILED"



@dataclass(frozen=True)
class Destination:
    """Everything needed to talk to one Storage SCP (SND-6, SND-7, SND-8)."""

    name: str
    ae_title: str
    host: str
    port: int
    calling_ae_title: str
    max_pdu: int = 16384
    association_timeout: float = 30.0
    dimse_timeout: float = 60.0
    session_timeout: float = 0.0
    transfer_syntaxes: tuple[str, ...] | None = None
    multiframe_sc_to_single: bool = False
    color_sc: str = "color"
    request_storage_commitment: bool = False
    commitment_ae_title: str | None = None
    commitment_host: str | None = None
    commitment_port: int | None = None
    treat_as_archive: bool = False

    @classmethod
    def from_remote(cls, name: str, remote: "Remote", config: Any) -> "Destination":
        node_ae = config.node.ae_title if config is not None else "DICOM_GATEWAY"
        return cls(
            name=name,
            ae_title=remote.ae_title,
            host=remote.host,
            port=remote.port,
            calling_ae_title=remote.calling_ae_title or node_ae,
            max_pdu=remote.max_pdu,
            association_timeout=remote.association_timeout,
            dimse_timeout=remote.dimse_timeout,
            session_timeout=remote.session_timeout,
            transfer_syntaxes=tuple(remote.transfer_syntaxes) if remote.transfer_syntaxes else None,
            multiframe_sc_to_single=remote.multiframe_sc_to_single,
            color_sc=remote.color_sc,
            request_storage_commitment=remote.request_storage_commitment,
            commitment_ae_title=remote.commitment_ae_title,
            commitment_host=remote.commitment_host,
            commitment_port=remote.commitment_port,
            treat_as_archive=remote.treat_as_archive,
        )

    @property
    def conversions(self) -> "Any":
        from gateway.outgoing import Conversions

        return Conversions(self.multiframe_sc_to_single, self.color_sc)

    def __str__(self) -> str:
        address = f"{self.ae_title}@{self.host}:{self.port}"
        return address if self.name == address else f"{self.name} ({address})"


def resolve_destination(spec: str, config: Any) -> Destination:
    """A configured remote's name (case-insensitive) or 'AET@host:port'; LookupError with a helpful message otherwise."""
    remotes = dict(getattr(config, "remotes", {}) or {}) if config is not None else {}
    wanted = spec.strip()
    found = config.remote(wanted) if config is not None else None
    if found is not None:
        return Destination.from_remote(found[0], found[1], config)
    m = DESTINATION_SPEC.match(wanted)
    if m:
        port = int(m["port"])
        aet = m["aet"].strip()
        if not 1 <= port <= 65535:
            raise LookupError(f"destination {spec!r}: port {port} is outside 1..65535")
        if not aet or "\\" in aet or any(ord(c) < 0x20 or ord(c) > 0x7E for c in aet):
            raise LookupError(f"destination {spec!r}: {aet!r} is not a valid AE title (1-16 printable ASCII characters)")
        node_ae = config.node.ae_title if config is not None else "DICOM_GATEWAY"
        return Destination(name=wanted, ae_title=aet, host=m["host"].strip("[]"), port=port,
                           calling_ae_title=node_ae)
    known = ", ".join(sorted(remotes)) or "none configured"
    hint = ""
    if remotes:
        import difflib

        close = difflib.get_close_matches(wanted.lower(), [n.lower() for n in remotes], n=1)
        if close:
            hint = f"; did you mean {close[0]!r}?"
    raise LookupError(
        f"unknown destination {spec!r}: give a remote's name (remotes/<name>.toml; known: {known}) "
        f"or AET@host:port{hint}"
    )


@dataclass(frozen=True)
class Outgoing:
    """One stored object to send."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    key: Any = None
    preferred_syntax: str | None = None
    #: A C-MOVE sub-operation: (Move Originator AE Title, Move Originator Message ID),
    #: carried in the C-STORE-RQ (PS3.7 9.1.1.1).
    move_originator: tuple[str, int] | None = None
    #: QRS-7: the patient's corrected demographics, (keyword, value) pairs, put into the
    #: copy that goes (the stored file is never changed); None: sent as stored.
    demographics: tuple[tuple[str, str], ...] | None = None


@dataclass
class SendResult:
    item: Outgoing
    state: str  # "done" | "failed" | "cancelled" (not attempted: send_items was cancelled)
    status: int | None
    syntax: str | None = None
    error: str = ""  # why it failed; for a done item, the peer's warnings (SND-5), if any
    retryable: bool = True
    refused: bool = False
    #: SOP Instance UIDs the peer now holds for this item (more than one, or
    #: other UIDs, after SND-7 conversions); what storage commitment asks for.
    sent: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == "done"


def _status_rank(code: int | None) -> int:
    if code is None:
        return 0
    cat = category(code)
    return {"Success": 0, "Warning": 1}.get(cat, 2)


def is_refused(code: int) -> bool:
    """SND-5: Refused is the A7xx range (out of resources, and the GENIE private A710..A740)."""
    return (code & 0xFF00) == 0xA700


def syntax_uid(value: str) -> str:
    """A transfer syntax UID from a UID or the short names 'implicit' / 'explicit-le' / 'explicit-be'
    (route options may use either)."""
    from gateway.transcode import SYNTAXES

    v = str(value).strip()
    return SYNTAXES.get(v.lower(), v)


def _workdir(config: Any) -> str | None:
    # Converted copies of large PET/CT objects belong on the data disk, not a
    # tmpfs /tmp; fall back to the system temp dir when there is no data dir.
    data_dir = getattr(getattr(config, "node", None), "data_dir", None)
    if data_dir and os.path.isdir(data_dir):
        path = os.path.join(data_dir, "tmp")
        try:
            os.makedirs(path, exist_ok=True)
            return path
        except OSError:
            return None
    return None


def open_association(dest: Destination, contexts: Sequence[tuple[str, Sequence[str]]], config: Any = None,
                     *, roles: Sequence[tuple[str, bool, bool]] = (), evt_handlers: list | None = None) -> Any:
    """An established pynetdicom Association with the destination's SND-6 timers.

    ``contexts`` is a list of (abstract syntax, transfer syntaxes), one
    presentation context each; ``roles`` (SOP class, scu, scp) adds SCP/SCU
    role selection (PS3.7 D.3.3.4). Raises AssociationFailed (rejected /
    aborted / unreachable) when not established within association_timeout.
    """
    from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

    node = getattr(config, "node", None)
    ae = AE(ae_title=dest.calling_ae_title)
    ae.implementation_class_uid = getattr(node, "implementation_class_uid", IMPLEMENTATION_CLASS_UID)
    ae.implementation_version_name = getattr(node, "implementation_version_name", IMPLEMENTATION_VERSION_NAME)
    # SND-6: the association timer bounds TCP connect and the A-ASSOCIATE-AC
    # wait; pynetdicom's idle network timer is off because the DIMSE and
    # session timers are enforced per operation here.
    timeout = dest.association_timeout or None
    ae.connection_timeout = timeout
    ae.acse_timeout = timeout
    ae.dimse_timeout = dest.dimse_timeout or None
    ae.network_timeout = None
    ae.maximum_pdu_size = dest.max_pdu
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, list(syntaxes))
    ext_neg = []
    for sop_class, scu, scp in roles:
        item = SCP_SCU_RoleSelectionNegotiation()
        item.sop_class_uid = sop_class
        item.scu_role = scu
        item.scp_role = scp
        ext_neg.append(item)
    connected = threading.Event()
    handlers = list(evt_handlers or []) + [(evt.EVT_CONN_OPEN, lambda event: connected.set())]
    started = time.monotonic()
    assoc: Any
    try:
        # The Rust receive path, blocking waits, streamed C-STOREs; or plain pynetdicom
        # (receive_path = "pynetdicom", a refused self-test): gateway.net.requestor.
        from gateway.net import requestor

        fast = requestor_fast_path(config)
        settings = requestor.receive_settings(dest.max_pdu, _workdir(config) or tempfile.gettempdir()) if fast else None
        assoc = requestor.associate(ae, dest.host, dest.port, ae_title=dest.ae_title, max_pdu=dest.max_pdu,
                                    settings=settings, ext_neg=ext_neg or None, evt_handlers=handlers, fast=fast)
    except (OSError, ValueError) as exc:
        raise AssociationFailed("unreachable", f"{dest}: cannot open an association: {exc}") from exc
    if assoc.is_established:
        sock = assoc.dul.socket.socket if assoc.dul.socket else None
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        return assoc
    elapsed = time.monotonic() - started
    if assoc.is_rejected:
        rj = assoc.acceptor.primitive
        raise AssociationFailed("rejected", f"{dest}: association rejected: " + describe_rejection(
            int(rj.result), int(rj.result_source), int(rj.diagnostic)))
    timed_out = bool(timeout) and elapsed >= timeout * 0.9
    if not connected.is_set():
        why = "TCP connect timed out" if timed_out else "connection refused or failed"
        raise AssociationFailed("unreachable", f"{dest}: no association with {dest.host}:{dest.port} "
                                               f"({why} after {elapsed:.1f} s)")
    if timed_out:
        raise AssociationFailed("unreachable", f"{dest}: no answer to A-ASSOCIATE-RQ within the association "
                                               f"timeout ({dest.association_timeout:g} s, SND-6)")
    if assoc.rejected_contexts and not assoc.accepted_contexts:
        # pynetdicom aborts an A-ASSOCIATE-AC that accepts no context at all.
        classes = sorted({str(cx.abstract_syntax) for cx in assoc.rejected_contexts})
        raise AssociationFailed("rejected", f"{dest}: the peer accepted none of the proposed presentation "
                                            f"contexts (SOP classes {', '.join(classes)})")
    raise AssociationFailed("aborted", f"{dest}: association aborted by the peer")


class _Plan:
    """What an item needs on the wire, after SND-7: [(sop class, syntax)]; or why it cannot go."""

    def __init__(self, needs: list[tuple[str, str]] | None, error: str = "") -> None:
        self.needs = needs or []
        self.error = error


def _plan_item(item: Outgoing, dest: Destination) -> _Plan:
    from gateway.outgoing import ConversionError, plan

    try:
        return _Plan(plan(item.path, item.sop_class_uid, item.transfer_syntax_uid, dest.conversions))
    except (ConversionError, OSError) as exc:
        return _Plan(None, str(exc))


def _candidate_syntaxes(dest: Destination, stored: str) -> list[str]:
    """SND-1: what we may propose for an object stored in ``stored``."""
    if dest.transfer_syntaxes:
        # The operator's list is authoritative (a peer known to mishandle a
        # syntax); we can produce its uncompressed entries from any uncompressed
        # object, and a compressed entry only from an object stored in it.
        if stored in UNCOMPRESSED:
            return [ts for ts in dest.transfer_syntaxes if ts in UNCOMPRESSED]
        return [ts for ts in dest.transfer_syntaxes if ts == stored]
    if stored in UNCOMPRESSED:
        return list(UNCOMPRESSED)
    # A compressed object can only go as it is: the transcoder converts
    # between uncompressed syntaxes (so the peer must accept `stored`).
    return [stored]


def _build_contexts(needs: Iterable[tuple[str, str]], dest: Destination) -> tuple[list[tuple[str, list[str]]], set[str]]:
    """Presentation contexts for the (sop class, stored syntax) pairs, and the SOP classes they cover."""
    per_class: dict[str, list[str]] = {}
    for sop_class, stored in needs:
        syntaxes = per_class.setdefault(sop_class, [])
        for ts in _candidate_syntaxes(dest, stored):
            if ts not in syntaxes:
                syntaxes.append(ts)
    # Keep SND-2 order inside a class: uncompressed first in preference order.
    for sop_class, syntaxes in per_class.items():
        syntaxes.sort(key=lambda ts: UNCOMPRESSED.index(ts) if ts in UNCOMPRESSED else len(UNCOMPRESSED))
    separate = sum(len(v) for v in per_class.values())
    contexts: list[tuple[str, list[str]]] = []
    covered: set[str] = set()
    if separate <= MAX_CONTEXTS:
        for sop_class, syntaxes in per_class.items():
            contexts.extend((sop_class, [ts]) for ts in syntaxes)
            covered.add(sop_class)
        return contexts, covered
    for sop_class, syntaxes in per_class.items():
        plain = [ts for ts in syntaxes if ts in UNCOMPRESSED]
        grouped = ([(sop_class, plain)] if plain else []) + [(sop_class, [ts]) for ts in syntaxes if ts not in UNCOMPRESSED]
        if len(contexts) + len(grouped) > MAX_CONTEXTS:
            continue  # left for the next association
        contexts.extend(grouped)
        covered.add(sop_class)
    return contexts, covered


class StoreAssociation:
    """One association to a Storage SCP carrying many C-STOREs (SND-3)."""

    def __init__(self, dest: Destination, assoc: Any, covered: set[str], config: Any) -> None:
        self.dest = dest
        self.config = config
        self._assoc = assoc
        self._covered = covered
        self._started = time.monotonic()
        self._msg_id = 0
        self._lock = threading.Lock()
        self._plans: dict[Path, _Plan] = {}
        self.transform: Callable[[Any, Destination], None] | None = None
        # SOP class -> accepted transfer syntax -> context id
        self._accepted: dict[str, dict[str, int]] = {}
        self._proposed: dict[str, list[str]] = {}
        for cx in list(assoc.accepted_contexts) + list(assoc.rejected_contexts):
            syntaxes = self._proposed.setdefault(str(cx.abstract_syntax), [])
            syntaxes.extend(str(ts) for ts in cx.transfer_syntax if str(ts) not in syntaxes)
        for cx in assoc.accepted_contexts:
            for ts in cx.transfer_syntax:
                self._accepted.setdefault(str(cx.abstract_syntax), {}).setdefault(str(ts), cx.context_id)

    # -- opening -------------------------------------------------------
    @classmethod
    def open(cls, dest: Destination, items: Iterable[Outgoing], config: Any,
             transform: Callable[[Any, Destination], None] | None = None) -> "StoreAssociation":
        """SND-1: contexts for every SOP class the items need (after SND-7 conversions);
        raises AssociationFailed (rejected / aborted / unreachable). ``transform``
        (:func:`gateway.outgoing.outgoing_transform`) changes each object before it goes."""
        plans: dict[Path, _Plan] = {}
        needs: list[tuple[str, str]] = []
        for item in items:
            p = _plan_item(item, dest)
            plans[Path(item.path)] = p
            needs.extend(p.needs)
        contexts, covered = _build_contexts(needs, dest)
        # SND-1: Verification with Implicit LE as well. It also keeps the
        # association up when the peer accepts none of the storage contexts,
        # so those objects are reported as SND-4 failures, not as a dead peer.
        contexts.append((VERIFICATION, [IMPLICIT_LE]))
        assoc = open_association(dest, contexts, config)
        sa = cls(dest, assoc, covered, config)
        sa._plans = plans
        sa.transform = transform
        log.info("association to %s established: %d context(s) proposed, %d accepted",
                 dest, len(contexts), len(assoc.accepted_contexts))
        return sa

    # -- queries -------------------------------------------------------
    def accepts(self, sop_class_uid: str) -> bool:
        return bool(self._accepted.get(str(sop_class_uid)))

    def accepted_syntaxes(self, sop_class_uid: str) -> list[str]:
        return list(self._accepted.get(str(sop_class_uid), {}))

    def _plan(self, item: Outgoing) -> _Plan:
        p = self._plans.get(item.path)
        if p is None:
            p = self._plans[item.path] = _plan_item(item, self.dest)
        return p

    def covers(self, item: Outgoing) -> bool:
        """A context was proposed for everything this item needs (an unplannable item is
        covered: send() reports why it cannot go)."""
        p = self._plan(item)
        return not p.needs or all(sc in self._covered for sc, _ in p.needs)

    @property
    def established(self) -> bool:
        """The association is up (it may be past its session timer: release it then)."""
        return bool(self._assoc.is_established)

    @property
    def alive(self) -> bool:
        return bool(self._assoc.is_established) and not self._session_expired()

    def _session_expired(self) -> bool:
        s = self.dest.session_timeout
        return bool(s) and time.monotonic() - self._started >= s

    def _remaining_session(self) -> float | None:
        s = self.dest.session_timeout
        if not s:
            return None
        return max(0.0, s - (time.monotonic() - self._started))

    @property
    def association(self) -> Any:
        """The underlying pynetdicom Association (for gateway.net code only)."""
        return self._assoc

    # -- syntax choice (SND-2) ----------------------------------------
    def choose_syntax(self, sop_class: str, stored: str, preferred: str | None = None) -> tuple[str, int] | None:
        accepted = self._accepted.get(str(sop_class), {})
        if not accepted:
            return None
        producible = [stored] if stored not in UNCOMPRESSED else list(UNCOMPRESSED)
        preferred = syntax_uid(preferred) if preferred else None
        order: list[str] = []
        if preferred and preferred in accepted and preferred in producible:
            order.append(preferred)
        if stored not in UNCOMPRESSED and stored in accepted:
            order.append(stored)
        order.extend(ts for ts in UNCOMPRESSED if ts in accepted and ts in producible)
        if not order:
            return None
        return order[0], accepted[order[0]]

    # -- sending -------------------------------------------------------
    def precheck(self, item: Outgoing) -> SendResult | None:
        """The Failed result for an item that cannot go on this association at all (SND-4,
        unreadable file, no producible syntax), without touching the network; None if it can."""
        plan = self._plan(item)
        if plan.error:
            return SendResult(item, "failed", None, error=plan.error, retryable=False)
        missing = sorted({sc for sc, _ in plan.needs if not self.accepts(sc)})
        if missing:
            # SND-4: marked failed and skipped; it would fail again with this peer as configured.
            names = "; ".join(f"{_uid_name(sc)} with {', '.join(_uid_name(ts) for ts in self._proposed.get(sc, []))}"
                              for sc in missing)
            return SendResult(item, "failed", None, retryable=False,
                              error=f"the peer did not accept SOP class {names} (SND-4)")
        for sc, stored in plan.needs:
            if self.choose_syntax(sc, stored, item.preferred_syntax) is None:
                return SendResult(item, "failed", None, retryable=False, error=(
                    f"the peer accepted SOP class {sc} only in {', '.join(self.accepted_syntaxes(sc))}, "
                    f"and the object is stored in {stored}, which the gateway cannot convert from"))
        return None

    def send(self, item: Outgoing) -> SendResult:
        """SND-2/SND-7 for one item; never raises for peer or file problems."""
        from gateway.outgoing import ConversionError, prepare

        with self._lock:
            if not self._assoc.is_established:
                return SendResult(item, "failed", None, error="association no longer established")
            if self._session_expired():
                self.abort()
                return SendResult(item, "failed", None, error=f"session timeout ({self.dest.session_timeout:g} s) expired (SND-6)")
            unsendable = self.precheck(item)
            if unsendable is not None:
                return unsendable
            scratch = _Scratch(self.config)
            try:
                try:
                    # SND-7 conversions write files; most objects need none,
                    # and then no temporary directory is made at all.
                    workdir = scratch.path() if self.dest.conversions.may_apply(item.sop_class_uid) else None
                    parts = prepare(item.path, item.sop_class_uid, item.sop_instance_uid,
                                    item.transfer_syntax_uid, self.dest.conversions, workdir)
                except (ConversionError, OSError) as exc:
                    return SendResult(item, "failed", None, error=f"{item.path}: {exc}", retryable=False)
                return self._send_parts(item, parts, scratch)
            finally:
                scratch.remove()

    def _send_parts(self, item: Outgoing, parts: list[Any], scratch: "_Scratch") -> SendResult:
        from gateway.transcode import TranscodeError, transcode

        worst: int | None = None
        syntax: str | None = None
        comments: list[str] = []
        sent: list[tuple[str, str]] = []
        for n, part in enumerate(parts):
            # Re-encoded only for a plugin transform or corrected demographics (QRS-7);
            # otherwise the stored file goes byte for byte.
            if self.transform is not None or item.demographics:
                from gateway.outgoing import apply_transform
                from gateway.plugins import HookError

                try:
                    part = dataclasses.replace(part, path=apply_transform(
                        self.transform, Path(part.path), self.dest, scratch.path() / f"out-{n}.dcm",
                        demographics=item.demographics))
                except HookError as exc:
                    return SendResult(item, "failed", worst, syntax, retryable=False, sent=sent,
                                      error=f"gateway_transform_outgoing: {exc}")
                except Exception as exc:  # pydicom on a damaged file, or a dataset the plugin broke
                    return SendResult(item, "failed", worst, syntax, retryable=False, sent=sent,
                                      error=f"{part.path}: cannot apply "
                                            f"{'gateway_transform_outgoing' if self.transform else 'the corrected demographics'}: {exc}")
            try:
                meta, offset = read_file_meta(Path(part.path))
            except Exception as exc:  # pydicom raises several types for a damaged header
                return SendResult(item, "failed", worst, syntax, f"{part.path}: unreadable File Meta: {exc}", retryable=False, sent=sent)
            stored = str(meta.get("TransferSyntaxUID", "") or part.transfer_syntax_uid)
            sop_class = str(meta.get("MediaStorageSOPClassUID", "") or part.sop_class_uid)
            sop_instance = str(meta.get("MediaStorageSOPInstanceUID", "") or part.sop_instance_uid)
            choice = self.choose_syntax(sop_class, stored, item.preferred_syntax)
            if choice is None:
                return SendResult(item, "failed", worst, syntax, retryable=False, sent=sent, error=(
                    f"no accepted presentation context for {sop_class} usable with an object stored in {stored}"))
            ts, cx_id = choice
            path, off = Path(part.path), offset
            if ts != stored:
                # SND-2: convert in Rust to the chosen syntax; the dataset alone
                # (no File Meta) so it streams from offset 0.
                path, off = scratch.path() / f"wire-{n}.bin", 0
                try:
                    transcode(part.path, ts, file_meta=False, out=path,
                              implementation_class_uid=self._assoc.ae.implementation_class_uid,
                              implementation_version_name=self._assoc.ae.implementation_version_name)
                except (TranscodeError, OSError) as exc:
                    return SendResult(item, "failed", worst, syntax, retryable=False, sent=sent,
                                      error=f"{item.path}: cannot convert {stored} -> {ts}: {exc}")
            code, comment, problem = self._c_store(cx_id, sop_class, sop_instance, path, off, item.move_originator)
            if problem:
                # SND-6: no response in time (or the link died): the association
                # is aborted; the object may be retried on a new one.
                return SendResult(item, "failed", worst, syntax or ts, problem, retryable=True, sent=sent)
            assert code is not None
            syntax = syntax or ts
            if _status_rank(code) > _status_rank(worst) or worst is None:
                worst = code
            cat = category(code)
            if cat == "Warning":
                # SND-5: a warning counts as sent.
                log.warning("C-STORE %s to %s: warning 0x%04X%s", sop_instance, self.dest, code,
                            f" ({comment})" if comment else "")
                comments.append(f"warning 0x{code:04X}" + (f": {comment}" if comment else ""))
            if cat in ("Success", "Warning"):
                sent.append((sop_class, sop_instance))
                continue
            text = f"C-STORE status 0x{code:04X} ({cat})" + (f": {comment}" if comment else "")
            if is_refused(code):
                # SND-5: Refused ends the association.
                self.release()
                return SendResult(item, "failed", code, syntax, text, retryable=True, refused=True, sent=sent)
            return SendResult(item, "failed", code, syntax, text, retryable=True, sent=sent)
        return SendResult(item, "done", worst if worst is not None else 0, syntax, "; ".join(comments), sent=sent)

    def _c_store(self, cx_id: int, sop_class: str, sop_instance: str, path: Path, offset: int,
                 move_originator: tuple[str, int] | None = None) -> tuple[int | None, str, str]:
        """One C-STORE streamed from ``path`` at ``offset``: (status, error comment, problem)."""
        assoc = self._assoc
        self._msg_id = self._msg_id % 65535 + 1
        remaining = self._remaining_session()
        limits = [t for t in (self.dest.dimse_timeout or None, remaining) if t is not None]
        wait = min(limits) if limits else None
        if getattr(assoc, "gw_fast", False):  # no primitive: its UID setters validate with regexes
            return self._c_store_fast(cx_id, sop_class, sop_instance, path, offset, wait, remaining, move_originator)
        req = C_STORE()
        req.MessageID = self._msg_id
        req.Priority = 2  # LOW, pynetdicom's default (PS3.7 9.1.1.1)
        req.AffectedSOPClassUID = sop_class
        req.AffectedSOPInstanceUID = sop_instance
        if move_originator is not None:
            req.MoveOriginatorApplicationEntityTitle = move_originator[0]
            req.MoveOriginatorMessageID = move_originator[1]
        # pynetdicom streams a dataset given as (path, offset) in PDU-sized
        # reads instead of holding an encoded copy (STORE_SEND_CHUNKED_DATASET path).
        req._dataset_path = (Path(path), offset)
        assoc.dimse_timeout = wait
        # Mirrors Association.send_c_store: pause the reactor so it does not
        # consume the response before get_msg does.
        assoc._reactor_checkpoint.clear()
        while not assoc._is_paused and assoc.is_established:
            time.sleep(0.0001)
        try:
            assoc.dimse.send_msg(req, cx_id)
            _cx, rsp = assoc.dimse.get_msg(block=True)
        except OSError as exc:
            assoc._reactor_checkpoint.set()
            self.abort()
            return None, "", f"cannot read {path}: {exc}"
        finally:
            assoc._reactor_checkpoint.set()
        return self._check_response(rsp, remaining)

    def _c_store_fast(self, cx_id: int, sop_class: str, sop_instance: str, path: Path, offset: int,
                      wait: float | None, remaining: float | None,
                      move_originator: tuple[str, int] | None = None) -> tuple[int | None, str, str]:
        """_c_store on a gateway.net.requestor association: the command encoded by hand,
        the data set streamed from the file by this thread, the response awaited on an event."""
        from gateway.net.fastpath import encode_store_command
        from gateway.net.requestor import SendFailed

        assoc = self._assoc
        command = encode_store_command(self._msg_id, sop_class, sop_instance, move_originator=move_originator)
        deadline = time.monotonic() + remaining if remaining is not None else None
        try:
            assoc.send_file_message(cx_id, command, path, offset, self.dest.dimse_timeout or None, deadline)
        except SendFailed as exc:
            was_up = assoc.is_established
            self.abort()
            if exc.timed_out:
                if deadline is not None and time.monotonic() >= deadline - 0.01:
                    return None, "", (f"session timeout ({self.dest.session_timeout:g} s) expired while sending "
                                      f"the C-STORE; association aborted (SND-6)")
                return None, "", (f"the peer took no data within the DIMSE timeout ({self.dest.dimse_timeout:g} s) "
                                  f"while the C-STORE was sent; association aborted (SND-6)")
            if not was_up:
                return None, "", "association aborted or connection closed before the C-STORE was sent"
            return None, "", f"{exc}; association aborted"
        except OSError as exc:
            self.abort()
            return None, "", f"cannot read {path}: {exc}"
        # SND-6: the DIMSE timer runs from the end of the request to the response.
        if remaining is not None and deadline is not None:
            remaining = max(0.0, deadline - time.monotonic())
            wait = min(t for t in (self.dest.dimse_timeout or None, remaining) if t is not None)
        rsp = assoc.wait_response(wait)
        return self._check_response(rsp, remaining)

    def _check_response(self, rsp: Any, remaining: float | None) -> tuple[int | None, str, str]:
        assoc = self._assoc
        if rsp is None:
            expired_session = remaining is not None and (self.dest.dimse_timeout == 0 or remaining <= self.dest.dimse_timeout)
            was_up = assoc.is_established
            self.abort()
            if not was_up:
                return None, "", "association aborted or connection closed while waiting for the C-STORE response"
            if expired_session:
                return None, "", f"session timeout ({self.dest.session_timeout:g} s) expired during C-STORE; association aborted (SND-6)"
            return None, "", f"no C-STORE response within the DIMSE timeout ({self.dest.dimse_timeout:g} s); association aborted (SND-6)"
        if (not getattr(rsp, "is_valid_response", True) or rsp.Status is None
                or not isinstance(rsp, C_STORE) or rsp.MessageIDBeingRespondedTo != self._msg_id):
            self.abort()
            return None, "", "invalid C-STORE response from the peer; association aborted"
        return int(rsp.Status), str(getattr(rsp, "ErrorComment", "") or ""), ""

    # -- ending --------------------------------------------------------
    def release(self) -> None:
        try:
            if self._assoc.is_established:
                self._assoc.release()
        except Exception:  # a peer that vanished mid-release: nothing left to free
            log.debug("release of association to %s failed", self.dest, exc_info=True)
            self._assoc.abort()

    def abort(self) -> None:
        try:
            self._assoc.abort()
        except Exception:
            log.debug("abort of association to %s failed", self.dest, exc_info=True)

    def __enter__(self) -> "StoreAssociation":
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.release()
        else:
            self.abort()


def _uid_name(uid: str) -> str:
    name = UID(uid).name
    return f"{name} ({uid})" if name != uid else uid


#: File Meta elements the sender needs (PS3.10 7.1), by element number in group 0002.
_META_KEYWORDS = {0x0002: "MediaStorageSOPClassUID", 0x0003: "MediaStorageSOPInstanceUID", 0x0010: "TransferSyntaxUID"}
#: Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"))


def read_file_meta(path: Path) -> tuple[dict[str, str], int]:
    """(the File Meta UIDs the sender needs, offset of the data set) of a Part 10 file.

    The File Meta is always explicit VR little endian after a 128-byte
    preamble and "DICM" (PS3.10 7.1), so it is read here without pydicom (a
    pydicom Dataset per object costs more than the rest of a C-STORE's
    Python work); anything unusual (a File Meta over 16 KiB, no "DICM", an
    undefined length) goes through pynetdicom's ``split_dataset`` and its errors.
    """
    with open(path, "rb") as f:
        head = f.read(16384)
        if head[128:132] == b"DICM":
            found: dict[str, str] = {}
            pos, end = 132, len(head)
            while True:
                if pos + 8 > end:
                    if end < 16384:  # end of file: nothing but File Meta
                        return found, pos
                    break  # a File Meta over 16 KiB: unusual, let pydicom read it
                group, element = struct.unpack_from("<HH", head, pos)
                if group != 0x0002:
                    return found, pos
                vr = head[pos + 4:pos + 6]
                if vr in _LONG_VRS:
                    if pos + 12 > end:
                        break
                    length = struct.unpack_from("<I", head, pos + 8)[0]
                    pos += 12
                elif vr.isalpha() and vr.isupper():
                    length = struct.unpack_from("<H", head, pos + 6)[0]
                    pos += 8
                else:
                    break  # not explicit VR: leave it to pydicom
                if length == 0xFFFFFFFF or pos + length > end:
                    break
                keyword = _META_KEYWORDS.get(element)
                if keyword is not None:
                    found[keyword] = head[pos:pos + length].decode("ascii", "replace").rstrip("\x00 ")
                pos += length
    meta, offset = split_dataset(path)
    return {k: str(meta.get(k, "") or "") for k in _META_KEYWORDS.values() if meta.get(k)}, offset


class _Scratch:
    """A temporary directory for one item's converted copies, made on first use."""

    __slots__ = ("_config", "_path")

    def __init__(self, config: Any) -> None:
        self._config = config
        self._path: Path | None = None

    def path(self) -> Path:
        if self._path is None:
            self._path = Path(tempfile.mkdtemp(prefix="send-", dir=_workdir(self._config)))
        return self._path

    def remove(self) -> None:
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None


def send_items(dest: Destination, items: Sequence[Outgoing], config: Any,
               on_result: Callable[[SendResult], None] | None = None,
               on_state: Callable[[str], None] | None = None,
               on_start: Callable[[Outgoing], None] | None = None,
               transform: Callable[[Any, Destination], None] | None = None,
               cancelled: Callable[[], bool] | None = None) -> list[SendResult]:
    """SND-3..SND-5 for a list; results in the order of ``items``.

    Many C-STOREs per association (SND-3). A SOP class the peer did not
    accept: failed, not retryable, skipped (SND-4). Refused (A7xx): the
    association is ended and every item not yet sent fails (retryable).
    Another failure status, a DIMSE/session timeout or a lost association:
    that item fails and the rest go on a NEW association (SND-5). Warning
    (Bxxx): sent, logged. ``on_state`` receives CONNECTING / ACTIVE /
    COMPLETED / FAILED per association; ``on_start`` is called before each
    item goes (SND-3 "In Progress"), ``on_result`` after. Once ``cancelled()``
    is true (checked before each item: a C-CANCEL of a C-MOVE) the items not
    yet sent end in state "cancelled" and the association is released.
    """
    results: dict[int, SendResult] = {}

    def emit(index: int, result: SendResult) -> None:
        results[index] = result
        if on_result:
            on_result(result)

    def state(s: str) -> None:
        if on_state:
            on_state(s)

    pending = list(range(len(items)))
    while pending:
        state(CONNECTING)
        try:
            sa = StoreAssociation.open(dest, [items[i] for i in pending], config, transform)
        except AssociationFailed as exc:
            state(FAILED)
            for i in pending:
                emit(i, SendResult(items[i], "failed", None, error=str(exc), retryable=True))
            break
        state(ACTIVE)
        later: list[int] = []
        progressed = False
        ended = ""  # why this association ended early
        refused = False
        for pos, i in enumerate(pending):
            item = items[i]
            if not ended and cancelled is not None and cancelled():
                ended = "cancelled"
            if ended:
                later.append(i)
                continue
            if not sa.covers(item):
                later.append(i)  # over the 128-context limit: next association
                continue
            if not sa.alive:
                later.append(i)
                ended = "association ended"
                continue
            result = sa.precheck(item)
            if result is None:
                if on_start:
                    on_start(item)
                result = sa.send(item)
            progressed = True
            emit(i, result)
            if result.ok or result.status is None and not result.retryable:
                continue  # done, or SND-4 / unreadable: skipped, same association
            if result.refused:
                refused = True
                ended = result.error
                continue
            # SND-5: another failure, or a timeout/abort: the rest on a new association.
            ended = result.error or "failure"
        if ended == "cancelled":
            sa.release()
            state(COMPLETED)
            for i in later:
                emit(i, SendResult(items[i], "cancelled", None, retryable=False, error="not sent: cancelled"))
            break
        if refused:
            state(FAILED)
            for i in later:
                emit(i, SendResult(items[i], "failed", None, retryable=True,
                                   error=f"not sent: the peer refused an earlier object ({ended}); association ended (SND-5)"))
            break
        if sa.established:
            # Done, or idle past its session timer: a normal release either way.
            sa.release()
            state(COMPLETED)
        else:
            # Aborted (SND-6 timer expired during an operation, link lost).
            sa.abort()
            state(FAILED)
        if not progressed:
            for i in later:
                emit(i, SendResult(items[i], "failed", None, retryable=True,
                                   error=ended or "not sent: no presentation context could be proposed for it"))
            break
        pending = later
    return [results[i] for i in range(len(items))]


# ---- C-STOREs back on an association the peer requested (C-GET sub-operations) ----

class AssociationChannel:
    """An association a peer opened to us, as the way back for C-STORE
    sub-operations (a C-GET, PS3.4 C.4.3). Opaque to plugins: the core puts it
    in the request, a service hands it to the Storage SCU (``send_back``)."""

    __slots__ = ("_assoc",)

    def __init__(self, assoc: Any) -> None:
        self._assoc = assoc

    def __repr__(self) -> str:
        return f"<AssociationChannel {getattr(self._assoc, 'gw_id', '?')}>"


class _BorrowedStoreAssociation(StoreAssociation):
    """The StoreAssociation view of a peer's association: only the contexts on
    which the peer accepted our SCU role (SCP/SCU role selection, PS3.7 D.3.3.4)
    carry C-STOREs, and it is never released or timed out from here — the peer
    owns it. Used from the association's own thread, while its reactor is paused."""

    def __init__(self, dest: Destination, assoc: Any, config: Any) -> None:
        super().__init__(dest, assoc, set(), config)
        self._accepted = {}
        for cx in assoc.accepted_contexts:
            if cx.as_scu:
                for ts in cx.transfer_syntax:
                    self._accepted.setdefault(str(cx.abstract_syntax), {}).setdefault(str(ts), cx.context_id)
        self._covered = set(self._accepted)

    def covers(self, item: Outgoing) -> bool:
        return True  # what the peer did not accept fails in precheck (SND-4)

    def release(self) -> None:
        pass  # a refusal (A7xx) fails that object; the association stays the peer's


def _channel_destination(assoc: Any, config: Any) -> Destination:
    """The peer as a destination: its remote's SND-7 options when its AE title is
    a configured remote's, the node's DIMSE timeout, no session timer."""
    info = assoc.gw_info
    node = config.node
    dest = Destination(name=f"{info.calling_ae}@{info.peer_host}:{info.peer_port}", ae_title=info.calling_ae,
                       host=info.peer_host, port=info.peer_port, calling_ae_title=info.called_ae,
                       dimse_timeout=node.dimse_timeout)
    for name, remote in sorted((getattr(config, "remotes", None) or {}).items()):
        if remote.ae_title == info.calling_ae:
            dest = dataclasses.replace(Destination.from_remote(name, remote, config), host=info.peer_host,
                                       port=info.peer_port, calling_ae_title=info.called_ae)
            break
    return dataclasses.replace(dest, session_timeout=0.0, dimse_timeout=dest.dimse_timeout or node.dimse_timeout)


def send_on_channel(channel: AssociationChannel, items: Iterable[Outgoing], config: Any,
                    transform: Callable[[Any, Destination], None] | None = None) -> Iterable[SendResult]:
    """C-STORE each item back on the peer's association, in the calling thread
    (the association's: a C-GET handler), one :class:`SendResult` per item as
    it is done — SND-2 syntax choice and Rust conversion as for any send. An
    item whose SOP class has no context with our SCU role fails (SND-4);
    after the association ended, every remaining item fails."""
    assoc = channel._assoc
    sa = getattr(assoc, "gw_store_back", None)
    if sa is None:  # one per association: Message IDs go on across C-GETs
        sa = assoc.gw_store_back = _BorrowedStoreAssociation(_channel_destination(assoc, config), assoc, config)
    sa.transform = transform
    dimse_timeout = assoc.dimse_timeout
    try:
        for item in items:
            if not assoc.is_established:
                yield SendResult(item, "failed", None, error="the association ended", retryable=False)
                continue
            yield sa.precheck(item) or sa.send(item)
    finally:
        assoc.dimse_timeout = dimse_timeout  # _c_store sets the destination's for each C-STORE
