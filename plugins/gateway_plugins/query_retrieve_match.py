"""C-FIND matching as one indexed SQL query over the index (QRS-2, QRS-3).

Never a Python scan over rows: every matching type is an SQL predicate (single
value, ``*``/``?`` wildcards, universal, date/time ranges and the combined
date+time range of PS3.4 C.2.2.2.5.1, UID lists), computed attributes are
correlated sub-selects, and the rows stream from the cursor.

Case: PN matches the index's upper-case search form (normalize_pn), so names
match ignoring case and component boundaries (seed 003 t4-2); every other
string matches case-sensitively (PS3.4 C.2.2.2.1/C.2.2.2.4), which on SQLite is
GLOB (LIKE ignores ASCII case there) — GLOB with a literal prefix also uses the
column's index.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from gateway.index import schema as S
from gateway.index.attrs import normalize_pn
from gateway.index.store import wildcard_to_like

from gateway_plugins.query_retrieve_keys import DISPLAY, KEYS, LEVELS, Key, key_level

p, st, se, i = S.patients, S.studies, S.series, S.instances


class InvalidIdentifier(ValueError):
    """The Identifier does not match the SOP class (A900, QRS-4)."""


@dataclass
class Plan:
    select: sa.Select
    #: keyword → label in the select (values to return)
    returned: dict[str, str] = field(default_factory=dict)
    #: requested keys the index does not hold (answered empty)
    unsupported: list[str] = field(default_factory=list)
    #: an unsupported key carried a matching value: FF01 (QRS-4)
    warning: bool = False


def _wild(value: str) -> bool:
    return "*" in value or "?" in value


def _glob_escape(value: str) -> str:
    # '*' and '?' mean the same in GLOB; '[' is GLOB's only other special character.
    return value.replace("[", "[[]")


def _string_match(column: Any, value: str, dialect: str) -> Any:
    if value.strip("*") == "":  # '*' alone is universal matching (PS3.4 C.2.2.2.3)
        return sa.true()
    if _wild(value):
        if dialect == "sqlite":
            return column.op("GLOB")(_glob_escape(value))
        return column.like(wildcard_to_like(value), escape="\\")
    return column == value


def _range(column: Any, value: str, pad: str) -> Any:
    lo, _, hi = value.partition("-")
    cond = sa.true()
    if lo.strip():
        cond = sa.and_(cond, column >= lo.strip())
    if hi.strip():
        # '1200' is the whole of 12:00 (and '2024' the whole year): pad the upper bound
        cond = sa.and_(cond, column <= hi.strip() + pad)
    return cond


_TOP = "\U0010ffff"  # sorts after every character a DA/TM/DT value holds


def _date_or_time(column: Any, value: str, kind: str) -> Any:
    value = value.replace(":", "") if kind == "time" else value.replace(".", "")  # ACR-NEMA forms
    if "-" in value:
        return _range(column, value, _TOP if kind == "time" else "")
    if kind == "time":  # a single time matches that time at its precision
        return sa.or_(column == value, column.like(wildcard_to_like(value) + "%"))
    return column == value


def _predicate(key: Key, value: str, dialect: str, at_query_level: bool) -> Any:
    col = key.column
    if key.kind == "uid":
        uids = [u.strip() for u in value.split("\\") if u.strip()]
        if len(uids) > 1 and not at_query_level:
            # A list of UIDs only at the query level (PS3.4 C.4.1.2.1, QRS-4: A900)
            raise InvalidIdentifier(f"UID list in {key.keyword} above the query level")
        return col.in_(uids) if len(uids) > 1 else col == uids[0]
    if key.kind == "pn":
        # the search form is upper case, and so is the normalized value (QRS-3)
        return _string_match(col, normalize_pn(value) or "", dialect)
    if key.kind in ("date", "time"):
        return _date_or_time(col, value, key.kind)
    if key.kind in ("int", "float"):
        try:
            number = int(value) if key.kind == "int" else float(value)
        except ValueError:
            raise InvalidIdentifier(f"{key.keyword} {value!r} is not a number") from None
        return col == number
    return _string_match(col, value, dialect)


# Built once: an alias proxies every column of its table, and making the aliases
# and sub-selects anew for each C-FIND was most of a study query's time in the
# server (issue 12). Core constructs are immutable, so one object serves every query.
_se2, _i2, _st2, _mis = se.alias(), i.alias(), st.alias(), se.alias("mis")


@functools.lru_cache(maxsize=None)
def _computed(keyword: str, dialect: str) -> Any:
    se2, i2, st2 = _se2, _i2, _st2
    count = sa.func.count()
    if keyword == "NumberOfStudyRelatedSeries":
        return sa.select(count).where(se2.c.study_fk == st.c.id).scalar_subquery()
    if keyword == "NumberOfStudyRelatedInstances":
        return (sa.select(count).select_from(i2.join(se2, i2.c.series_fk == se2.c.id))
                .where(se2.c.study_fk == st.c.id).scalar_subquery())
    if keyword == "NumberOfSeriesRelatedInstances":
        return sa.select(count).where(i2.c.series_fk == se.c.id).scalar_subquery()
    if keyword == "NumberOfPatientRelatedStudies":
        return sa.select(count).where(st2.c.patient_fk == p.c.id).scalar_subquery()
    if keyword == "NumberOfPatientRelatedSeries":
        return (sa.select(count).select_from(se2.join(st2, se2.c.study_fk == st2.c.id))
                .where(st2.c.patient_fk == p.c.id).scalar_subquery())
    if keyword == "NumberOfPatientRelatedInstances":
        return (sa.select(count).select_from(i2.join(se2, i2.c.series_fk == se2.c.id)
                                             .join(st2, se2.c.study_fk == st2.c.id))
                .where(st2.c.patient_fk == p.c.id).scalar_subquery())
    if keyword == "ModalitiesInStudy":
        # correlated aggregate (a derived table could not see the outer study row)
        if dialect == "postgresql":
            agg = sa.func.string_agg(sa.distinct(se2.c.modality), sa.literal("\\"))
        else:  # SQLite's group_concat(DISTINCT x) takes no separator; CS values hold no ','
            agg = sa.func.replace(sa.func.group_concat(sa.distinct(se2.c.modality)), ",", "\\")
        return sa.select(agg).where(se2.c.study_fk == st.c.id).scalar_subquery()
    raise KeyError(keyword)


_JOINS = {
    "STUDY": (st, st.c.patient_fk == p.c.id),
    "SERIES": (se, se.c.study_fk == st.c.id),
    "IMAGE": (i, i.c.series_fk == se.c.id),
}
_PK = {"PATIENT": p.c.id, "STUDY": st.c.id, "SERIES": se.c.id, "IMAGE": i.c.id}


def _combined_datetime(level_keys: dict[str, str]) -> Any | None:
    """StudyDate and StudyTime both ranges: one date+time range (PS3.4 C.2.2.2.5.1)."""
    d, t = level_keys.get("StudyDate", ""), level_keys.get("StudyTime", "")
    if "-" not in d or "-" not in t:
        return None
    dlo, _, dhi = d.partition("-")
    tlo, _, thi = t.replace(":", "").partition("-")
    stamp = st.c.study_date + sa.func.coalesce(st.c.study_time, "")
    cond = sa.true()
    if dlo.strip():
        cond = sa.and_(cond, stamp >= dlo.strip() + (tlo.strip() if tlo.strip() else ""))
    if dhi.strip():
        cond = sa.and_(cond, stamp <= dhi.strip() + (thi.strip() if thi.strip() else "") + _TOP)
    return cond


def plan(model: str, level: str, keys: dict[str, str], dialect: str) -> Plan:
    """The select answering a C-FIND at ``level`` of ``model`` for the Identifier's
    ``keys`` (keyword → value, '' = return only)."""
    depth = LEVELS.index(level)
    frm: Any = p
    for lvl in LEVELS[1:depth + 1]:
        table, on = _JOINS[lvl]
        frm = frm.join(table, on)
    out = Plan(sa.select())
    columns: list[Any] = [_PK[level].label("pk")]
    conds: list[Any] = []
    combined = _combined_datetime(keys) if LEVELS.index("STUDY") <= depth else None
    if combined is not None:
        conds.append(combined)
    for keyword, value in keys.items():
        key = KEYS.get(keyword)
        if key is None:
            out.unsupported.append(keyword)
            out.warning = out.warning or bool(value)
            continue
        klevel = LEVELS.index(key_level(key, model))
        if klevel > depth:
            continue  # keys below the query level: neither matched nor returned (hierarchical)
        label = "k_" + keyword
        if key.kind == "computed":
            if keyword == "ModalitiesInStudy" and value:
                mods = [m for m in value.split("\\") if m]
                mis = _mis
                conds.append(sa.exists().where(mis.c.study_fk == st.c.id, mis.c.modality.in_(mods)))
            columns.append(_computed(keyword, dialect).label(label))
        else:
            columns.append(DISPLAY.get(keyword, key.column).label(label))
            if value and not (combined is not None and keyword in ("StudyDate", "StudyTime")):
                conds.append(_predicate(key, value, dialect, at_query_level=klevel == depth))
        out.returned[keyword] = label
    out.select = sa.select(*columns).select_from(frm).where(*conds).order_by(_PK[level])
    return out
