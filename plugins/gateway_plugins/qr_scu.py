"""Query/Retrieve SCU (QRU-1..QRU-5; seed 000 section 4.2.4, seed 003's recursive
query) as a built-in plugin: a ``query-retrieve-scu`` service in the SCU role,
whose ``client`` other code and plugins use, and the ``find`` / ``move`` /
``get`` commands (:mod:`gateway_plugins.qr_scu_command`).

The Python API (``host.services.scu("query-retrieve-scu").client``)::

    scu = host.services.scu("query-retrieve-scu").client
    for answer in scu.find("pacs", ["PatientID=ANC0000001"], level="study", config=config):
        print(answer.value("StudyDate"), answer.uid)
    result = scu.move("pacs", "series", [series_uid], config=config, on_progress=print)
    result.completed, result.failed, result.warning, result.failed_uids

Everything is gateway-owned (:class:`FindResult`, :class:`RetrieveResult`,
:class:`QueryRetrieveError`); the datasets are pydicom ``Dataset`` objects as the
peer answered them, decoded with their own Specific Character Set. Nothing at
import time touches pynetdicom: the plugin is imported by every command line.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from gateway.hookspecs import hookimpl
from gateway.messages import UNCOMPRESSED_SYNTAXES
from gateway.services import Service

log = logging.getLogger("gateway.qr_scu")

NAME = "query-retrieve-scu"
GATEWAY_PLUGIN_API = 1

#: (model, operation) -> SOP Class UID (PS3.4 C.6).
SOP_CLASSES = {
    ("study", "find"): "1.2.840.10008.5.1.4.1.2.2.1",
    ("study", "move"): "1.2.840.10008.5.1.4.1.2.2.2",
    ("study", "get"): "1.2.840.10008.5.1.4.1.2.2.3",
    ("patient", "find"): "1.2.840.10008.5.1.4.1.2.1.1",
    ("patient", "move"): "1.2.840.10008.5.1.4.1.2.1.2",
    ("patient", "get"): "1.2.840.10008.5.1.4.1.2.1.3",
}
#: QRU-1: every context proposes the three uncompressed syntaxes (GENIE does); the peer picks.
PROPOSED_SYNTAXES = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2")
#: How long to wait for the final response after a C-CANCEL before aborting.
CANCEL_GRACE = 10.0

BEHAVIOUR = (
    "Proposes Study Root Q/R FIND and MOVE, each in one presentation context with Explicit VR LE, "
    "Explicit VR BE and Implicit VR LE (QRU-1); Patient Root FIND/MOVE only when a query asks for the "
    "patient model; Study/Patient Root GET (with SCP role selection for the storage SOP classes it "
    "receives) only for `get`",
    "Hierarchical queries only; a recursive query (QRU-2) walks STUDY, then SERIES per study, then IMAGE "
    "per series, on one association; Specific Character Set is sent at every level (QRU-3; ISO_IR 192 when "
    "a key has non-ASCII characters, else ISO_IR 100) and answers are decoded with their own",
    "Extra or non-matching keys in answers are kept, not filtered (QRU-3); FF00/FF01 pending answers are "
    "results; A700, A900, Cxxx end the query; no retries (seed 000 table 4-28)",
    "C-MOVE at STUDY/SERIES/IMAGE level to the gateway's own storage AE by default; the association stays "
    "open until the final response; A701, A702, A801, A900, Cxxx end the retrieval, B000 is a warning with "
    "the Failed SOP Instance UID List (QRU-4, seed 000 table 4-30)",
    "C-CANCEL of a running FIND/MOVE/GET on request (Ctrl-C in the commands) (QRU-5)",
)


# ---- results ----------------------------------------------------------------------------


class QueryRetrieveError(Exception):
    """A query or retrieval that ended without success, in words an operator understands.
    ``status`` is the final DIMSE status (None: no association or no response)."""

    def __init__(self, message: str, status: int | None = None, comment: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.comment = comment


@dataclass
class FindResult:
    """One C-FIND answer (a Pending response): the identifier as the peer sent it —
    every key it returned, requested or not (QRU-3) — and its status (FF00/FF01).
    In a recursive query ``children`` holds the answers of the level below."""

    level: str
    dataset: Any
    status: int
    children: list["FindResult"] = field(default_factory=list)

    @property
    def uid(self) -> str:
        from gateway_plugins.qr_scu_keys import UNIQUE_KEYS

        return self.value(UNIQUE_KEYS[self.level])

    def value(self, keyword: str, default: str = "") -> str:
        """The answer's value of ``keyword`` as text (``default`` when absent or empty)."""
        if keyword not in self.dataset:
            return default
        elem = self.dataset[keyword]
        value = elem.value
        if value is None or value == "":
            return default
        if elem.VR != "SQ" and elem.VM > 1:
            return "\\".join(str(v) for v in value)
        return str(value)

    def count(self, level: str) -> int:
        """How many answers of ``level`` are below this one (recursive queries)."""
        return sum((c.level == level) + c.count(level) for c in self.children)

    def to_dict(self) -> dict[str, Any]:
        """Keyword → text for every element answered, plus ``children`` (JSON output)."""
        out: dict[str, Any] = {}
        for elem in self.dataset:
            if elem.tag == 0x00080005 or elem.VR == "SQ":
                continue
            name = elem.keyword or f"{elem.tag.group:04X},{elem.tag.element:04X}"
            value = elem.value
            if value is None or value == "":
                out[name] = ""
            elif elem.VM > 1:
                out[name] = [str(v) for v in value]
            else:
                out[name] = str(value)
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out


@dataclass
class RetrieveResult:
    """A C-MOVE or C-GET: the last response's sub-operation counts (PS3.7 C.4.2/3), the
    final status and the Failed SOP Instance UID List; during the retrieval the same
    object (status 0xFF00) is what ``on_progress`` gets."""

    operation: str
    status: int | None = None
    remaining: int | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)
    comment: str | None = None
    destination: str = ""
    stored: list[Path] = field(default_factory=list)  # C-GET: the files written

    @property
    def ok(self) -> bool:
        return self.status == 0x0000

    @property
    def cancelled(self) -> bool:
        return self.status == 0xFE00

    @property
    def total(self) -> int:
        return (self.remaining or 0) + self.completed + self.failed + self.warning

    @property
    def message(self) -> str:
        from gateway_plugins.qr_scu_status import describe

        return describe(self.status, self.operation, self.comment)


# ---- one association ------------------------------------------------------------------------


class Session:
    """One association with a Q/R SCP on which finds, moves and gets run one after
    the other (QRU-2: a recursive query on one association). Build it with
    :meth:`QueryRetrieveSCU.session`; ``cancel()`` may be called from another thread."""

    def __init__(self, dest: Any, config: Any, *, models: Sequence[str] = ("study",),
                 operations: Sequence[str] = ("find", "move"), store_dir: Path | None = None,
                 store_classes: Sequence[str] = ()) -> None:
        self.dest = dest
        self.config = config
        self.models = tuple(dict.fromkeys(models))
        self.operations = tuple(operations)
        self.store_dir = store_dir
        self.store_classes = tuple(store_classes)
        self.assoc: Any = None
        self._msg_id = 0
        self._running: tuple[int, int] | None = None  # (message ID, context ID) of the request in flight
        self._lock = threading.Lock()
        self.stored: list[Path] = []

    # -- association ------------------------------------------------------------------------
    def open(self) -> "Session":
        from gateway.net.storescu import open_association

        contexts = [(SOP_CLASSES[(m, op)], PROPOSED_SYNTAXES) for m in self.models for op in self.operations]
        roles: list[tuple[str, bool, bool]] = []
        handlers: list[Any] = []
        if "get" in self.operations:
            from pynetdicom import evt

            # The C-STORE sub-operations come back on this association (PS3.4 C.4.3.3): SCP
            # role selection for their SOP classes, and a handler that writes each object.
            contexts += [(uid, UNCOMPRESSED_SYNTAXES) for uid in self.store_classes]
            roles = [(uid, False, True) for uid in self.store_classes]
            handlers = [(evt.EVT_C_STORE, self._on_store)]
        self.assoc = open_association(self.dest, contexts, self.config, roles=roles, evt_handlers=handlers)
        return self

    def close(self) -> None:
        assoc, self.assoc = self.assoc, None
        if assoc is not None and assoc.is_established:
            assoc.release()

    def abort(self) -> None:
        assoc, self.assoc = self.assoc, None
        if assoc is not None and assoc.is_established:
            assoc.abort()

    def __enter__(self) -> "Session":
        return self if self.assoc is not None else self.open()

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is KeyboardInterrupt:
            self.abort() if self._running else self.close()
        else:
            self.close()

    def _next_id(self) -> int:
        self._msg_id = self._msg_id % 65535 + 1
        return self._msg_id

    def _context(self, sop_class: str, what: str) -> int:
        for cx in self.assoc.accepted_contexts:
            if cx.abstract_syntax == sop_class:
                return int(cx.context_id)
        from pydicom.uid import UID

        raise QueryRetrieveError(f"{self.dest}: the archive did not accept {UID(sop_class).name} "
                                 f"({sop_class}); it cannot {what}")

    # -- C-CANCEL (QRU-5) ---------------------------------------------------------------------
    def cancel(self) -> bool:
        """Send C-CANCEL for the request in flight; False when none is running."""
        with self._lock:
            running = self._running
        if running is None or self.assoc is None or not self.assoc.is_established:
            return False
        msg_id, context_id = running
        log.info("sending C-CANCEL", extra={"message_id": msg_id, "peer": str(self.dest)})
        self.assoc.send_c_cancel(msg_id, context_id)
        return True

    def _drain_after_cancel(self) -> int | None:
        """After C-CANCEL (the response generator was interrupted): read responses until the
        final one (FE00, or whatever the peer ends with); abort if none comes in time."""
        from pynetdicom.dimse_primitives import C_STORE

        from gateway.status import category

        assoc = self.assoc
        deadline = time.monotonic() + CANCEL_GRACE
        status = None
        try:
            while assoc is not None and assoc.is_established and time.monotonic() < deadline:
                _cx, rsp = assoc.dimse.get_msg(block=True)
                if rsp is None:
                    break
                if getattr(rsp, "MessageIDBeingRespondedTo", None) is None:
                    # A C-STORE-RQ of a C-GET already on its way: answer it (the object is
                    # written as any other), or the peer may wait for that response
                    # instead of sending the final one.
                    if "get" in self.operations and isinstance(rsp, C_STORE):
                        assoc._c_store_scp(rsp)
                    continue
                status = int(rsp.Status)
                if category(status) != "Pending":
                    break
        finally:
            if assoc is not None:
                assoc._reactor_checkpoint.set()
        if status is None or category(status) == "Pending":
            self.abort()
        return status

    def _interrupted(self) -> None:
        try:
            if self.cancel():
                self._drain_after_cancel()
        except Exception:  # the association may be gone; the caller aborts
            log.debug("C-CANCEL failed", exc_info=True)
        finally:
            with self._lock:
                self._running = None

    # -- C-FIND -------------------------------------------------------------------------------
    def find(self, identifier: Any, model: str = "study", *, fallback_charset: str | None = None) -> Iterator[FindResult]:
        """The answers to one C-FIND, as they arrive. A final failure raises
        :class:`QueryRetrieveError` after the answers that came before it; a final Cancel
        (FE00) just ends the answers. KeyboardInterrupt sends C-CANCEL first (QRU-5)."""
        from gateway.status import category
        from gateway_plugins.qr_scu_status import describe

        sop_class = SOP_CLASSES[(model, "find")]
        context_id = self._context(sop_class, "answer queries")
        level = str(identifier.QueryRetrieveLevel).strip().upper()
        msg_id = self._next_id()
        charset = fallback_charset or identifier.get("SpecificCharacterSet")
        try:
            responses = self.assoc.send_c_find(identifier, sop_class, msg_id=msg_id)
        except ValueError as exc:
            raise QueryRetrieveError(f"{self.dest}: cannot send the query: {exc}") from exc
        with self._lock:
            self._running = (msg_id, context_id)
        try:
            for status_ds, answer in responses:
                if "Status" not in status_ds:
                    raise QueryRetrieveError(f"{self.dest}: query ended: {describe(None)}")
                status = int(status_ds.Status)
                cat = category(status)
                if cat == "Pending":
                    if answer is None:
                        continue  # an answer pynetdicom could not decode; already logged
                    if "SpecificCharacterSet" not in answer and charset:
                        # QRU-3: no Specific Character Set in the answer: read it in ours.
                        answer.SpecificCharacterSet = charset
                    answer.decode()
                    yield FindResult(level, answer, status)
                    continue
                with self._lock:
                    self._running = None
                if cat in ("Success", "Cancel"):
                    return
                if cat == "Warning":
                    log.warning("C-FIND ended with a warning", extra={"status": status})
                    return
                raise QueryRetrieveError(f"{self.dest}: query at {level} level ended: "
                                         f"{describe(status, 'find', status_ds.get('ErrorComment'))}",
                                         status, status_ds.get("ErrorComment"))
        except (KeyboardInterrupt, GeneratorExit):
            # Ctrl-C, or the caller stopped reading while answers are pending: C-CANCEL
            # and wait for the final response, so the association can go on (QRU-5).
            self._interrupted()
            raise
        finally:
            with self._lock:
                self._running = None

    def find_all(self, identifier: Any, model: str = "study", **kw: Any) -> list[FindResult]:
        return list(self.find(identifier, model, **kw))

    # -- C-MOVE / C-GET -------------------------------------------------------------------------
    def retrieve(self, operation: str, identifier: Any, model: str = "study", *, destination: str = "",
                 on_progress: Callable[[RetrieveResult], None] | None = None,
                 result: RetrieveResult | None = None) -> RetrieveResult:
        """One C-MOVE (to ``destination``) or C-GET; counts added to ``result`` when given."""
        from gateway.status import category

        sop_class = SOP_CLASSES[(model, operation)]
        context_id = self._context(sop_class, "retrieve" if operation == "move" else "send objects back (C-GET)")
        msg_id = self._next_id()
        total = result or RetrieveResult(operation, destination=destination)
        base = (total.completed, total.failed, total.warning)
        try:
            if operation == "move":
                responses = self.assoc.send_c_move(identifier, destination, sop_class, msg_id=msg_id)
            else:
                responses = self.assoc.send_c_get(identifier, sop_class, msg_id=msg_id)
        except ValueError as exc:
            raise QueryRetrieveError(f"{self.dest}: cannot send the C-{operation.upper()}: {exc}") from exc
        with self._lock:
            self._running = (msg_id, context_id)
        try:
            for status_ds, answer in responses:
                if "Status" not in status_ds:
                    total.status = None
                    total.comment = "no response from the archive (DIMSE timeout or the association ended)"
                    return total
                status = int(status_ds.Status)
                total.remaining = status_ds.get("NumberOfRemainingSuboperations")
                total.completed = base[0] + int(status_ds.get("NumberOfCompletedSuboperations") or 0)
                total.failed = base[1] + int(status_ds.get("NumberOfFailedSuboperations") or 0)
                total.warning = base[2] + int(status_ds.get("NumberOfWarningSuboperations") or 0)
                if category(status) == "Pending":
                    total.status = status
                    if on_progress is not None:
                        on_progress(total)
                    continue
                total.status = status
                total.comment = status_ds.get("ErrorComment")
                if answer is not None and "FailedSOPInstanceUIDList" in answer:
                    value = answer.FailedSOPInstanceUIDList
                    uids = [value] if isinstance(value, str) else list(value or [])
                    total.failed_uids += [str(u) for u in uids if u]
                break
        except KeyboardInterrupt:
            self._interrupted()
            raise
        finally:
            with self._lock:
                self._running = None
            total.stored = list(self.stored)
        return total

    def _on_store(self, event: Any) -> int:
        """A C-STORE-RQ of a C-GET: the object as a Part 10 file in ``store_dir``."""
        try:
            uid = str(event.request.AffectedSOPInstanceUID)
            path = Path(self.store_dir) / f"{uid}.dcm"
            with open(path, "wb") as fh:
                fh.write(event.encoded_dataset())
            self.stored.append(path)
            return 0x0000
        except Exception:
            log.exception("C-GET: cannot write a received object")
            return 0xA700


# ---- the client -------------------------------------------------------------------------------


class QueryRetrieveSCU:
    """What the commands and other plugins call to query and retrieve from a Q/R SCP.
    ``remote`` is a ``remotes/*.toml`` name or ``AET@host:port`` (its timers apply:
    association timeout for connect and negotiation, DIMSE timeout per response)."""

    def destination(self, remote: Any, config: Any) -> Any:
        from gateway.net.storescu import Destination, resolve_destination

        return remote if isinstance(remote, Destination) else resolve_destination(remote, config)

    def session(self, remote: Any, config: Any = None, *, model: str = "study",
                operations: Sequence[str] = ("find", "move"), **kw: Any) -> Session:
        """An unopened :class:`Session` (``with scu.session(...) as s:`` opens and releases it);
        always proposes Study Root, and Patient Root too when ``model="patient"``."""
        models = ("study", "patient") if model == "patient" else ("study",)
        return Session(self.destination(remote, config), config, models=models, operations=operations, **kw)

    @staticmethod
    def local_ae_title(config: Any) -> str:
        """Our own storage AE: the first listener's first AE title (the node's by default)."""
        listeners = getattr(config, "listeners", None) or []
        if listeners and listeners[0].ae_titles:
            return listeners[0].ae_titles[0]
        return getattr(getattr(config, "node", None), "ae_title", "DICOM_GATEWAY")

    # -- find ------------------------------------------------------------------------------------
    def find(self, remote: Any, identifier_or_keys: Any = (), *, level: str = "study", model: str = "study",
             recursive: bool = False, config: Any = None, charset: str | None = None,
             defaults: bool = True, session: Session | None = None) -> Iterator[FindResult]:
        """C-FIND answers as they arrive (an iterator: large answers are not held).

        ``identifier_or_keys``: a pydicom ``Dataset`` sent as it is, or ``-k`` style
        strings (``"PatientName=Doe*"``, ``"0010,0020"``) / :class:`QueryKey` objects made
        into an identifier for ``level`` with Specific Character Set (QRU-3) and, when
        ``defaults``, the usual return keys. ``recursive`` (QRU-2): the answers of
        ``level`` each with ``children`` down to IMAGE, walked on one association; a
        key of a lower level is used in the queries of its level."""
        level = level.upper()
        own = session is None
        s = session or self.session(remote, config, model=model)
        if own:
            s.open()
        try:
            if recursive:
                yield from self._walk(s, identifier_or_keys, level, model, charset, defaults)
                return
            yield from s.find(self._identifier(identifier_or_keys, level, model, charset, defaults), model)
        finally:
            if own:
                s.close()  # after a failure status or a C-CANCEL the association is still good

    @staticmethod
    def _keys(identifier_or_keys: Any) -> list[Any]:
        from gateway_plugins import qr_scu_keys as qk

        if isinstance(identifier_or_keys, str):
            identifier_or_keys = [identifier_or_keys]
        return [k if isinstance(k, qk.QueryKey) else qk.parse_key(k) for k in identifier_or_keys or ()]

    def _identifier(self, identifier_or_keys: Any, level: str, model: str, charset: str | None,
                    defaults: bool, upper: dict[str, str] | None = None) -> Any:
        from pydicom.dataset import Dataset

        from gateway_plugins import qr_scu_keys as qk

        if isinstance(identifier_or_keys, Dataset):
            ds = identifier_or_keys
            if "QueryRetrieveLevel" not in ds:
                ds.QueryRetrieveLevel = level
            if "SpecificCharacterSet" not in ds:  # QRU-3: at every level
                ds.SpecificCharacterSet = qk.choose_charset([], charset)
            return ds
        keys = self._keys(identifier_or_keys)
        cs = qk.choose_charset([k.value for k in keys], charset)
        return qk.build_identifier(level, keys, upper=upper, charset=cs, defaults=defaults, model=model)

    def _walk(self, s: Session, identifier_or_keys: Any, level: str, model: str, charset: str | None,
              defaults: bool) -> Iterator[FindResult]:
        """QRU-2: all answers of ``level`` first, then for each the level below, down to IMAGE."""
        from gateway_plugins import qr_scu_keys as qk

        keys = self._keys(identifier_or_keys)
        levels = qk.LEVELS[model]
        by_level = qk.split_by_level(keys, level, model)
        cs = qk.choose_charset([k.value for k in keys], charset)
        top = s.find_all(qk.build_identifier(level, by_level[level], charset=cs, defaults=defaults, model=model), model)

        def descend(node: FindResult, upper: dict[str, str]) -> None:
            below = levels.index(node.level) + 1
            if below >= len(levels) or not node.uid:
                return
            child_level = levels[below]
            upper = {**upper, qk.UNIQUE_KEYS[node.level]: node.uid}
            ident = qk.build_identifier(child_level, by_level[child_level], upper=upper, charset=cs,
                                        defaults=defaults, model=model)
            node.children = s.find_all(ident, model)
            for child in node.children:
                descend(child, upper)

        for node in top:
            descend(node, {})
            yield node

    # -- move / get --------------------------------------------------------------------------------
    def move(self, remote: Any, level: str, uids: Sequence[str], dest: str | None = None, *, config: Any = None,
             on_progress: Callable[[RetrieveResult], None] | None = None, model: str = "study",
             study_uid: str | None = None, series_uid: str | None = None,
             session: Session | None = None) -> RetrieveResult:
        """QRU-4: C-MOVE the studies/series/images ``uids`` (a level's UIDs) to ``dest``
        (default: our own storage AE). For SERIES/IMAGE the Study (and Series) Instance UIDs
        above are needed (Study Root, PS3.4 C.4.2.2.1): give them, or they are looked up
        with a C-FIND on the same association. Returns the counts of every C-MOVE it took;
        a final status other than Success is in ``result.status`` / ``result.message``
        (raises :class:`QueryRetrieveError` only when nothing could be asked)."""
        return self._retrieve("move", remote, level, uids, dest or self.local_ae_title(config), config=config,
                              on_progress=on_progress, model=model, study_uid=study_uid, series_uid=series_uid,
                              session=session)

    def get(self, remote: Any, level: str, uids: Sequence[str], out_dir: str | Path, *, config: Any = None,
            on_progress: Callable[[RetrieveResult], None] | None = None, model: str = "study",
            study_uid: str | None = None, series_uid: str | None = None,
            sop_classes: Sequence[str] | None = None) -> RetrieveResult:
        """C-GET into the directory ``out_dir`` (one Part 10 file per object, as received;
        ``result.stored``); ``dicom-gateway get`` then imports them into the archive. The
        storage SOP classes offered for the returned objects: ``sop_classes``, default
        the seeds' (STO-1)."""
        if sop_classes is None:
            from gateway_plugins.storage import SEED_SOP_CLASSES

            sop_classes = list(SEED_SOP_CLASSES)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        s = self.session(remote, config, model=model, operations=("find", "get"), store_dir=out,
                         store_classes=sop_classes)
        return self._retrieve("get", remote, level, uids, "", config=config, on_progress=on_progress, model=model,
                              study_uid=study_uid, series_uid=series_uid, session=s, own=True)

    def _retrieve(self, operation: str, remote: Any, level: str, uids: Sequence[str], destination: str, *,
                  config: Any, on_progress: Any, model: str, study_uid: str | None, series_uid: str | None,
                  session: Session | None, own: bool | None = None) -> RetrieveResult:
        from gateway_plugins import qr_scu_keys as qk

        level = level.upper()
        if level not in qk.LEVELS[model]:
            raise QueryRetrieveError(f"level {level} does not exist in the {model} root model")
        uids = [u.strip() for u in uids if u and u.strip()]
        if not uids:
            raise QueryRetrieveError("nothing to retrieve: no UID given")
        own = session is None if own is None else own
        s = session or self.session(remote, config, model=model)
        if s.assoc is None:
            s.open()
        result = RetrieveResult(operation, destination=destination)
        try:
            for upper, group in self._groups(s, level, uids, model, study_uid, series_uid):
                ident = self._retrieve_identifier(level, group, upper)
                s.retrieve(operation, ident, model, destination=destination, on_progress=on_progress, result=result)
                if result.status is None or result.status not in (0x0000, 0xB000):
                    break
        finally:
            if own:
                s.close()
        return result

    @staticmethod
    def _retrieve_identifier(level: str, uids: Sequence[str], upper: dict[str, str]) -> Any:
        from pydicom.dataset import Dataset

        from gateway_plugins.qr_scu_keys import UNIQUE_KEYS

        ds = Dataset()
        ds.QueryRetrieveLevel = level
        for keyword, uid in upper.items():
            setattr(ds, keyword, uid)
        setattr(ds, UNIQUE_KEYS[level], list(uids) if len(uids) > 1 else uids[0])  # a UID list (PS3.4 C.2.2.2.2)
        return ds

    def _groups(self, s: Session, level: str, uids: list[str], model: str, study_uid: str | None,
                series_uid: str | None) -> list[tuple[dict[str, str], list[str]]]:
        """The UIDs grouped under the unique keys of the levels above them (looked up
        with C-FIND when not given): one C-MOVE per group."""
        from gateway_plugins import qr_scu_keys as qk

        levels = qk.LEVELS[model]
        above = [lv for lv in levels[:levels.index(level)]]
        if not above:
            return [({}, uids)]
        given = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}
        needed = [qk.UNIQUE_KEYS[lv] for lv in above]
        if all(given.get(k) for k in needed):
            return [({k: given[k] for k in needed}, uids)]  # type: ignore[misc]
        groups: dict[tuple[str, ...], list[str]] = {}
        for uid in uids:
            ident = qk.build_identifier(level, [], charset="ISO_IR 100", defaults=False, model=model,
                                        upper={k: given[k] for k in needed if given.get(k)})
            setattr(ident, qk.UNIQUE_KEYS[level], uid)
            for k in needed:
                if k not in ident:
                    setattr(ident, k, None)
            answers = s.find_all(ident, model)
            if not answers:
                raise QueryRetrieveError(f"{s.dest}: the archive has no {level.lower()} {uid} "
                                         f"(C-FIND at {level} level found nothing)")
            found = tuple(answers[0].value(k) for k in needed)
            if not all(found):
                raise QueryRetrieveError(f"{s.dest}: the archive's answer for {level.lower()} {uid} lacks "
                                         f"{', '.join(k for k, v in zip(needed, found) if not v)}; give --study"
                                         + (" and --series" if level == "IMAGE" else ""))
            groups.setdefault(found, []).append(uid)
        return [(dict(zip(needed, key)), group) for key, group in groups.items()]


# ---- registration --------------------------------------------------------------------------------


def service() -> Service:
    return Service(
        name=NAME,
        sop_classes=tuple(SOP_CLASSES.values()),
        handler=None,
        transfer_syntaxes=UNCOMPRESSED_SYNTAXES,
        scu_transfer_syntaxes=PROPOSED_SYNTAXES,
        role="scu",
        client=QueryRetrieveSCU(),
        scu_behaviour=BEHAVIOUR,
        description="Query/Retrieve SCU: `dicom-gateway find`, `move`, `get` (QRU-1..QRU-5)",
    )


@hookimpl
def gateway_register_services(registry):
    registry.add(service())


@hookimpl
def gateway_register_commands(commands):
    """``find``, ``move`` and ``get``: the Q/R SCU from the command line."""
    from gateway_plugins.qr_scu_command import add_parsers

    add_parsers(commands)


__all__ = ["QueryRetrieveSCU", "Session", "FindResult", "RetrieveResult", "QueryRetrieveError", "NAME",
           "SOP_CLASSES", "service"]
