"""Header-only extraction of the attributes the index keeps (STO-7, DAT-3, QRS-3).

The keys are those every Q/R level of the seeds can match on or return:
seed 000 tables 4-38..4-40 (Philips) and seed 003 sections 4.4 and 5.4 (GENIE),
plus what the import server and ``dicom-gateway ls`` show.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO, Mapping

from pydicom import config
from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset, read_partial
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID
from pydicom.values import convert_value

__all__ = ["InstanceAttrs", "Scan", "UnreadableDataset", "extract_attributes", "normalize_pn", "scan_instance"]


class UnreadableDataset(ValueError):
    """The bytes are not a DICOM dataset we can index (the storage SCP answers C000/A730)."""


# Values of keys longer than this are not read by the Rust scan (bounded memory
# on hostile input); such a key counts as malformed. pydicom's parse (used by
# extract_attributes) skips every other element by seeking, whatever its size.
_MAX_VALUE = 1 << 20

# Nothing the index keeps lives after group 0054 (Image ID); stopping there skips
# RT ROI sequences (3006), curves (50xx), overlays (60xx) and the pixel data.
_LAST_GROUP = 0x0054

# keyword -> (tag, level); the order is the order of InstanceAttrs' fields.
_KEYS: dict[str, tuple[int, str]] = {
    # patient level (seed 000 t4-38; seed 003 t4-2)
    "patient_id": (0x00100020, "patient"),
    "issuer_of_patient_id": (0x00100021, "patient"),
    "patient_name": (0x00100010, "patient"),
    "birth_date": (0x00100030, "patient"),
    "birth_time": (0x00100032, "patient"),
    "sex": (0x00100040, "patient"),
    "other_patient_ids": (0x00101000, "patient"),
    # study level (seed 000 t4-39; seed 003 t4-4, t5-2)
    "study_instance_uid": (0x0020000D, "study"),
    "study_date": (0x00080020, "study"),
    "study_time": (0x00080030, "study"),
    "accession_number": (0x00080050, "study"),
    "study_id": (0x00200010, "study"),
    "study_description": (0x00081030, "study"),
    "referring_physician_name": (0x00080090, "study"),
    "patient_age": (0x00101010, "study"),
    "patient_size": (0x00101020, "study"),
    "patient_weight": (0x00101030, "study"),
    # series level (seed 000 t4-39; seed 003 t4-6, t5-4)
    "series_instance_uid": (0x0020000E, "series"),
    "modality": (0x00080060, "series"),
    "series_number": (0x00200011, "series"),
    "series_description": (0x0008103E, "series"),
    "series_date": (0x00080021, "series"),
    "series_time": (0x00080031, "series"),
    "body_part_examined": (0x00180015, "series"),
    "protocol_name": (0x00181030, "series"),
    # image level (seed 000 t4-39; seed 003 t4-8, t5-6)
    "sop_instance_uid": (0x00080018, "instance"),
    "sop_class_uid": (0x00080016, "instance"),
    "instance_number": (0x00200013, "instance"),
    "content_date": (0x00080023, "instance"),
    "content_time": (0x00080033, "instance"),
    "number_of_frames": (0x00280008, "instance"),
    "image_type": (0x00080008, "instance"),
    "image_id": (0x00540400, "instance"),
    "rows": (0x00280010, "instance"),
    "columns": (0x00280011, "instance"),
}
_INT_KEYS = {"series_number", "instance_number", "number_of_frames", "rows", "columns"}
_FLOAT_KEYS = {"patient_size", "patient_weight"}
_PN_KEYS = {"patient_name", "referring_physician_name"}
_REQUIRED = ("sop_class_uid", "sop_instance_uid", "study_instance_uid", "series_instance_uid")
_VRS = {key: dictionary_VR(tag) for key, (tag, _) in _KEYS.items()}
_SPECIFIC_TAGS = [Tag(t) for t, _ in _KEYS.values()] + [Tag(0x00080005)]
_SCAN_TAGS = [t for t, _ in _KEYS.values()]  # the Rust scan adds (0008,0005) itself


@dataclass(slots=True)
class InstanceAttrs:
    """What the index keeps of one instance: decoded text, ``None`` when absent.

    Strings are decoded with the dataset's Specific Character Set (DAT-3);
    multi-valued elements are joined with ``\\`` as on the wire.
    """

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str = ""
    issuer_of_patient_id: str | None = None
    patient_name: str | None = None
    birth_date: str | None = None
    birth_time: str | None = None
    sex: str | None = None
    other_patient_ids: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    accession_number: str | None = None
    study_id: str | None = None
    study_description: str | None = None
    referring_physician_name: str | None = None
    patient_age: str | None = None
    patient_size: float | None = None
    patient_weight: float | None = None
    modality: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    series_date: str | None = None
    series_time: str | None = None
    body_part_examined: str | None = None
    protocol_name: str | None = None
    instance_number: int | None = None
    content_date: str | None = None
    content_time: str | None = None
    number_of_frames: int | None = None
    image_type: str | None = None
    image_id: str | None = None
    rows: int | None = None
    columns: int | None = None
    specific_character_set: str | None = None
    transfer_syntax_uid: str | None = None

    def level(self, level: str) -> dict[str, Any]:
        """The attributes of one level ('patient', 'study', 'series', 'instance')."""
        return {k: getattr(self, k) for k, (_, lvl) in _KEYS.items() if lvl == level}


_ATTR_FIELDS = {f.name for f in fields(InstanceAttrs)}
assert set(_KEYS) <= _ATTR_FIELDS


def normalize_pn(value: str | None) -> str | None:
    """Search form of a Person Name: upper case, blanks around components and
    empty trailing components/groups dropped, ``^`` and ``=`` kept.

    Matching a wildcard against this string "ignores component boundaries"
    (seed 003 t4-2, QRS-3): ``MULLER*`` and ``*JURGEN`` both match
    ``MULLER^JURGEN``.
    """
    if value is None:
        return None
    groups = []
    for group in value.split("="):
        comps = [c.strip() for c in group.split("^")]
        while comps and not comps[-1]:
            comps.pop()
        groups.append("^".join(comps))
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups).upper()


def _stop_after_keys(tag: BaseTag, vr: str | None, length: int) -> bool:
    return tag.group > _LAST_GROUP


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join("" if v is None else str(v) for v in value)
    if isinstance(value, bytes):  # an unknown VR we cannot decode: keep it readable
        return value.decode("latin-1").strip(" \x00")
    return str(value).strip(" \x00")


def _number(value: Any, kind: type) -> int | float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
        if value is None:
            return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _convert(raw: RawDataElement | DataElement, vr: str, encodings: list[str]) -> Any:
    """The value of one raw element, converted with pydicom's value converters
    (no Dataset): the dictionary VR directly, any other written VR (UN, a wrong
    VR) the way ``Dataset.__getitem__`` converts it. An element pydicom's parser
    already converted (empty values, sequences) gives its value."""
    if isinstance(raw, DataElement):
        return None if raw.VR == "SQ" else raw.value
    if (raw.VR or vr) == vr:  # implicit VR: the dictionary's
        return convert_value(vr, raw, encodings)
    elem = convert_raw_data_element(raw, encoding=encodings)
    return None if elem.VR == "SQ" else elem.value


_SLOW = object()
_TEXT_VRS = {"UI", "DA", "TM", "CS", "SH", "LO", "PN", "AS", "DT", "UC", "ST", "LT", "UT"}
_IS_RE = re.compile(r"[+-]?\d{1,15}")
_DS_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _fast(key: str, vr: str, value: bytes, little: bool) -> Any:
    """The final value of a key for the common case pydicom's converters would
    turn into the same thing: one value, ASCII (no ISO 2022 escape), VR as in
    the dictionary. Anything else is ``_SLOW`` (the full conversion)."""
    if vr == "US":
        if len(value) == 2 and key in _INT_KEYS:
            return int.from_bytes(value, "little" if little else "big")
        return _SLOW
    if not value.isascii() or b"\\" in value or b"\x1b" in value:
        return _SLOW
    text = value.decode("ascii").strip(" \x00")
    if key in _INT_KEYS:
        return int(text) if vr == "IS" and _IS_RE.fullmatch(text) else _SLOW
    if key in _FLOAT_KEYS:
        return float(text) if vr == "DS" and _DS_RE.fullmatch(text) else _SLOW
    return text if vr in _TEXT_VRS else _SLOW


def _from_raw(raw: Mapping[int, RawDataElement | DataElement], transfer_syntax_uid: str | None,
              oversized: frozenset[int] = frozenset()) -> InstanceAttrs:
    """What the index keeps, from the raw (undecoded) top-level elements of the
    keys and (0008,0005). Shared by :func:`extract_attributes` (pydicom's
    parser) and :func:`scan_instance` (the Rust scan), so they cannot drift."""
    cs = raw.get(0x00080005)
    charset = _convert(cs, "CS", []) if cs is not None else None
    try:
        encodings = convert_encodings(charset)
    except Exception:  # pydicom warns and falls back on unknown terms; be as lenient
        encodings = ["iso8859"]
    values: dict[str, Any] = {}
    # pydicom validates values while converting; only when it may raise does the
    # fast path (which does not validate) change what is indexed.
    fast = config.settings.reading_validation_mode != config.RAISE
    for key, (tag, _) in _KEYS.items():
        elem = raw.get(tag)
        if fast and type(elem) is RawDataElement and elem.value and (elem.VR or _VRS[key]) == _VRS[key]:
            value = _fast(key, _VRS[key], elem.value, elem.is_little_endian)
            if value is not _SLOW:
                values[key] = value
                continue
        try:
            if tag in oversized:
                raise ValueError("value too long to index")
            if elem is None:
                continue
            value = _convert(elem, _VRS[key], encodings)
        except Exception as exc:
            if key in _REQUIRED:
                raise UnreadableDataset(f"cannot decode {keyword_for_tag(tag)} {Tag(tag)}: {exc}") from exc
            continue  # a malformed optional key is not indexed; the object still is (STO-5)
        if value is None:
            continue
        if key in _INT_KEYS:
            values[key] = _number(value, int)
        elif key in _FLOAT_KEYS:
            values[key] = _number(value, float)
        else:
            values[key] = _text(value)
    missing = [k for k in _REQUIRED if not values.get(k)]
    if missing:
        names = ", ".join(f"{keyword_for_tag(_KEYS[k][0])} {Tag(_KEYS[k][0])}" for k in missing)
        raise UnreadableDataset(f"dataset has no {names}: cannot index it (STO-7)")
    values["specific_character_set"] = _text(charset)
    values["transfer_syntax_uid"] = transfer_syntax_uid
    values["patient_id"] = values.get("patient_id") or ""
    return InstanceAttrs(**values)


def _from_dataset(ds: Dataset, transfer_syntax_uid: str | None) -> InstanceAttrs:
    # Read without deferring (only the keys are read at all: specific_tags), so
    # every key is a raw element with its value, or one pydicom's parser already
    # converted (an empty value; a sequence, which has no text value).
    raw = {tag: elem for tag in _SPECIFIC_TAGS if (elem := ds.get_item(tag)) is not None}
    return _from_raw(raw, transfer_syntax_uid)


def _syntax_flags(uid: str) -> tuple[bool, bool]:
    u = UID(uid)
    if not u.is_transfer_syntax:
        raise UnreadableDataset(f"unknown transfer syntax {uid!r}: cannot parse the dataset")
    if u == "1.2.840.10008.1.2.1.99":  # Deflated Explicit VR LE: not used by the seeds
        raise UnreadableDataset("deflated transfer syntax is not supported by the index")
    return u.is_implicit_VR, u.is_little_endian


def extract_attributes(source: bytes | bytearray | memoryview | os.PathLike | str,
                       transfer_syntax_uid: str | None = None, *,
                       has_file_meta: bool = False) -> InstanceAttrs:
    """Parse the header of one object and return what the index keeps.

    ``source`` is either the raw dataset (bytes, or a path to a spooled dataset)
    encoded in ``transfer_syntax_uid``, or with ``has_file_meta=True`` a Part-10
    file (bytes or path) whose File Meta gives the syntax. Only the header is
    parsed: parsing stops after group 0054 and long values are deferred, so
    pixel data, curves and private bulk data are never read.

    Raises :class:`UnreadableDataset` when the bytes cannot be parsed or one of
    SOP Class, SOP Instance, Study Instance or Series Instance UID is missing.
    """
    fh: BinaryIO
    opened = None
    if isinstance(source, (bytes, bytearray, memoryview)):
        fh = io.BytesIO(bytes(source))
        where = f"{len(source)} bytes"
    else:
        path = Path(source)
        where = str(path)
        try:
            opened = fh = open(path, "rb")
        except OSError as exc:
            raise UnreadableDataset(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        if has_file_meta:
            try:
                ds = read_partial(fh, stop_when=_stop_after_keys, specific_tags=_SPECIFIC_TAGS)
            except UnreadableDataset:
                raise
            except Exception as exc:
                raise UnreadableDataset(f"{where}: not a readable DICOM Part-10 file: {exc}") from exc
            meta_syntax = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta else None
            syntax = str(meta_syntax) if meta_syntax else transfer_syntax_uid
        else:
            if not transfer_syntax_uid:
                raise UnreadableDataset("a raw dataset needs its transfer syntax UID")
            implicit, little = _syntax_flags(transfer_syntax_uid)
            try:
                ds = read_dataset(fh, implicit, little, stop_when=_stop_after_keys,
                                  specific_tags=_SPECIFIC_TAGS)
            except Exception as exc:
                raise UnreadableDataset(
                    f"{where}: cannot parse the dataset as {UID(transfer_syntax_uid).name}: {exc}") from exc
            syntax = transfer_syntax_uid
        try:
            return _from_dataset(ds, syntax)
        except UnreadableDataset as exc:
            raise UnreadableDataset(f"{where}: {exc}") from None
        except Exception as exc:  # a value pydicom cannot convert
            raise UnreadableDataset(f"{where}: cannot decode the header: {exc}") from exc
    finally:
        if opened is not None:
            opened.close()


@dataclass(frozen=True, slots=True)
class Scan:
    """One read of a received dataset: the index attributes, whether it has
    top-level Pixel Data (7FE0,0010) and the SHA-256 of all its bytes.

    ``pixel_data_error`` says why the elements after the keys (groups above
    0054) could not be walked to the pixel data; the attributes are complete
    then, but ``has_pixel_data`` is False and cannot be trusted.
    """

    attrs: InstanceAttrs
    has_pixel_data: bool
    sha256: str
    pixel_data_error: str | None = None


# The Rust scan's syntax names by (implicit VR, little endian).
_RUST_SYNTAX = {(True, True): "implicit", (False, True): "explicit-le", (False, False): "explicit-be"}


def scan_instance(source: bytes | bytearray | memoryview | os.PathLike | str,
                  transfer_syntax_uid: str) -> Scan:
    """:func:`extract_attributes`, pixel data presence and SHA-256 in one pass
    over a raw dataset (no File Meta) in ``transfer_syntax_uid``: bytes, or a
    path to a spooled dataset read in chunks (never whole into memory).

    The attributes are exactly those :func:`extract_attributes` gives (same
    conversion, :func:`_from_raw`). Raises :class:`UnreadableDataset` when the
    dataset is malformed or truncated before the end of the keys (group 0054),
    cannot be read, or lacks one of the four UIDs.
    """
    from gateway import _rust

    if not transfer_syntax_uid:
        raise UnreadableDataset("a raw dataset needs its transfer syntax UID")
    implicit, little = _syntax_flags(transfer_syntax_uid)
    if isinstance(source, (bytes, bytearray, memoryview)):
        where = f"{len(source)} bytes" if not isinstance(source, memoryview) else f"{source.nbytes} bytes"
        src: Any = source
    else:
        where = str(source)
        src = os.fspath(source)
    try:
        found, oversized, has_pixel_data, sha256, tail_error = _rust.scan_header(
            src, _RUST_SYNTAX[implicit, little], _SCAN_TAGS, max_value=_MAX_VALUE)
    except _rust.ScanError as exc:
        raise UnreadableDataset(
            f"{where}: cannot parse the dataset as {UID(transfer_syntax_uid).name}: {exc}") from None
    raw = {tag: RawDataElement(BaseTag(tag), None if implicit else vr, len(value), value, 0, implicit, little)
           for tag, (vr, value) in found.items()}
    try:
        attrs = _from_raw(raw, transfer_syntax_uid, frozenset(oversized))
    except UnreadableDataset as exc:
        raise UnreadableDataset(f"{where}: {exc}") from None
    except Exception as exc:  # a value pydicom cannot convert
        raise UnreadableDataset(f"{where}: cannot decode the header: {exc}") from exc
    return Scan(attrs, has_pixel_data, sha256, tail_error)
