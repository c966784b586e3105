"""Query/Retrieve information models and levels (QRS-1, PS3.4 C.6): plain constants.

Kept apart from :mod:`gateway_plugins.query_retrieve_keys` (which maps keys to index
columns and so imports SQLAlchemy) because the three Q/R plugin modules need these
at registration, and every command line imports those modules to collect commands.
"""

from __future__ import annotations

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")

PATIENT_ROOT = "patient"
STUDY_ROOT = "study"
PATIENT_STUDY_ONLY = "patient-study-only"

#: Find SOP class → information model (QRS-1).
FIND_MODELS = {
    "1.2.840.10008.5.1.4.1.2.1.1": PATIENT_ROOT,
    "1.2.840.10008.5.1.4.1.2.2.1": STUDY_ROOT,
    "1.2.840.10008.5.1.4.1.2.3.1": PATIENT_STUDY_ONLY,  # retired, the seeds serve it
}

#: Move SOP class → information model (QRS-1, QRS-5).
MOVE_MODELS = {
    "1.2.840.10008.5.1.4.1.2.1.2": PATIENT_ROOT,
    "1.2.840.10008.5.1.4.1.2.2.2": STUDY_ROOT,
    "1.2.840.10008.5.1.4.1.2.3.2": PATIENT_STUDY_ONLY,  # retired, the seeds serve it
}

#: Get SOP class → information model (issue 12: beyond the seeds, what viewers use).
GET_MODELS = {
    "1.2.840.10008.5.1.4.1.2.1.3": PATIENT_ROOT,
    "1.2.840.10008.5.1.4.1.2.2.3": STUDY_ROOT,
}

#: Levels each model allows (PS3.4 C.6).
MODEL_LEVELS = {
    PATIENT_ROOT: LEVELS,
    STUDY_ROOT: LEVELS[1:],
    PATIENT_STUDY_ONLY: LEVELS[:2],
}
