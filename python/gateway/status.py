"""DIMSE status codes, named as in PS3.4 / PS3.7 Annex C and the seeds.

Services return these; the net layer puts them on the wire. Where the two
seeds disagree (standard vs GENIE private refusal codes) the service makes it
configurable; both sets are named here (STO-8, QRS-4, QRS-5).
"""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    SUCCESS = 0x0000
    # Warnings (PS3.4 B.2.3; STO-8)
    COERCION_OF_DATA_ELEMENTS = 0xB000
    ELEMENTS_DISCARDED = 0xB006
    DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007
    # Failures
    REFUSED_OUT_OF_RESOURCES = 0xA700
    GENIE_NOT_WRITTEN = 0xA710  # GENIE private refusals, seed 003 (STO-8)
    GENIE_INTERNAL_ERROR = 0xA720
    GENIE_CANNOT_UNDERSTAND_STREAM = 0xA730
    GENIE_NO_PIXEL_DATA = 0xA740
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    UNABLE_TO_PROCESS = 0xC001  # generic "processing failure" (PS3.7 C.4.2)
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    PROCESSING_FAILURE = 0x0110
    # Q/R
    PENDING = 0xFF00
    PENDING_WARNING = 0xFF01
    CANCEL = 0xFE00
    MOVE_DESTINATION_UNKNOWN = 0xA801
    # C-MOVE / C-GET (PS3.4 C.4.2.1.5, C.4.3.1.4; QRS-5)
    UNABLE_TO_CALCULATE_MATCHES = 0xA701
    UNABLE_TO_PERFORM_SUB_OPERATIONS = 0xA702
    SUB_OPERATIONS_WITH_FAILURES = 0xB000  # Warning: one or more failures or warnings
    # C-FIND / C-MOVE / C-GET "Failed: Unable to process" (Cxxx, PS3.4 C.4.1.1.4, C.4.2.1.5,
    # C.4.3.1.4) used for "this peer may not": PS3.4 has no "not authorized" for them
    # (docs/query-retrieve.md, "Who may query and retrieve")
    QR_NOT_AUTHORIZED = 0xC124

    @property
    def category(self) -> str:
        return category(int(self))


def category(code: int) -> str:
    """PS3.7 C: 'Success', 'Warning', 'Failure', 'Cancel' or 'Pending'."""
    if code == 0x0000:
        return "Success"
    if code in (0xFF00, 0xFF01):
        return "Pending"
    if code == 0xFE00:
        return "Cancel"
    if code == 0x0001 or (code >> 12) == 0xB or code == 0x0107 or code == 0x0116:
        return "Warning"
    return "Failure"
