"""The file-set reader (MED-3, MED-4): a DICOMDIR's tree, and which files it
names, for ``media ls`` and ``media import``. Importing itself goes through
``gateway.importer`` (the one storage path of ``dicom-gateway import``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator, TextIO

__all__ = ["find_dicomdir", "Referenced", "referenced_ids", "referenced_files", "print_tree", "file_id_key"]

_LABELS = {"PATIENT": ("PatientID", "PatientName"), "STUDY": ("StudyInstanceUID", "StudyDate", "StudyDescription"),
           "SERIES": ("SeriesInstanceUID", "Modality", "SeriesNumber")}


def find_dicomdir(path: Path) -> Path | None:
    """The DICOMDIR file at ``path`` (the file itself, or at the root of a folder; any case)."""
    if path.is_file():
        return path if path.name.upper() == "DICOMDIR" else None
    if path.is_dir():
        for child in path.iterdir():
            if child.name.upper() == "DICOMDIR" and child.is_file():
                return child
    return None


@dataclass
class Referenced:
    present: list[Path] = field(default_factory=list)
    missing: list[tuple[Path, str]] = field(default_factory=list)  # (path, SOP Instance UID)


def file_id_key(name: str) -> str:
    """A file ID component as the DICOMDIR names it: ISO 9660 readers and copies
    may have changed the case or kept a ``;1`` version (and the ``.`` before it)."""
    return name.upper().split(";")[0].rstrip(".")


def _resolve(root: Path, parts: list[str]) -> Path:
    """A file ID on the medium, each component matched by :func:`file_id_key`."""
    here = root
    for part in parts:
        exact = here / part
        if exact.exists():
            here = exact
            continue
        found = None
        if here.is_dir():
            for child in here.iterdir():
                if file_id_key(child.name) == part.upper():
                    found = child
                    break
        here = found if found is not None else exact
    return here


def _records(dicomdir: Path | BinaryIO) -> Any:
    from pydicom import dcmread

    return dcmread(dicomdir)


def _walk(ds: Any) -> Iterator[tuple[int, Any]]:
    """(depth, record) in tree order, following the offsets as a reader must."""
    by_offset = {rec.seq_item_tell: rec for rec in ds.DirectoryRecordSequence}

    def chain(offset: int, depth: int) -> Iterator[tuple[int, Any]]:
        seen = set()
        while offset and offset in by_offset and offset not in seen:
            seen.add(offset)
            rec = by_offset[offset]
            yield depth, rec
            yield from chain(int(rec.get("OffsetOfReferencedLowerLevelDirectoryEntity", 0) or 0), depth + 1)
            offset = int(rec.get("OffsetOfTheNextDirectoryRecord", 0) or 0)

    yield from chain(int(ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity), 0)


def referenced_ids(dicomdir: Path | BinaryIO, studies: list[str] | None = None) -> Iterator[tuple[list[str], str]]:
    """(file ID components, SOP Instance UID) of every file the DICOMDIR references
    (optionally of some studies only), in tree order; ``dicomdir`` a file or its bytes."""
    study = None
    for _depth, rec in _walk(_records(dicomdir)):
        kind = str(rec.DirectoryRecordType)
        if kind == "STUDY":
            study = str(rec.get("StudyInstanceUID", ""))
        if kind in ("PATIENT",):
            study = None
        file_id = rec.get("ReferencedFileID")
        if not file_id:
            continue
        if studies and study not in studies:
            continue
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        yield [str(p) for p in parts], str(rec.get("ReferencedSOPInstanceUIDInFile", "?"))


def referenced_files(dicomdir: Path, studies: list[str] | None = None) -> Referenced:
    """The files the DICOMDIR references (optionally of some studies only), present or missing."""
    out = Referenced()
    for parts, uid in referenced_ids(dicomdir, studies):
        path = _resolve(dicomdir.parent, parts)
        if path.is_file():
            out.present.append(path)
        else:
            out.missing.append((path, uid))
    return out


def print_tree(dicomdir: Path | BinaryIO, out: TextIO) -> int:
    """``media ls``: one line per record, indented by level; returns the record count."""
    ds = _records(dicomdir)
    n = 0
    for depth, rec in _walk(ds):
        n += 1
        kind = str(rec.DirectoryRecordType)
        keys = _LABELS.get(kind)
        if keys:
            text = "  ".join(str(rec.get(k, "")) for k in keys if rec.get(k, "") != "")
        else:
            fid = rec.get("ReferencedFileID")
            fid = "/".join(fid) if fid is not None and not isinstance(fid, str) else (fid or "")
            text = f"{fid}  {rec.get('ReferencedSOPInstanceUIDInFile', '')}"
        out.write(f"{'  ' * depth}{kind}  {text}\n")
    return n
