"""The DICOMDIR of one file-set (MED-1; PS3.3 F.3 Basic Directory, PS3.10 §8 file IDs).

Records are built as instances are added, a few dict look-ups each, and the
offsets that link them (PS3.3 F.3.2.2) are fixed once when the DICOMDIR is
encoded. pydicom's ``FileSet`` did this before: its ``add`` walks every instance
already staged (quadratic; 13 of 18 s of exporting the 529-object corpus), reads
each file whole and writes it again through its stage. What a record *holds*
still comes from pydicom's ``DIRECTORY_RECORDERS`` (the PS3.3 F.5 keys per record
type) and its classification of SOP classes into record types, so only the
layout and the encoding are ours.

File IDs follow pydicom's scheme, which DCMTK and the tests read: one component
per level, the record type's prefix and the node's position among its siblings,
``PT000000/ST000000/SE000000/IM000000`` (uppercase, 8 characters, 4 levels).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Directory", "MEDIA_STORAGE_DIRECTORY", "STANDALONE_CURVE"]

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
STANDALONE_CURVE = "1.2.840.10008.5.1.4.1.1.9"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
# (0004,1400) Offset of the Next Directory Record UL, (0004,1410) Record In-use Flag US
# FFFFH, (0004,1420) Offset of Referenced Lower-Level Directory Entity UL: the lowest
# tags of every record, so they are written by hand ahead of the rest of it.
_RECORD_HEAD = struct.Struct("<HH2sHI HH2sHH HH2sHI")
_RECORD_HEAD_LEN = _RECORD_HEAD.size  # 34


def _prefixes() -> dict[str, str]:
    from pydicom import fileset as pfs

    # pydicom has no prefix for the retired CURVE record (PS3.3-2004 F.5.x): "CV".
    return {**pfs._PREFIXES, "CURVE": "CV"}


@dataclass
class _Node:
    record: Any  # pydicom Dataset: the record's keys, without the three linking elements
    component: str  # this node's File ID component
    children: dict[tuple[str, str], "_Node"] = field(default_factory=dict)


def _explicit_le(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b" " * (len(raw) % 2)


@dataclass
class Placement:
    components: list[str]  # the file's File ID, one component per level
    new: list[tuple[dict, tuple[str, str], _Node]]  # records to link in: (siblings, key, node)

    @property
    def file_id(self) -> str:
        return "/".join(self.components)


class Directory:
    """The records of one file-set, in the order their instances were added."""

    def __init__(self, file_set_id: str) -> None:
        self.file_set_id = file_set_id[:16].upper()  # File-set ID is CS, at most 16 characters
        self._roots: dict[tuple[str, str], _Node] = {}
        self._prefix = _prefixes()

    def place(self, ds: Any) -> Placement:
        """The File ID components the file of ``ds`` (a header; pixel data not needed) is
        to be written under, and its records, not yet in the directory: ``add`` them once
        the file is written, before the next ``place``.

        Raises ValueError when a record needs an attribute ``ds`` lacks, or when the
        instance is already in the file-set.
        """
        levels = self._levels(ds)
        siblings = self._roots
        placement = Placement([], [])
        for n, (kind, key, make) in enumerate(levels):
            node = siblings.get((kind, key))
            leaf = n == len(levels) - 1
            if node is None:  # records are made only for new nodes: most of an add's cost
                record = make()
                node = _Node(record, self._component(kind, len(siblings)))
                if leaf:  # the leaf references the file
                    record.ReferencedFileID = [*placement.components, node.component]
                    record.ReferencedSOPClassUIDInFile = str(ds.SOPClassUID)
                    record.ReferencedSOPInstanceUIDInFile = str(ds.SOPInstanceUID)
                    record.ReferencedTransferSyntaxUIDInFile = EXPLICIT_LE
                placement.new.append((siblings, (kind, key), node))
            elif leaf:
                raise ValueError(f"instance {ds.SOPInstanceUID} is already in this file-set")
            placement.components.append(node.component)
            siblings = node.children
        return placement

    @staticmethod
    def add(placement: Placement) -> None:
        for siblings, key, node in placement.new:
            siblings[key] = node

    def _component(self, kind: str, index: int) -> str:
        prefix = self._prefix.get(kind, "XX")
        digits = 8 - len(prefix)
        if index >= 10 ** digits:
            raise ValueError(f"more than {10 ** digits} {kind} records under one parent")
        return f"{prefix}{index:0{digits}d}"

    @staticmethod
    def _levels(ds: Any) -> list[tuple[str, str, Callable[[], Any]]]:
        """(record type, key among siblings, record maker) from the top level down."""
        from pydicom import fileset as pfs

        def maker(kind: str) -> Callable[[], Any]:
            def make() -> Any:
                if kind == "CURVE":
                    return _curve_record(ds)
                try:
                    record = pfs.DIRECTORY_RECORDERS[kind](ds)
                except ValueError as exc:
                    raise ValueError(f"cannot make its {kind} record (PS3.3 F.5): {exc}") from None
                record.DirectoryRecordType = kind
                if "SpecificCharacterSet" in ds:
                    record.SpecificCharacterSet = ds.SpecificCharacterSet
                return record
            return make

        uid = str(ds.SOPInstanceUID)
        single = pfs._single_level_record_type(ds)
        if single != "PATIENT":  # a record type of its own at the top (hanging protocol, palette, ...)
            return [(single, uid, maker(single))]
        if str(ds.get("SOPClassUID", "")) == STANDALONE_CURVE:
            leaf = "CURVE"
        else:
            leaf = pfs._four_level_record_type(ds)
        if "PatientID" not in ds:  # the PATIENT record's one Type 1 key (PS3.3 F.5.1)
            raise ValueError("cannot make its PATIENT record (PS3.3 F.5): no Patient ID")
        return [("PATIENT", str(ds.PatientID), maker("PATIENT")),
                ("STUDY", str(ds.get("StudyInstanceUID", "")), maker("STUDY")),
                ("SERIES", str(ds.get("SeriesInstanceUID", "")), maker("SERIES")),
                (leaf, uid, maker(leaf))]

    def encode(self, implementation_class_uid: str, implementation_version_name: str,
               instance_uid: str) -> bytes:
        """The DICOMDIR file: preamble, File Meta, the directory in Explicit VR Little Endian."""
        from pydicom.dataset import FileMetaDataset
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_dataset, write_file_meta_info

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MEDIA_STORAGE_DIRECTORY
        meta.MediaStorageSOPInstanceUID = instance_uid
        meta.TransferSyntaxUID = EXPLICIT_LE
        # MED-5: our identity, and no Source Application Entity Title.
        meta.ImplementationClassUID = implementation_class_uid
        meta.ImplementationVersionName = implementation_version_name
        fp = DicomBytesIO()
        fp.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(fp, meta, enforce_standard=True)
        head = fp.getvalue()

        def body(record: Any) -> bytes:
            out = DicomBytesIO()
            out.is_little_endian, out.is_implicit_VR = True, False
            write_dataset(out, record)
            return out.getvalue()

        # Depth first, as DCMTK writes it: a record, then its children's subtrees.
        order: list[tuple[_Node, bytes]] = []

        def walk(nodes: dict) -> None:
            for node in nodes.values():
                order.append((node, body(node.record)))
                walk(node.children)

        walk(self._roots)
        file_set_id = _explicit_le(self.file_set_id)
        # (0004,1130) CS, (0004,1200) UL, (0004,1202) UL, (0004,1212) US, (0004,1220) SQ header
        prefix_len = (8 + len(file_set_id)) + 12 + 12 + 10 + 12
        offsets: dict[int, int] = {}
        at = len(head) + prefix_len  # offsets count from the file's first byte (PS3.3 F.3.2.2)
        for node, raw in order:
            offsets[id(node)] = at
            at += 8 + _RECORD_HEAD_LEN + len(raw)
        seq_len = at - len(head) - prefix_len

        def first(nodes: dict) -> int:
            return offsets[id(next(iter(nodes.values())))] if nodes else 0

        def last(nodes: dict) -> int:
            return offsets[id(list(nodes.values())[-1])] if nodes else 0

        following: dict[int, int] = {}

        def link(nodes: dict) -> None:
            ordered = list(nodes.values())
            for a, b in zip(ordered, ordered[1:]):
                following[id(a)] = offsets[id(b)]
            for node in ordered:
                link(node.children)

        link(self._roots)
        parts = [head,
                 struct.pack("<HH2sH", 0x0004, 0x1130, b"CS", len(file_set_id)), file_set_id,
                 struct.pack("<HH2sHI", 0x0004, 0x1200, b"UL", 4, first(self._roots)),
                 struct.pack("<HH2sHI", 0x0004, 0x1202, b"UL", 4, last(self._roots)),
                 struct.pack("<HH2sHH", 0x0004, 0x1212, b"US", 2, 0),  # File-set Consistency Flag
                 struct.pack("<HH2sHI", 0x0004, 0x1220, b"SQ", 0, seq_len)]
        for node, raw in order:
            parts.append(_ITEM + struct.pack("<I", _RECORD_HEAD_LEN + len(raw)))
            parts.append(_RECORD_HEAD.pack(
                0x0004, 0x1400, b"UL", 4, following.get(id(node), 0),
                0x0004, 0x1410, b"US", 2, 0xFFFF,
                0x0004, 0x1420, b"UL", 4, first(node.children)))
            parts.append(raw)
        return b"".join(parts)


def _curve_record(ds: Any) -> Any:
    """The retired CURVE record (PS3.3-2004 F.5): Curve Number. A curve need not carry an
    Instance Number (its number is Curve Number); the record gets one either way, as the
    IMAGE-shaped record DCMTK writes for it does."""
    from pydicom.dataset import Dataset

    record = Dataset()
    number = ds.get("CurveNumber", ds.get("InstanceNumber", 1))
    record.InstanceNumber = ds.get("InstanceNumber", number)
    record.CurveNumber = number
    record.DirectoryRecordType = "CURVE"
    if "SpecificCharacterSet" in ds:
        record.SpecificCharacterSet = ds.SpecificCharacterSet
    return record
