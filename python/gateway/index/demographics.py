"""Latest patient demographics (QRS-7): correct them in the index, and carry them on
every object that leaves.

Seed 000 (4.2.5): "Exported SOP Instances are always updated with the latest values in
the database prior to export. Thus, a change in Patient demographic information will be
contained in both the C-FIND Responses and any Composite SOP Instances exported to a
C-MOVE Destination AE."

The correction is written into the patient row itself (decision 0010): C-FIND matches and
answers the corrected values with the SQL it already has (the indexed search form of the
name included), and ``corrected_at`` marks the row, so that

* objects received later no longer change these demographics (the ingest upsert skips a
  corrected row, :func:`gateway.index.store._upsert_statement`), and
* every object of the patient that leaves — C-MOVE and C-GET sub-operations, forwarding —
  is sent with them (:func:`apply_demographics` on a copy; the archived file is never
  touched). An object of a patient never corrected leaves as stored, byte for byte.

Usage::

    from gateway.index import Index
    from gateway.index.demographics import update_patient

    change = update_patient(Index(url), "PID1", name="DOE^JANE", sex="F", actor="ris")
    change.before, change.after      # {'PatientName': 'DOE^JOHN', ...}, {'PatientName': 'DOE^JANE', ...}
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
from dataclasses import dataclass
from typing import Any, Iterable

import sqlalchemy as sa

from gateway.index import schema as S

__all__ = ["DEMOGRAPHICS", "PatientUpdate", "update_patient", "demographic_columns", "demographics_of",
           "apply_demographics"]

audit = logging.getLogger("gateway.audit")

#: DICOM keyword → patients column: what a correction sets and what leaving objects carry.
DEMOGRAPHICS: dict[str, str] = {
    "PatientName": "patient_name",
    "IssuerOfPatientID": "issuer_of_patient_id",
    "PatientBirthDate": "birth_date",
    "PatientBirthTime": "birth_time",
    "PatientSex": "sex",
    "OtherPatientIDs": "other_patient_ids",
}

_LABEL = "demo_"


def demographic_columns() -> list[Any]:
    """The patient columns :func:`demographics_of` reads, labelled so they never clash
    with a select's other columns (join ``patients`` in the select)."""
    p = S.patients
    return [p.c.corrected_at.label(_LABEL + "corrected_at")] + [
        p.c[column].label(_LABEL + column) for column in DEMOGRAPHICS.values()]


def demographics_of(row: Any) -> tuple[tuple[str, str], ...] | None:
    """(keyword, value) pairs a leaving copy of this row's instance must carry, or None
    when the patient's demographics were never corrected (the object goes as stored).
    A value the index does not hold (NULL) is left as the object has it."""
    if getattr(row, _LABEL + "corrected_at", None) is None:
        return None
    out = tuple((kw, value) for kw, column in DEMOGRAPHICS.items()
                if (value := getattr(row, _LABEL + column)) is not None)
    return out or None


# ---- the correction --------------------------------------------------------------------

@dataclass(frozen=True)
class PatientUpdate:
    patient_id: str
    before: dict[str, str | None]
    after: dict[str, str | None]
    corrected_at: _dt.datetime
    corrected_by: str

    @property
    def changed(self) -> dict[str, tuple[str | None, str | None]]:
        return {k: (self.before[k], self.after[k]) for k in self.after if self.before[k] != self.after[k]}


_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


def _lo(what: str, value: str) -> str:
    value = value.strip()
    if len(value) > 64:
        raise ValueError(f"{what} {value!r} is longer than 64 characters (LO)")
    if "\\" in value or any(ord(c) < 0x20 for c in value):
        raise ValueError(f"{what} {value!r} holds a backslash or a control character")
    return value


def _pn(value: str) -> str:
    value = value.strip()
    groups = value.split("=")
    if len(groups) > 3:
        raise ValueError(f"name {value!r} has more than 3 component groups (PN)")
    for group in groups:
        if len(group.split("^")) > 5:
            raise ValueError(f"name {value!r} has more than 5 components in a group (PN)")
        if len(group) > 64:
            raise ValueError(f"name {value!r}: a component group is longer than 64 characters (PN)")
    if "\\" in value or any(ord(c) < 0x20 for c in value):
        raise ValueError(f"name {value!r} holds a backslash or a control character")
    return value


def _date(value: str) -> str:
    value = value.strip()
    if value and not _DA.match(value):
        raise ValueError(f"birth date {value!r} is not YYYYMMDD")
    if value:
        try:
            _dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            raise ValueError(f"birth date {value!r} is not a date") from None
    return value


def _time(value: str) -> str:
    value = value.strip().replace(":", "")
    if value and not _TM.match(value):
        raise ValueError(f"birth time {value!r} is not HHMMSS[.FFFFFF]")
    return value


def _sex(value: str) -> str:
    value = value.strip().upper()
    if value not in ("", "M", "F", "O"):
        raise ValueError(f"sex {value!r} is not M, F or O (PS3.3 C.7.1.1)")
    return value


def _validated(name: str | None, issuer: str | None, birth_date: str | None, birth_time: str | None,
               sex: str | None, other_ids: Iterable[str] | None) -> dict[str, str]:
    """keyword → new value for what was given; '' clears a value."""
    out: dict[str, str] = {}
    if name is not None:
        out["PatientName"] = _pn(name)
    if issuer is not None:
        out["IssuerOfPatientID"] = _lo("issuer", issuer)
    if birth_date is not None:
        out["PatientBirthDate"] = _date(birth_date)
    if birth_time is not None:
        out["PatientBirthTime"] = _time(birth_time)
    if sex is not None:
        out["PatientSex"] = _sex(sex)
    if other_ids is not None:
        ids = [_lo("other patient ID", v) for v in other_ids]
        out["OtherPatientIDs"] = "\\".join(v for v in ids if v)
    if not out:
        raise ValueError("nothing to change: give a name, issuer, birth date, birth time, sex or other IDs")
    return out


def update_patient(index: Any, patient_id: str, *, name: str | None = None, issuer: str | None = None,
                   birth_date: str | None = None, birth_time: str | None = None, sex: str | None = None,
                   other_ids: Iterable[str] | None = None, actor: str = "api") -> PatientUpdate:
    """Correct the demographics of the patient ``patient_id`` in ``index`` (an
    :class:`gateway.index.Index`). Only what is given changes ('' or an empty ``other_ids``
    clears a value); from now on objects received for this patient no longer change
    them, and every object of the patient that leaves carries them. An audit line goes
    to the ``gateway.audit`` log. LookupError: no such patient; ValueError: a value is
    not valid for its VR; IndexUnavailable as for any write."""
    from gateway.index.attrs import normalize_pn

    values = _validated(name, issuer, birth_date, birth_time, sex, other_ids)
    p = S.patients
    now = _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)
    columns = [p.c[c] for c in DEMOGRAPHICS.values()]
    with index.transaction() as tx:
        row = tx.conn.execute(sa.select(p.c.id, p.c.specific_character_set, *columns)
                              .where(p.c.patient_id == patient_id)).first()
        if row is None:
            raise LookupError(f"no patient with Patient ID {patient_id!r} in the index")
        before = {kw: getattr(row, col) for kw, col in DEMOGRAPHICS.items()}
        after = dict(before)
        after.update(values)
        update: dict[str, Any] = {DEMOGRAPHICS[kw]: v for kw, v in values.items()}
        if "PatientName" in values:
            update["patient_name_search"] = normalize_pn(values["PatientName"])
        if not all(v.isascii() for v in values.values()) and row.specific_character_set not in ("ISO_IR 192",):
            update["specific_character_set"] = "ISO_IR 192"
        tx.conn.execute(sa.update(p).where(p.c.id == row.id).values(
            corrected_at=now, corrected_by=actor, updated_at=now, **update))
    change = PatientUpdate(patient_id, before, after, now.replace(tzinfo=_dt.timezone.utc), actor)
    audit.info("patient demographics corrected: Patient ID %s by %s: %s", patient_id, actor,
               ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in change.changed.items()) or "no change",
               extra={"event": "patient_update", "patient_id": patient_id, "actor": actor,
                      "changes": {k: [old, new] for k, (old, new) in change.changed.items()}})
    return change


# ---- on the way out ---------------------------------------------------------------------

def _terms(ds: Any) -> list[str]:
    value = ds.get("SpecificCharacterSet")
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _encodable(value: str, terms: list[str]) -> bool:
    if value.isascii():
        return True
    if "ISO_IR 192" in terms:
        return True
    if len(terms) != 1:
        return False  # ISO 2022 code extensions: not worth the risk, use UTF-8
    from pydicom.charset import python_encoding

    encoding = python_encoding.get(terms[0])
    if encoding is None:
        return False
    try:
        value.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def apply_demographics(ds: Any, demographics: Iterable[tuple[str, str]]) -> bool:
    """Put the corrected demographics into ``ds`` (a pydicom Dataset read from a stored
    file); True when anything changed. A value the object's Specific Character Set
    cannot carry switches the whole object to ISO_IR 192 (every text value decoded
    first, so nothing else changes meaning)."""
    wanted = dict(demographics)
    changed = {kw: v for kw, v in wanted.items() if _current(ds, kw) != v}
    if not changed:
        return False
    terms = _terms(ds)
    if not all(_encodable(v, terms) for v in changed.values()):
        ds.decode()
        ds.SpecificCharacterSet = "ISO_IR 192"
    for kw, value in changed.items():
        if value == "":
            setattr(ds, kw, None)  # present, zero length (the value was cleared)
        else:
            setattr(ds, kw, value)
    return True


def _current(ds: Any, keyword: str) -> str | None:
    if keyword not in ds:
        return None
    value = ds[keyword].value
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)
