"""A flat response Identifier that encodes itself without pydicom (issue 12).

A C-FIND SCP sends one Identifier per match: a handful of text elements. As a
pydicom ``Dataset`` each costs ~0.3 ms to build and encode (element objects,
value validation, charset lookup, a ``DicomBytesIO``): 300 matches were 60% of a
300-match query's time in the worker (bench/RESULTS.md). A service yields a
:class:`FlatIdentifier` instead; :mod:`gateway.net.streams` asks it for its bytes
in the presentation context's transfer syntax, and falls back to pydicom
(:meth:`FlatIdentifier.to_dataset`) for anything it does not encode itself:
a VR outside the plain text / integer ones, a deflated syntax, a value the
character set cannot carry. The bytes equal pydicom's for the same Dataset
(tests/test_identifier.py): elements in tag order, text padded to even length
with a space (UI with NUL), values joined with backslashes, lengths of 2 bytes
in explicit VR except UC/UR/UT (PS3.5 7.1.2).
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.valuerep import DSfloat

_TEXT = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI",
                   "UR", "UT"})
_LONG_TEXT = frozenset({"UC", "UR", "UT"})  # 4-byte length in explicit VR (PS3.5 Table 7.1-1)
_BINARY = {"US": "H", "SS": "h", "UL": "I", "SL": "i"}
#: Python codecs for the character sets whose bytes are those of one codec (PS3.3 C.12.1.1.2).
_CODECS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf-8"}


@lru_cache(maxsize=512)
def _element_of(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise ValueError(f"not a DICOM keyword: {keyword}")
    return int(tag), dictionary_VR(tag)


class FlatIdentifier:
    """Elements by keyword, each a str, an int, a float (DS), a list of those, or
    None (zero length). No sequences: a service that needs one yields a Dataset."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def __setitem__(self, keyword: str, value: Any) -> None:
        _element_of(keyword)  # an unknown keyword is the service's bug: say so where it is made
        self._values[keyword] = value

    def __getitem__(self, keyword: str) -> Any:
        return self._values[keyword]

    def __contains__(self, keyword: str) -> bool:
        return keyword in self._values

    def to_dataset(self) -> Dataset:
        ds = Dataset()
        for keyword, value in self._values.items():
            setattr(ds, keyword, value)
        return ds

    def encode(self, implicit_vr: bool, little_endian: bool) -> bytes | None:
        """The encoded Identifier, or None where pydicom must do it (see the module)."""
        charset = self._values.get("SpecificCharacterSet")
        codec = _CODECS.get(charset if isinstance(charset, str) else "" if charset is None else "?")
        order = "<" if little_endian else ">"
        out = []
        for tag, vr, value in sorted((*_element_of(k), v) for k, v in self._values.items()):
            raw = _value_bytes(vr, value, codec, order)
            if raw is None:
                return None
            if implicit_vr:
                out.append(struct.pack(order + "HHI", tag >> 16, tag & 0xFFFF, len(raw)))
            elif vr in _LONG_TEXT:
                out.append(struct.pack(order + "HH2s2xI", tag >> 16, tag & 0xFFFF, vr.encode(), len(raw)))
            else:
                if len(raw) > 0xFFFF:
                    return None
                out.append(struct.pack(order + "HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(raw)))
            out.append(raw)
        return b"".join(out)


def _value_bytes(vr: str, value: Any, codec: str | None, order: str) -> bytes | None:
    if value is None or value == "" or value == []:
        return b""
    values = value if isinstance(value, (list, tuple)) else (value,)
    if vr in _TEXT:
        texts = []
        for v in values:
            if isinstance(v, float) and vr == "DS":
                v = str(DSfloat(v))
            elif isinstance(v, int) and not isinstance(v, bool) and vr in ("IS", "DS"):
                v = str(v)
            elif not isinstance(v, str):
                return None
            texts.append(v)
        text = "\\".join(texts)
        if codec is None:  # a character set of escape sequences: pydicom's business
            if not text.isascii():
                return None
            codec = "ascii"
        try:
            raw = text.encode(codec)
        except UnicodeEncodeError:
            return None
        if len(raw) % 2:
            raw += b"\x00" if vr == "UI" else b" "
        return raw
    fmt = _BINARY.get(vr)
    if fmt is None or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    try:
        return struct.pack(order + fmt * len(values), *values)
    except struct.error:
        return None
