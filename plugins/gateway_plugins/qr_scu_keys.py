"""Query keys for the Query/Retrieve SCU (QRU-1..QRU-3): DCMTK ``findscu -k``
vocabulary, the level each attribute of the Q/R information model belongs to,
the default return keys per level, and the character set a query is sent in.

``-k`` accepts what findscu accepts::

    PatientName=Doe*            a keyword and a value (wildcards, ranges as the SCP matches them)
    0010,0020=ANC0000001        a tag as gggg,eeee (or (gggg,eeee))
    StudyDate                   no value: a return key (universal match)
    ReferencedStudySequence[0].ReferencedSOPClassUID=1.2.3   an item of a sequence

Nothing here imports pynetdicom; pydicom only for the data dictionary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

__all__ = ["KeyError_", "QueryKey", "parse_key", "parse_keys", "build_identifier", "split_by_level",
           "LEVELS", "UNIQUE_KEYS", "DEFAULT_RETURN_KEYS", "choose_charset", "key_level"]

#: Query/Retrieve levels, top to bottom, per model (PS3.4 C.6.1, C.6.2).
LEVELS = {"patient": ("PATIENT", "STUDY", "SERIES", "IMAGE"), "study": ("STUDY", "SERIES", "IMAGE")}
#: The unique key of each level (PS3.4 C.6.1.1, C.6.2.1).
UNIQUE_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
               "IMAGE": "SOPInstanceUID"}

#: The attributes of each level (PS3.4 tables C.6-1..C.6-4, C.6-5..C.6-8), for putting
#: each of an operator's keys into the query of its own level in a recursive walk.
_PATIENT_KEYS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientBirthTime",
                 "PatientSex", "OtherPatientIDs", "OtherPatientNames", "EthnicGroup", "PatientComments",
                 "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                 "NumberOfPatientRelatedInstances")
_STUDY_KEYS = ("StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyInstanceUID",
               "ReferringPhysicianName", "StudyDescription", "ModalitiesInStudy", "SOPClassesInStudy",
               "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "AdmittingDiagnosesDescription",
               "PatientAge", "PatientSize", "PatientWeight", "Occupation", "AdditionalPatientHistory",
               "OtherStudyNumbers", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
               "InstitutionName", "BodyPartExamined")
_SERIES_KEYS = ("Modality", "SeriesNumber", "SeriesInstanceUID", "SeriesDescription", "SeriesDate", "SeriesTime",
                "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime", "RequestAttributesSequence",
                "NumberOfSeriesRelatedInstances", "ProtocolName", "Laterality", "StationName")
_IMAGE_KEYS = ("InstanceNumber", "SOPInstanceUID", "SOPClassUID", "ContentDate", "ContentTime",
               "AcquisitionDate", "AcquisitionTime", "ImageType", "NumberOfFrames", "Rows", "Columns",
               "AlternateRepresentationSequence", "ConceptNameCodeSequence", "ContentTemplateSequence")
_LEVEL_OF = {**{k: "PATIENT" for k in _PATIENT_KEYS}, **{k: "STUDY" for k in _STUDY_KEYS},
             **{k: "SERIES" for k in _SERIES_KEYS}, **{k: "IMAGE" for k in _IMAGE_KEYS}}

#: What a query asks for when the operator names no return keys: what the tree
#: and the tables show. Extra keys the SCP does not support are simply not
#: answered (PS3.4 C.4.1.1.3.2 lets it leave optional keys out).
DEFAULT_RETURN_KEYS = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies"),
    "STUDY": ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyTime", "AccessionNumber",
              "StudyID", "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances"),
    "SERIES": ("Modality", "SeriesNumber", "SeriesDescription", "NumberOfSeriesRelatedInstances"),
    "IMAGE": ("InstanceNumber", "SOPClassUID"),
}


class KeyError_(ValueError):
    """A ``-k`` key that cannot be used; the message says why (exit status 2)."""


@dataclass(frozen=True)
class QueryKey:
    """One ``-k``: a path of (tag, item index) from the top-level data set down, and its value
    (None: a return key, sent empty)."""

    path: tuple[tuple[int, int | None], ...]
    value: str | None
    text: str

    @property
    def tag(self) -> int:
        return self.path[0][0]

    @property
    def keyword(self) -> str:
        from pydicom.datadict import keyword_for_tag

        return keyword_for_tag(self.tag) or f"{self.tag >> 16:04X},{self.tag & 0xFFFF:04X}"


_TAG = re.compile(r"^\(?([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)?$")
_PART = re.compile(r"^(?P<name>[^\[\]]+)(?:\[(?P<index>\d+)\])?$")


def _tag(name: str, text: str) -> int:
    from pydicom.datadict import tag_for_keyword

    m = _TAG.match(name.strip())
    if m:
        return (int(m[1], 16) << 16) | int(m[2], 16)
    tag = tag_for_keyword(name.strip())
    if tag is None:
        raise KeyError_(f"-k {text!r}: {name.strip()!r} is neither a DICOM keyword nor a tag gggg,eeee")
    return int(tag)


def parse_key(text: str) -> QueryKey:
    """One ``-k`` argument (findscu vocabulary) → a :class:`QueryKey`."""
    from pydicom.datadict import dictionary_VR

    path_text, sep, value = text.partition("=")
    if not path_text.strip():
        raise KeyError_(f"-k {text!r}: no attribute before '='")
    parts = path_text.split(".")  # a tag has a comma, never a dot
    path: list[tuple[int, int | None]] = []
    for n, part in enumerate(parts):
        m = _PART.match(part.strip())
        if not m:
            raise KeyError_(f"-k {text!r}: cannot read {part!r} (use Keyword, gggg,eeee or Sequence[n].Keyword)")
        tag = _tag(m["name"], text)
        index = int(m["index"]) if m["index"] is not None else None
        if n < len(parts) - 1:  # an enclosing sequence: its first item unless [n] says otherwise
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                vr = ""
            if vr != "SQ":
                raise KeyError_(f"-k {text!r}: {m['name'].strip()} is not a sequence, it has no items")
            index = index or 0
        path.append((tag, index))
    return QueryKey(tuple(path), value if sep else None, text)


def parse_keys(texts: Iterable[str]) -> list[QueryKey]:
    return [parse_key(t) for t in texts]


def key_level(key: QueryKey, model: str = "study") -> str | None:
    """The Q/R level an attribute belongs to (None: not a key of the information model we know)."""
    if key.tag == 0x00080052:
        return None
    level = _LEVEL_OF.get(key.keyword)
    if level == "PATIENT" and model == "study":
        return "STUDY"  # Study Root: patient attributes are study-level keys (PS3.4 C.6.2.1)
    return level


def split_by_level(keys: Sequence[QueryKey], level: str, model: str = "study") -> dict[str, list[QueryKey]]:
    """For a recursive walk (QRU-2) from ``level`` down: each key goes to the query of its
    own level; keys of upper levels and unknown keys stay with the top query."""
    levels = LEVELS[model]
    below = levels[levels.index(level):]
    out: dict[str, list[QueryKey]] = {lv: [] for lv in below}
    for key in keys:
        lv = key_level(key, model)
        out[lv if lv in below else level].append(key)
    return out


def _set(ds: Any, path: Sequence[tuple[int, int | None]], value: str | None, text: str) -> None:
    from pydicom.datadict import dictionary_VR
    from pydicom.dataset import Dataset

    tag, index = path[0]
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        raise KeyError_(f"-k {text!r}: {tag >> 16:04X},{tag & 0xFFFF:04X} is not in the data dictionary "
                        "(its VR is unknown)") from None
    if len(path) == 1:
        if vr == "SQ":
            if value:
                raise KeyError_(f"-k {text!r}: a sequence takes no value (name one of its items' attributes)")
            ds.add_new(tag, vr, [])
            return
        ds.add_new(tag, vr, value or None)
        return
    if tag not in ds or not ds[tag].value:
        ds.add_new(tag, "SQ", [])
    items = ds[tag].value
    while len(items) <= (index or 0):
        items.append(Dataset())
    _set(items[index or 0], path[1:], value, text)


def choose_charset(values: Iterable[str | None], wanted: str | None = None) -> str:
    """QRU-3: the Specific Character Set a query is sent in (at every level): ``wanted``
    when given; ISO_IR 192 (UTF-8) when any value has a non-ASCII character; else
    ISO_IR 100 (Latin-1, a superset of the default repertoire, the one both seeds know)."""
    if wanted:
        return wanted
    if any(v and any(ord(c) > 0x7E for c in v) for v in values):
        return "ISO_IR 192"
    return "ISO_IR 100"


def build_identifier(level: str, keys: Sequence[QueryKey], *, upper: dict[str, str] | None = None,
                     charset: str = "ISO_IR 100", defaults: bool = True, model: str = "study") -> Any:
    """The C-FIND identifier for ``level``: Specific Character Set, Query/Retrieve Level,
    the unique keys of the levels above from ``upper`` (keyword → UID), the operator's
    keys, the unique key of ``level`` and (``defaults``) the default return keys."""
    from pydicom.dataset import Dataset

    level = level.upper()
    if level not in LEVELS[model]:
        raise KeyError_(f"level {level} does not exist in the {model} root model (levels: "
                        f"{', '.join(LEVELS[model])})")
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = level
    for keyword, uid in (upper or {}).items():
        setattr(ds, keyword, uid)
    if defaults:
        for keyword in DEFAULT_RETURN_KEYS[level]:
            if keyword not in ds:
                _set(ds, [(_tag(keyword, keyword), None)], None, keyword)
    for key in keys:
        if key.tag == 0x00080052:
            raise KeyError_(f"-k {key.text!r}: give the level with --level, not as a key")
        if key.tag == 0x00080005:
            ds.SpecificCharacterSet = key.value or charset
            continue
        _set(ds, key.path, key.value, key.text)
    unique = UNIQUE_KEYS[level]
    if unique not in ds:
        setattr(ds, unique, None)
    return ds
