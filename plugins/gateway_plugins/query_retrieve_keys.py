"""Query/Retrieve keys: which index column holds each key, at which level (QRS-1, QRS-3).

The keys are those of seed 000 tables 4-38..4-40 and seed 003 4.4/5.4 the index
holds (python/gateway/index/schema.py). A key the index does not hold is
answered empty, and a request that tried to match on one gets FF01 (QRS-4,
PS3.4 C.4.1.1.4: "optional keys not supported").
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.index import schema as S

# The models and levels live in query_retrieve_models (no SQLAlchemy); re-exported here.
from gateway_plugins.query_retrieve_models import (FIND_MODELS, GET_MODELS, LEVELS, MODEL_LEVELS,  # noqa: F401
                                                   MOVE_MODELS, PATIENT_ROOT, PATIENT_STUDY_ONLY, STUDY_ROOT)


@dataclass(frozen=True)
class Key:
    keyword: str
    level: str  # the level the attribute belongs to
    column: object | None  # an index column; None: computed
    kind: str  # str | pn | date | time | uid | int | float | computed
    unique: bool = False


def _k(keyword, level, column, kind, unique=False):
    return keyword, Key(keyword, level, column, kind, unique)


p, st, se, i = S.patients, S.studies, S.series, S.instances

KEYS: dict[str, Key] = dict([
    _k("PatientID", "PATIENT", p.c.patient_id, "str", unique=True),
    _k("PatientName", "PATIENT", p.c.patient_name_search, "pn"),
    _k("IssuerOfPatientID", "PATIENT", p.c.issuer_of_patient_id, "str"),
    _k("PatientBirthDate", "PATIENT", p.c.birth_date, "date"),
    _k("PatientBirthTime", "PATIENT", p.c.birth_time, "time"),
    _k("PatientSex", "PATIENT", p.c.sex, "str"),
    _k("OtherPatientIDs", "PATIENT", p.c.other_patient_ids, "str"),
    _k("NumberOfPatientRelatedStudies", "PATIENT", None, "computed"),
    _k("NumberOfPatientRelatedSeries", "PATIENT", None, "computed"),
    _k("NumberOfPatientRelatedInstances", "PATIENT", None, "computed"),
    _k("StudyInstanceUID", "STUDY", st.c.study_instance_uid, "uid", unique=True),
    _k("StudyDate", "STUDY", st.c.study_date, "date"),
    _k("StudyTime", "STUDY", st.c.study_time, "time"),
    _k("AccessionNumber", "STUDY", st.c.accession_number, "str"),
    _k("StudyID", "STUDY", st.c.study_id, "str"),
    _k("StudyDescription", "STUDY", st.c.study_description, "str"),
    _k("ReferringPhysicianName", "STUDY", st.c.referring_physician_name_search, "pn"),
    _k("PatientAge", "STUDY", st.c.patient_age, "str"),
    _k("PatientSize", "STUDY", st.c.patient_size, "float"),
    _k("PatientWeight", "STUDY", st.c.patient_weight, "float"),
    _k("ModalitiesInStudy", "STUDY", None, "computed"),
    _k("NumberOfStudyRelatedSeries", "STUDY", None, "computed"),
    _k("NumberOfStudyRelatedInstances", "STUDY", None, "computed"),
    _k("SeriesInstanceUID", "SERIES", se.c.series_instance_uid, "uid", unique=True),
    _k("Modality", "SERIES", se.c.modality, "str"),
    _k("SeriesNumber", "SERIES", se.c.series_number, "int"),
    _k("SeriesDescription", "SERIES", se.c.series_description, "str"),
    _k("SeriesDate", "SERIES", se.c.series_date, "date"),
    _k("SeriesTime", "SERIES", se.c.series_time, "time"),
    _k("BodyPartExamined", "SERIES", se.c.body_part_examined, "str"),
    _k("ProtocolName", "SERIES", se.c.protocol_name, "str"),
    _k("NumberOfSeriesRelatedInstances", "SERIES", None, "computed"),
    _k("SOPInstanceUID", "IMAGE", i.c.sop_instance_uid, "uid", unique=True),
    _k("SOPClassUID", "IMAGE", i.c.sop_class_uid, "uid"),
    _k("InstanceNumber", "IMAGE", i.c.instance_number, "int"),
    _k("ContentDate", "IMAGE", i.c.content_date, "date"),
    _k("ContentTime", "IMAGE", i.c.content_time, "time"),
    _k("NumberOfFrames", "IMAGE", i.c.number_of_frames, "int"),
    _k("ImageType", "IMAGE", i.c.image_type, "str"),
    _k("Rows", "IMAGE", i.c.rows, "int"),
    _k("Columns", "IMAGE", i.c.columns, "int"),
])

#: Columns holding the display value where matching uses a search form (PN).
DISPLAY = {
    "PatientName": p.c.patient_name,
    "ReferringPhysicianName": st.c.referring_physician_name,
}


def key_level(key: Key, model: str) -> str:
    """In the Study Root model patient attributes are study keys (PS3.4 C.6.2.1):
    they live one level down. Patient/Study Only keeps the Patient level (C.6.3)."""
    if model == STUDY_ROOT and key.level == "PATIENT":
        return "STUDY"
    return key.level
