"""Gateway-owned views of associations and DIMSE requests.

Plugins see these, never pynetdicom types, so the transport underneath can
change (DESIGN §2). They are plain data: no network handles leak out.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable

UNCOMPRESSED_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, required by STO-2)
)


@dataclass(frozen=True)
class AssociationInfo:
    """Who is talking to us: the facts a policy or an audit record needs."""

    id: str
    calling_ae: str
    called_ae: str
    peer_host: str
    peer_port: int
    local_port: int
    max_pdu: int = 0
    implementation_class_uid: str = ""
    implementation_version_name: str = ""


@dataclass(frozen=True)
class AssociationRequest:
    """An A-ASSOCIATE-RQ as seen by `gateway_association_requested`."""

    association: AssociationInfo
    abstract_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class Rejection:
    """An A-ASSOCIATE-RJ to send: PS3.8 table 9-21 result/source/reason."""

    result: int  # 1 rejected-permanent, 2 rejected-transient
    source: int  # 1 service-user, 2 service-provider (ACSE), 3 service-provider (presentation)
    reason: int
    why: str = ""


@dataclass(frozen=True)
class PresentationContextInfo:
    id: int
    abstract_syntax: str
    transfer_syntax: str


class DatasetPayload:
    """The encoded dataset of a DIMSE message, exactly as received.

    Small datasets are held in memory; large ones were spooled to a file by
    the Rust receiver while they arrived, so the hot path never holds a large
    object in Python memory.
    """

    __slots__ = ("_data", "_path", "length")

    def __init__(self, data: bytes | None = None, path: str | os.PathLike[str] | None = None,
                 length: int | None = None) -> None:
        if (data is None) == (path is None):
            raise ValueError("exactly one of data or path")
        self._data = data
        self._path = Path(path) if path is not None else None
        if length is None:
            length = len(data) if data is not None else self._path.stat().st_size  # type: ignore[union-attr]
        self.length = length

    @property
    def path(self) -> Path | None:
        """The spool file holding the bytes, or None when held in memory."""
        return self._path

    def read(self) -> bytes:
        if self._data is not None:
            return self._data
        return self._path.read_bytes()  # type: ignore[union-attr]

    def open(self) -> BinaryIO:
        import io

        if self._data is not None:
            return io.BytesIO(self._data)
        return open(self._path, "rb")  # type: ignore[arg-type]

    def write_to(self, fh: BinaryIO) -> None:
        """Append the bytes to an open binary file (kernel copy when spooled)."""
        if self._data is not None:
            fh.write(self._data)
            return
        fh.flush()
        with open(self._path, "rb") as src:  # type: ignore[arg-type]
            try:
                remaining = self.length
                while remaining > 0:
                    n = os.copy_file_range(src.fileno(), fh.fileno(), remaining)
                    if n == 0:
                        break
                    remaining -= n
                # copy_file_range moved the output fd's offset; keep Python's view in sync
                fh.seek(0, os.SEEK_END)
            except OSError:
                src.seek(0)
                shutil.copyfileobj(src, fh, 1 << 20)

    def discard(self) -> None:
        """Remove the spool file, if any; safe to call twice."""
        if self._path is not None:
            try:
                self._path.unlink()
            except FileNotFoundError:
                pass

    def __repr__(self) -> str:
        where = str(self._path) if self._path else "memory"
        return f"<DatasetPayload {self.length} bytes in {where}>"


@dataclass
class DimseRequest:
    """Fields every DIMSE request carries, and the config generation the
    association started on (read settings from it, not from module state)."""

    association: AssociationInfo
    context: PresentationContextInfo
    message_id: int
    config: Any = None


@dataclass
class EchoRequest(DimseRequest):
    """C-ECHO-RQ (PS3.7 9.1.5)."""


@dataclass
class StoreRequest(DimseRequest):
    """C-STORE-RQ (PS3.7 9.1.1) with its dataset as received."""

    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    priority: int = 0
    move_originator_ae: str | None = None
    move_originator_message_id: int | None = None
    payload: DatasetPayload | None = None
    #: The config generation's :class:`gateway.routing.Router`: a storage service
    #: asks it for a plan and records the plan in its index transaction, so the
    #: forward jobs commit with the instance (DESIGN §2). None: no forwarding.
    router: Any = None
    #: The config generation's plugin host: a storage service tells the other
    #: plugins what it stored through it (``gateway_instance_stored``).
    plugins: Any = None


@dataclass
class IdentifierRequest(DimseRequest):
    """A DIMSE request answered by a series of responses (C-FIND, C-MOVE, C-GET):
    the Identifier as received, and whether the peer sent a C-CANCEL-RQ for it.
    Generic: the core knows nothing of what the Identifier means.

    The service's handler returns an iterator of ``(status, dataset)``: a status
    is a code or a :class:`Response` (whose ``extra`` may carry response command
    elements such as ``NumberOfCompletedSuboperations``), the dataset is the
    response's Identifier or None."""

    sop_class_uid: str = ""
    priority: int = 0
    identifier: Any = None  # None: it could not be decoded
    is_cancelled: Callable[[], bool] = field(default=lambda: False, repr=False)
    #: C-MOVE: the Move Destination AE title as received (stripped).
    move_destination: str | None = None
    plugins: Any = None
    #: C-GET: the requesting association as the way back for C-STORE
    #: sub-operations. Opaque: a service hands it to the Storage SCU
    #: (``registry.scu("storage-scu").client.send_back``); None for other operations.
    store_channel: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class IndexedInstance:
    """An object a storage service has stored and indexed (`gateway_instance_stored`)."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str | None
    transfer_syntax: str
    #: The stored Part 10 file, to read (never to modify or move); None for a
    #: backend without local files.
    path: Path | None
    association: AssociationInfo


@dataclass
class RoutedInstance:
    """An instance being stored, as routing (rules and `gateway_route`) sees it."""

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str | None
    transfer_syntax: str
    association: AssociationInfo
    #: destinations the routes/*.toml rules chose so far
    destinations: tuple[str, ...] = ()
    _dataset: Any = field(default=None, repr=False)
    _loader: Any = field(default=None, repr=False)

    def dataset(self) -> Any:
        """The header as a pydicom ``Dataset`` (read once, without Pixel Data)."""
        if self._dataset is None and self._loader is not None:
            self._dataset = self._loader()
        return self._dataset


@dataclass(frozen=True)
class SeriesInfo:
    """A series that became complete (`gateway_series_complete`)."""

    series_instance_uid: str
    study_instance_uid: str
    instances_received: int


@dataclass
class EventReportRequest(DimseRequest):
    """N-EVENT-REPORT-RQ (PS3.7 10.1.1) with its Event Information as received,
    encoded in ``context.transfer_syntax`` (e.g. a Storage Commitment result, PS3.4 J.3.3)."""

    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    event_type_id: int = 0
    payload: DatasetPayload | None = None


@dataclass
class Response:
    """What a service answers: a status and optional comment/offending elements."""

    status: int
    error_comment: str | None = None
    extra: dict[str, object] = field(default_factory=dict)
    #: What the service did, for a caller in this process (``dicom-gateway import``
    #: counts duplicates from it); never on the wire, which carries only the status,
    #: the comment and ``extra``. The storage service says ``"duplicate"`` (a
    #: byte-identical resend, nothing written) and ``"kept-first"`` (other content,
    #: the stored version kept by ``duplicate_policy``); None: nothing to add.
    outcome: str | None = None
