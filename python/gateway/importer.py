"""`dicom-gateway import`: files and folders into the archive through the
same storage service and rules as the network (MED-4: plain folders of DICOM
files without a DICOMDIR are fine).
"""

from __future__ import annotations

import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from gateway.messages import AssociationInfo, DatasetPayload, PresentationContextInfo, Response, StoreRequest
from gateway.status import category

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
#: Stores in flight during an import (bench/media.py: 1 -> 2 threads ...).
IMPORT_THREADS = 4


#: ``Response.outcome`` values of a store that wrote nothing new (STO-6).
DUPLICATE_OUTCOMES = ("duplicate", "kept-first")


@dataclass
class ImportSummary:
    imported: list[Path] = field(default_factory=list)
    #: (path, outcome) of the files the storage service did not store again:
    #: ``duplicate`` (byte-identical) or ``kept-first`` (other content, kept by policy).
    duplicates: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def line(self) -> str:
        return (f"imported {len(self.imported)}, duplicates {len(self.duplicates)}, "
                f"skipped {len(self.skipped)}, failed {len(self.failed)}")

    def report(self) -> None:
        """The summary line, then every file not imported and why (`import`, `media import`)."""
        import sys

        print(self.line())
        for path, outcome in self.duplicates:
            if outcome == "kept-first":  # a byte-identical copy is not news; other content is
                print(f"  kept first  {path}: other content under a stored SOP Instance UID; "
                      f"duplicate_policy keep-first kept the stored version")
        for path, why in self.skipped:
            print(f"  skipped  {path}: {why}")
        for path, why in self.failed:
            print(f"  FAILED   {path}: {why}", file=sys.stderr)


class BrokenFile(ValueError):
    """A file with a DICOM preamble whose File Meta cannot be read."""


def candidates(paths: Iterable[str | os.PathLike]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file()))
        else:
            found.append(p)
    return found


# Explicit VRs with a reserved field and a 32-bit length (PS3.5 7.1.2).
_LONG_VRS = frozenset((b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"))


def meta_end(raw: bytes, start: int = 132) -> int:
    """Offset of the dataset after a File Meta group that begins at ``start``.

    Walks the group 0002 elements one by one rather than trusting (0002,0000):
    files on non-conformant media (MED-4) may lack the group length or carry a
    wrong one, and a dataset cut there would keep File Meta elements inside.
    Explicit VR LE as PS3.10 7.1 says; an implicit VR meta, as some old writers
    made, is read too.
    """
    pos = start
    while pos + 8 <= len(raw) and raw[pos:pos + 2] == b"\x02\x00":
        vr = raw[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<I", raw, pos + 8)
            pos += 12 + length
        elif vr.isalpha() and vr.isupper():
            (length,) = struct.unpack_from("<H", raw, pos + 6)
            pos += 8 + length
        else:  # implicit VR: a 32-bit length right after the tag
            (length,) = struct.unpack_from("<I", raw, pos + 4)
            pos += 8 + length
    if pos > len(raw):
        raise ValueError("File Meta runs past the end of the file")
    return pos


def _split(path: Path) -> tuple[str, str, str, bytes]:
    """(SOP class, SOP instance, transfer syntax, dataset bytes) of a DICOM file."""
    raw = path.read_bytes()
    if raw[128:132] == b"DICM":
        from pydicom.filereader import read_file_meta_info

        try:  # DICOM by its preamble: a broken one is a failure, not a skip
            meta = read_file_meta_info(path)
            return (str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID),
                    str(meta.TransferSyntaxUID), raw[meta_end(raw):])
        except Exception as exc:
            raise BrokenFile(f"unreadable File Meta: {exc}") from exc
    # No preamble: a bare dataset, as some non-conformant media hold them.
    from pydicom import dcmread

    ds = dcmread(path, force=True, stop_before_pixels=True)
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise ValueError("not a DICOM file (no preamble and no SOP Class/Instance UID)")
    syntax = "1.2.840.10008.1.2" if ds.is_implicit_VR else "1.2.840.10008.1.2.1" if ds.is_little_endian else "1.2.840.10008.1.2.2"
    return str(ds.SOPClassUID), str(ds.SOPInstanceUID), syntax, raw


class Importer:
    """Stores files one by one through the storage path, into :attr:`summary`.

    ``import_paths`` feeds it files and folders; a reader of other sources (the
    media plugin's ISO images) feeds it one extracted file at a time, each named
    in the summary as the source shows it (``shown``).
    """

    def __init__(self, runtime: Any, progress: Callable[[Path, str | None], None] | None = None) -> None:
        self.runtime = runtime
        self.progress = progress
        self.summary = ImportSummary()
        self._count = 0
        self._lock = threading.Lock()  # the message counter and the progress callback
        self._who = AssociationInfo(id="import", calling_ae="IMPORT", called_ae=runtime.config.node.ae_title,
                                    peer_host="localhost", peer_port=0, local_port=0)

    def add(self, path: Path, shown: Path | None = None) -> None:
        """Store the file at ``path``; one bad file never stops the import."""
        shown = path if shown is None else shown
        with self._lock:
            self._count += 1
            number = self._count
        problem: str | None = None
        try:
            problem = self._store(path, shown, number)
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
            self.summary.failed.append((shown, problem))
        if self.progress is not None:
            with self._lock:
                self.progress(shown, problem)

    def add_all(self, paths: Sequence[Path], threads: int = IMPORT_THREADS) -> None:
        """Store ``paths`` on ``threads`` threads, as ``serve`` stores what several
        associations send: a store spends much of its time in the file's and the
        index's fsyncs, which release the GIL, and concurrent stores of a process
        share one index commit (group commit)."""
        if threads <= 1 or len(paths) < 2:
            for path in paths:
                self.add(path)
            return
        with ThreadPoolExecutor(threads, thread_name_prefix="import") as pool:
            for _ in pool.map(self.add, paths):
                pass

    def fail(self, shown: Path, why: str) -> None:
        """A file the source could not hand over (unreadable on its medium)."""
        with self._lock:
            self._count += 1
        self.summary.failed.append((shown, why))
        if self.progress is not None:
            with self._lock:
                self.progress(shown, why)

    def _store(self, path: Path, shown: Path, number: int) -> str | None:
        """Store one file; the failure it recorded, or None."""
        config, host, summary = self.runtime.config, self.runtime.plugins, self.summary
        if shown.name.upper() == "DICOMDIR":
            summary.skipped.append((shown, "DICOMDIR (a directory, not an object)"))
            return None
        try:
            sop_class, sop_instance, syntax, data = _split(path)
        except BrokenFile as exc:
            summary.failed.append((shown, str(exc)))
            return str(exc)
        except Exception as exc:
            summary.skipped.append((shown, f"not DICOM: {exc}"))
            return None
        if sop_class == MEDIA_STORAGE_DIRECTORY:
            summary.skipped.append((shown, "DICOMDIR (a directory, not an object)"))
            return None
        service = host.services.find(config, "c_store", sop_class)
        if service is None:
            summary.skipped.append((shown, f"no storage service accepts SOP class {sop_class}"))
            return None
        request = StoreRequest(self._who, PresentationContextInfo(0, sop_class, syntax), number, config,
                               sop_class_uid=sop_class, sop_instance_uid=sop_instance,
                               payload=DatasetPayload(data=data), router=self.runtime.router, plugins=host)
        answer = host.call("gateway_instance_received", request=request)
        if answer is None:
            answer = service.handler.c_store(request)
        status = answer.status if isinstance(answer, Response) else int(answer)
        if category(status) not in ("Success", "Warning"):
            comment = answer.error_comment if isinstance(answer, Response) else None
            problem = f"status 0x{status:04X}" + (f": {comment}" if comment else "")
            summary.failed.append((shown, problem))
            return problem
        # The storage service says in the same call that stored (or did not store)
        # the object whether it was a duplicate, so the count is exact even when a
        # peer sends the same instance at the same moment (STO-6).
        outcome = answer.outcome if isinstance(answer, Response) else None
        if outcome in DUPLICATE_OUTCOMES:
            summary.duplicates.append((shown, outcome))
        else:
            summary.imported.append(shown)
        return None


def import_paths(paths: Iterable[str | os.PathLike], runtime: Any,
                 progress: Callable[[Path, str | None], None] | None = None) -> ImportSummary:
    importer = Importer(runtime, progress)
    importer.add_all(candidates(paths))
    return importer.summary


def import_command(paths: list[str], runtime: Any) -> int:
    from gateway.progress import Progress

    bar = Progress(len(candidates(paths)), "import")
    summary = import_paths(paths, runtime, progress=lambda p, err: bar.step(str(p), failed=err is not None))
    bar.close(summary=False)  # the summary below also counts duplicates and what was skipped
    summary.report()
    return 1 if summary.failed else 0
