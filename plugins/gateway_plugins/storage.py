"""Storage service class SCP (PS3.4 Annex B): the import server.

Accepts the STO-1 SOP classes (or any storage SOP class) in the three
uncompressed syntaxes (STO-2) with the configured selection policy (STO-3),
keeps each object byte-for-byte as received (STO-5), indexes it, and answers
Success only after file and index row are durable (STO-7). Duplicates follow
STO-6; failures map to the statuses of STO-8, standard or GENIE private.

Settings: ``plugins/storage.toml`` (see docs/configuration.md).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway import dictionaries
from gateway.hookspecs import hookimpl
from gateway.index import FileRecord, Index, IndexUnavailable, UnreadableDataset, shared_index
from gateway.index.attrs import scan_instance
from gateway.messages import DatasetPayload, IndexedInstance, Rejection, Response, RoutedInstance, StoreRequest
from gateway.metrics import METRICS
from gateway.routing import association_key, header_loader
from gateway.services import Service
from gateway.status import Status
from gateway_plugins import storage_scu
from gateway_plugins.group_commit import GroupCommit

log = logging.getLogger("gateway.storage")
dictionaries.register()

EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"

# STO-1
IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.20": "Nuclear Medicine Image Storage",
    "1.2.840.10008.5.1.4.1.1.128": "Positron Emission Tomography Image Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
}
SEED_SOP_CLASSES = {
    **IMAGE_SOP_CLASSES,
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set Storage",
    "1.2.840.10008.5.1.4.1.1.9": "Standalone Curve Storage (retired)",
    "1.2.840.113619.4.27": "GE GENIE private (protocol and series data)",
}

# STO-8: each condition's status, standard or GENIE private (seed 003).
STATUS = {
    "standard": {
        "out_of_resources": Status.REFUSED_OUT_OF_RESOURCES,
        "index_unavailable": Status.REFUSED_OUT_OF_RESOURCES,
        "cannot_understand": Status.CANNOT_UNDERSTAND,
        "sop_class_mismatch": Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
        "no_pixel_data": Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
        "duplicate": 0x0111,  # PS3.7 C.4: Duplicate SOP Instance
        "internal": Status.UNABLE_TO_PROCESS,
    },
    "genie": {
        "out_of_resources": Status.REFUSED_OUT_OF_RESOURCES,
        "index_unavailable": Status.GENIE_NOT_WRITTEN,
        "cannot_understand": Status.GENIE_CANNOT_UNDERSTAND_STREAM,
        "sop_class_mismatch": Status.DATASET_DOES_NOT_MATCH_SOP_CLASS,
        "no_pixel_data": Status.GENIE_NO_PIXEL_DATA,
        "duplicate": Status.GENIE_NOT_WRITTEN,
        "internal": Status.GENIE_INTERNAL_ERROR,
    },
}


def _size(value: str | int) -> int | float:
    """'2GB', '500 MB', 1048576 (bytes) or '5%' (of the filesystem, as a fraction)."""
    if isinstance(value, int):
        return value
    text = value.strip().upper().replace(" ", "")
    if text.endswith("%"):
        return float(text[:-1]) / 100.0
    for unit, factor in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


class StorageSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sop_classes: Literal["seed", "any"] = "seed"
    syntax_policy: Literal["prefer-explicit-le", "proposer-order"] = "prefer-explicit-le"
    duplicate_policy: Literal["overwrite", "keep-first", "reject"] = "overwrite"
    status_codes: Literal["standard", "genie"] = "standard"
    backend: str = "filesystem"
    root: str = ""  # default <data_dir>/archive
    low_water_mark: str | int = "1%"
    check_sop_class: bool = True
    require_pixel_data: bool = True
    # Seconds a store waits for the index (e.g. another process holding a long
    # write transaction) before it is refused (STO-8). Keep it below the peers'
    # DIMSE timeout (pynetdicom: 30 s) so they get a status, not a timeout.
    index_timeout: float = Field(10.0, gt=0, le=300)

    @field_validator("low_water_mark")
    @classmethod
    def _lwm(cls, value: str | int) -> str | int:
        try:
            parsed = _size(value)
        except ValueError:
            raise ValueError("write bytes (1073741824), a size ('2GB') or a percentage ('5%')") from None
        if isinstance(parsed, float) and not 0 <= parsed < 1:
            raise ValueError("a percentage between 0% and 100%")
        return value


# The last config seen and what was derived from it: a config never changes (a
# reload makes a new one), and validating the settings and resolving the index
# path on every C-STORE cost ~0.7 ms an object (py-spy, bench/RESULTS.md).
_derived: tuple[Any, StorageSettings, dict[str, Any]] | None = None


def _derive(config: Any) -> tuple[StorageSettings, dict[str, Any]]:
    global _derived
    cached = _derived
    if cached is not None and cached[0] is config:
        return cached[1], cached[2]
    settings, derived = StorageSettings.model_validate(config.plugin_settings("storage")), {}
    _derived = (config, settings, derived)
    return settings, derived


def settings_of(config: Any) -> StorageSettings:
    return _derive(config)[0] if config is not None else StorageSettings()


def storage_root(config: Any, s: StorageSettings) -> Path:
    return Path(s.root) if s.root else Path(config.node.data_dir) / "archive"


def index_of(config: Any) -> Index:
    """This process's index for the storage service. A store waits at most
    ``index_timeout`` for the database's write lock (no further retries), then
    answers with a refusal status (STO-8)."""
    settings, derived = _derive(config)
    if "index" not in derived:
        derived["index"] = shared_index(config.effective_database_url(), busy_timeout=settings.index_timeout,
                                        lock_retries=0)
    return derived["index"]


def group_commit_of(config: Any) -> GroupCommit:
    """This process's group commit for the storage service's index (gateway_plugins.group_commit)."""
    derived = _derive(config)[1]
    if "group_commit" not in derived:
        index = index_of(config)
        with _group_commits_lock:  # one per index, shared across config generations
            derived["group_commit"] = _group_commits.setdefault(id(index), GroupCommit(index))
    return derived["group_commit"]


_group_commits: dict[int, GroupCommit] = {}
_group_commits_lock = threading.Lock()


def _sop_classes(config: Any) -> list[str]:
    if settings_of(config).sop_classes == "any":
        from pynetdicom.sop_class import _STORAGE_CLASSES

        return sorted(set(_STORAGE_CLASSES.values()) | set(SEED_SOP_CLASSES))
    return list(SEED_SOP_CLASSES)


def _syntax_policy(config: Any) -> str:
    return "acceptor" if settings_of(config).syntax_policy == "prefer-explicit-le" else "proposer"


def file_meta(sop_class: str, sop_instance: str, syntax: str, impl_uid: str, impl_version: str,
              source_ae: str) -> bytes:
    """Preamble, 'DICM' and the File Meta group (PS3.10 7.1), explicit VR LE."""

    def elem(element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
        if len(value) % 2:
            value += pad
        if vr == b"OB":
            return b"\x02\x00" + element.to_bytes(2, "little") + vr + b"\x00\x00" + len(value).to_bytes(4, "little") + value
        return b"\x02\x00" + element.to_bytes(2, "little") + vr + len(value).to_bytes(2, "little") + value

    body = b"".join((
        elem(0x0001, b"OB", b"\x00\x01", b"\x00"),
        elem(0x0002, b"UI", sop_class.encode(), b"\x00"),
        elem(0x0003, b"UI", sop_instance.encode(), b"\x00"),
        elem(0x0010, b"UI", syntax.encode(), b"\x00"),
        elem(0x0012, b"UI", impl_uid.encode(), b"\x00"),
        elem(0x0013, b"SH", impl_version.encode(), b" "),
        elem(0x0016, b"AE", source_ae.encode(), b" ") if source_ae else b"",
    ))
    group_length = b"\x02\x00\x00\x00UL\x04\x00" + len(body).to_bytes(4, "little")
    return b"\x00" * 128 + b"DICM" + group_length + body


_LOCK_STRIPES = 256


@contextmanager
def instance_lock(data_dir: str | os.PathLike, sop_instance_uid: str) -> Iterator[None]:
    """Hold the lock of one SOP Instance UID (striped over 256 lock files).

    ``flock`` on a descriptor of its own excludes other threads as well as
    other worker processes on this host, and the kernel drops it when a
    process dies, so a killed worker never leaves a stale lock.
    """
    directory = Path(data_dir) / "locks"
    stripe = zlib.crc32(sop_instance_uid.encode()) % _LOCK_STRIPES
    try:
        fd = os.open(directory / f"store-{stripe:02x}", os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / f"store-{stripe:02x}", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # releases the GIL while waiting
        yield
    finally:
        os.close(fd)  # and with it the lock


class StorageSCP:
    """The C-STORE handler. Stateless: everything comes from the request's config."""

    def __init__(self, backends: Any) -> None:
        self.backends = backends

    def c_store(self, request: StoreRequest) -> Response | int:
        started = time.perf_counter()
        config = request.config
        s = settings_of(config)
        codes = STATUS[s.status_codes]
        payload = request.payload
        assert payload is not None
        syntax = request.context.transfer_syntax
        uid = request.sop_instance_uid

        def fail(condition: str, why: str) -> Response:
            METRICS.inc("gateway_store_failures_total", condition=condition)
            log.warning("instance not stored", extra={"sop_instance_uid": uid, "condition": condition, "why": why,
                                                     "calling_ae": request.association.calling_ae})
            return Response(codes[condition], error_comment=why[:64])

        # One read of the payload (Rust): the index attributes from the header,
        # whether Pixel Data is present (never decoded) and the SHA-256.
        try:
            source = payload.read() if payload.path is None else payload.path
            scan = scan_instance(source, syntax)
        except UnreadableDataset as exc:
            return fail("cannot_understand", f"cannot parse dataset: {exc}")
        attrs = scan.attrs
        if s.check_sop_class and (attrs.sop_class_uid != request.sop_class_uid
                                  or attrs.sop_instance_uid != uid
                                  or request.context.abstract_syntax != request.sop_class_uid):
            return fail("sop_class_mismatch", f"dataset SOP class/instance {attrs.sop_class_uid}/{attrs.sop_instance_uid} "
                                              f"does not match the request")
        if s.require_pixel_data and attrs.sop_class_uid in IMAGE_SOP_CLASSES:
            if scan.pixel_data_error is not None:  # a broken stream after the header
                return fail("cannot_understand", f"cannot parse dataset: {scan.pixel_data_error}")
            if not scan.has_pixel_data:
                return fail("no_pixel_data", "image object without Pixel Data (7FE0,0010)")

        # Routing (DESIGN §2): decided before the index transaction (rules and
        # hooks stay outside the database lock), recorded inside it.
        router, routed, decision = request.router, None, None
        if router is not None:
            routed = RoutedInstance(uid, attrs.sop_class_uid, attrs.study_instance_uid,
                                    attrs.series_instance_uid, attrs.modality, syntax, request.association,
                                    _loader=header_loader(source, syntax))
            if router.active:
                decision = router.decide(routed)

        backend = self.backends.create(s.backend, storage_root(config, s))
        rel = f"{attrs.study_instance_uid}/{attrs.series_instance_uid}/{uid}.dcm"
        digest = scan.sha256
        # One store of a SOP Instance at a time, across threads and worker
        # processes: the duplicate decision (STO-6), the file and the index row
        # must describe the same object when a peer resends on a new
        # association while the first copy is still being written.
        with instance_lock(config.node.data_dir, uid):
            try:
                index = index_of(config)
                # Nothing at the object's path: a new object (the common case), and
                # the duplicate look-up is folded into its index transaction below.
                # Something there: a resend or a new version; decided before
                # writing, so a byte-identical resend writes nothing.
                existing = index.find_instance(uid) if backend.exists(rel) else None
            except IndexUnavailable as exc:
                return fail("index_unavailable", f"index unavailable: {exc}")
            outcome = _duplicate_outcome(existing, digest, backend, s, fail)
            if outcome is not None:
                return outcome

            head = file_meta(request.sop_class_uid, uid, syntax, config.node.implementation_class_uid,
                             config.node.implementation_version_name, request.association.calling_ae)
            try:
                staged = backend.stage(rel, head, payload)
            except OSError as exc:
                from gateway_plugins.filesystem import OutOfSpace

                if isinstance(exc, OutOfSpace):
                    return fail("out_of_resources", f"out of disk space: {exc.strerror}")
                return fail("internal", f"write failed: {exc}")
            size = staged.size
            record = FileRecord(rel, size, digest, syntax, backend=s.backend, calling_ae=request.association.calling_ae,
                                called_ae=request.association.called_ae)
            try:
                if existing is None:
                    # A new object: into place, then its row. If the index then
                    # fails, the peer is not acknowledged and the complete,
                    # unindexed file is replaced by its resend.
                    staged.commit()

                    def index_new(tx: Any) -> Any:
                        if tx.has_instance(uid):
                            # Indexed under another path (its study or series
                            # changed): the duplicate policy decides, as above.
                            kept = _duplicate_outcome(tx.find_instance(uid), digest, backend, s, fail)
                            if kept is not None:
                                raise _Kept(kept)
                        indexed = tx.store_instance(attrs, record)
                        if routed is not None:
                            router.record(tx, decision, routed)
                        return indexed

                    try:
                        # Shared with the stores committing at the same time (one WAL fsync).
                        stored = group_commit_of(config).run(index_new)
                    except _Kept as kept:
                        backend.delete(rel)  # the copy just put in place; the stored version stays
                        return kept.outcome
                else:
                    # A new version of a stored object (STO-6 overwrite): renamed
                    # over the old one only once the index's write lock is held,
                    # so an index that cannot be written leaves the acknowledged
                    # version and its row as they were.
                    with index.transaction() as tx:
                        stored = tx.store_instance(attrs, record)
                        if routed is not None:
                            router.record(tx, decision, routed)
                        staged.commit()
            except IndexUnavailable as exc:
                staged.abort()
                return fail("index_unavailable", f"index unavailable: {exc}")
            except OSError as exc:
                staged.abort()
                return fail("internal", f"write failed: {exc}")
            if stored.replaced is not None and stored.replaced.path != rel:
                backend.delete(stored.replaced.path)
            if routed is not None:
                _note_association(request.association, index)
                if decision is not None and decision.plans:
                    METRICS.inc("gateway_forward_jobs_queued_total", len(decision.plans))
            METRICS.inc("gateway_instances_stored_total", sop_class=attrs.sop_class_uid)
            METRICS.inc("gateway_stored_bytes_total", size)
            if request.plugins is not None:
                _tell_plugins(request, attrs, syntax, backend, rel, config)
            # One line per stored instance, on the association's thread (logs add its id).
            log.info("instance stored", extra={
                "calling_ae": request.association.calling_ae, "sop_class_uid": attrs.sop_class_uid,
                "sop_instance_uid": uid, "study_instance_uid": attrs.study_instance_uid,
                "series_instance_uid": attrs.series_instance_uid, "bytes": size,
                "ms": round((time.perf_counter() - started) * 1000, 2),
                "replaced": stored.replaced is not None})
            return Status.SUCCESS


class _Kept(Exception):
    """Rolls a new object's index transaction back: the stored version stays (STO-6)."""

    def __init__(self, outcome: Response | int) -> None:
        super().__init__("duplicate kept")
        self.outcome = outcome


def _duplicate_outcome(existing: Any, digest: str, backend: Any, s: StorageSettings,
                       fail: Any) -> Response | int | None:
    """The answer to a store of an instance already indexed (STO-6), or None when the
    new object is to be stored (new, or a new version under ``overwrite``)."""
    if existing is None or existing.file is None:
        return None
    if existing.file.sha256 == digest and backend.exists(existing.file.path):
        METRICS.inc("gateway_store_duplicates_total", outcome="identical")
        # A byte-identical resend is a no-op; the outcome tells an in-process caller
        # (`import` counts duplicates from it), the peer sees plain Success (STO-6).
        return Response(Status.SUCCESS, outcome="duplicate")
    if s.duplicate_policy == "keep-first":
        METRICS.inc("gateway_store_duplicates_total", outcome="kept-first")
        log.info("duplicate kept as first received", extra={"sop_instance_uid": existing.sop_instance_uid})
        return Response(Status.SUCCESS, outcome="kept-first")
    if s.duplicate_policy == "reject":
        return fail("duplicate", "duplicate SOP Instance UID with different content")
    return None


def _tell_plugins(request: StoreRequest, attrs: Any, syntax: str, backend: Any, rel: str, config: Any) -> None:
    """``gateway_instance_stored`` for the other plugins; a failing one is logged
    and counted by the host, and the object stays stored and acknowledged."""
    hook = request.plugins.pm.hook.gateway_instance_stored
    if not hook.get_hookimpls():
        return  # the common case costs one attribute lookup
    locate = getattr(backend, "path", None)
    request.plugins.notify("gateway_instance_stored", config=config, instance=IndexedInstance(
        attrs.sop_instance_uid, attrs.sop_class_uid, attrs.study_instance_uid, attrs.series_instance_uid,
        attrs.modality, syntax, Path(locate(rel)) if locate is not None else None, request.association))


# Associations that stored something in this process, so their end can mark
# their series (completeness "when the sender's association ends").
_open_senders: dict[str, Index] = {}
_open_senders_lock = threading.Lock()


def _note_association(info: Any, index: Index) -> None:
    with _open_senders_lock:
        _open_senders[info.id] = index


@hookimpl
def gateway_association_closed(association: Any, reason: str) -> None:
    with _open_senders_lock:
        index = _open_senders.pop(association.id, None)
    if index is None:
        return
    from gateway.index.queue import ForwardQueue

    try:
        ForwardQueue(index).association_ended(association_key(association))
    except IndexUnavailable as exc:
        # The series then completes by quiet time instead.
        log.warning("cannot record the end of an association", extra={"assoc": association.id, "error": str(exc)})


def low_on_space(config: Any) -> str | None:
    """Why new associations must wait for disk space, or None (STO-8, SEC-3)."""
    s = settings_of(config)
    from gateway_plugins.filesystem import FilesystemBackend

    root = storage_root(config, s)
    free, total = FilesystemBackend(root).free_bytes()
    mark = _size(s.low_water_mark)
    limit = int(mark * total) if isinstance(mark, float) else mark
    if free < limit:
        return f"{free} bytes free under {root}, below the low-water mark {s.low_water_mark}"
    return None


_backends: list[Any] = []  # the host's BackendRegistry, for gateway_stored_file_path


@hookimpl
def gateway_stored_file_path(file: FileRecord, config: Any) -> Path | None:
    """Files of a backend this service writes, under its root."""
    if not _backends:
        return None
    root = storage_root(config, settings_of(config))
    try:
        backend = _backends[0].create(file.backend, root)
    except LookupError:
        return None
    locate = getattr(backend, "path", None)
    return Path(locate(file.path)) if locate is not None else None


@hookimpl
def gateway_register_services(registry: Any) -> None:
    _backends[:] = [registry.storage_backends]
    registry.add(Service(
        name="storage",
        sop_classes=_sop_classes,
        handler=StorageSCP(registry.storage_backends),
        transfer_syntaxes=(EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE),  # STO-3 Philips order
        syntax_policy=_syntax_policy,
        description="Storage SCP (STO-1..STO-11)",
    ))
    registry.add(storage_scu.service(_sop_classes))


@hookimpl
def gateway_config_loaded(config: Any) -> list[str]:
    from gateway.config import PluginSettingsError

    try:
        config.plugin_settings_as("storage", StorageSettings)  # problems as file:line: key
    except PluginSettingsError as exc:
        return exc.problems
    s = settings_of(config)
    storage_root(config, s).mkdir(parents=True, exist_ok=True)
    return []


@hookimpl
def gateway_association_requested(request: Any, config: Any) -> Rejection | None:
    why = low_on_space(config)
    if why is None:
        return None
    METRICS.inc("gateway_low_disk_rejections_total")
    # rejected-transient, service-provider (presentation), local-limit-exceeded
    return Rejection(2, 3, 2, why)


@hookimpl
def gateway_register_commands(commands):
    """``send`` (the Storage SCU, SND-1..SND-7) and ``archive check`` from the command line."""
    from gateway_plugins.storage_commands import add_storage_parsers

    add_storage_parsers(commands)
