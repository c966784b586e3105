"""`dicom-gateway import`: files and folders into the archive through the
same storage service and rules as the network (MED-4: plain folders of DICOM
files without a DICOMDIR are fine).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from gateway.messages import AssociationInfo, DatasetPayload, PresentationContextInfo, Response, StoreRequest
from gateway.status import category

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


@dataclass
class ImportSummary:
    imported: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


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


def import_paths(paths: Iterable[str | os.PathLike], runtime: Any,
                 progress: Callable[[Path, str | None], None] | None = None) -> ImportSummary:
    config = runtime.config
    host = runtime.plugins
    summary = ImportSummary()
    who = AssociationInfo(id="import", calling_ae="IMPORT", called_ae=config.node.ae_title,
                          peer_host="localhost", peer_port=0, local_port=0)
    for n, path in enumerate(candidates(paths), start=1):
        problem: str | None = None
        try:
            if path.name.upper() == "DICOMDIR":
                summary.skipped.append((path, "DICOMDIR (a directory, not an object)"))
                continue
            try:
                sop_class, sop_instance, syntax, data = _split(path)
            except BrokenFile as exc:
                problem = str(exc)
                summary.failed.append((path, problem))
                continue
            except Exception as exc:
                summary.skipped.append((path, f"not DICOM: {exc}"))
                continue
            if sop_class == MEDIA_STORAGE_DIRECTORY:
                summary.skipped.append((path, "DICOMDIR (a directory, not an object)"))
                continue
            service = host.services.find(config, "c_store", sop_class)
            if service is None:
                summary.skipped.append((path, f"no storage service accepts SOP class {sop_class}"))
                continue
            request = StoreRequest(who, PresentationContextInfo(0, sop_class, syntax), n, config,
                                   sop_class_uid=sop_class, sop_instance_uid=sop_instance,
                                   payload=DatasetPayload(data=data), router=runtime.router, plugins=host)
            answer = host.call("gateway_instance_received", request=request)
            if answer is None:
                answer = service.handler.c_store(request)
            status = answer.status if isinstance(answer, Response) else int(answer)
            if category(status) in ("Success", "Warning"):
                summary.imported.append(path)
            else:
                comment = answer.error_comment if isinstance(answer, Response) else None
                problem = f"status 0x{status:04X}" + (f": {comment}" if comment else "")
                summary.failed.append((path, problem))
        except Exception as exc:  # one bad file never stops the import
            problem = f"{type(exc).__name__}: {exc}"
            summary.failed.append((path, problem))
        finally:
            if progress is not None:
                progress(path, problem)
    return summary


def import_command(paths: list[str], runtime: Any) -> int:
    import sys

    from gateway.progress import Progress

    bar = Progress(len(candidates(paths)), "import")
    summary = import_paths(paths, runtime, progress=lambda p, err: bar.step(str(p), failed=err is not None))
    bar.close(summary=False)  # the summary below also counts what was skipped
    print(f"imported {len(summary.imported)}, skipped {len(summary.skipped)}, failed {len(summary.failed)}")
    for path, why in summary.skipped:
        print(f"  skipped  {path}: {why}")
    for path, why in summary.failed:
        print(f"  FAILED   {path}: {why}", file=sys.stderr)
    return 1 if summary.failed else 0
