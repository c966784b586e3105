"""What a C-MOVE or C-GET retrieves, and how its responses count (QRS-5).

Selection (PS3.4 C.4.2.2.1, C.4.3.2.1, baseline hierarchical retrieve): the
Identifier names the Query/Retrieve Level and the unique key of that level —
one value, or a list of UIDs — and the unique key of every level above it with
one value. Other keys are ignored. The matching is the C-FIND matching
(:func:`gateway_plugins.query_retrieve_match.plan` over those keys); the
instances below the matched entities are read with their stored file (and the
patient's corrected demographics, QRS-7, which the sub-operation's copy carries) in
one statement, and each file is located through the storage service
(``gateway_stored_file_path``). Anything else in the Identifier that does not
fit — a missing or wildcard unique key, a UID list above the level — is A900.

Counting (PS3.4 C.4.2.1.5, C.4.3.1.4): a Pending response after each
sub-operation with the Remaining/Completed/Failed/Warning counts; at the end
0000 when every sub-operation succeeded, A702 when every one failed, else B000
with the Failed SOP Instance UID List; FE00 after a C-CANCEL, with the counts
so far (Remaining: not attempted).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from pydicom.dataset import Dataset

from gateway.index import schema as S
from gateway.messages import Response
from gateway.status import Status, category

from gateway_plugins.query_retrieve_find import _check_hierarchy, _keys
from gateway_plugins.query_retrieve_keys import KEYS, LEVELS, MODEL_LEVELS, STUDY_ROOT, key_level
from gateway_plugins.query_retrieve_match import _PK, InvalidIdentifier, plan

log = logging.getLogger("gateway.qr")

#: The unique key of each level (PS3.4 C.6).
LEVEL_KEY = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
             "IMAGE": "SOPInstanceUID"}

#: Number of … Sub-operations are US (PS3.7 C.4.2): at most this many per request.
MAX_SUB_OPERATIONS = 65535


class CannotSelect(Exception):
    """The index could not be read (A701: unable to calculate the number of matches)."""


@dataclass(frozen=True)
class Selection:
    #: :class:`gateway.net.storescu.Outgoing` per located stored file, in study/series/instance order
    items: list[Any]
    #: SOP Instance UIDs whose stored file no storage service could locate (failed sub-operations)
    unlocated: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.items) + len(self.unlocated)


def level_of(identifier: Dataset, model: str) -> str:
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in MODEL_LEVELS[model]:
        raise InvalidIdentifier(f"Query/Retrieve Level {level!r} is not one of the {model} model's")
    return level


def retrieve_keys(identifier: Dataset, model: str, level: str) -> dict[str, str]:
    """The unique keys of the Identifier at and above ``level``; InvalidIdentifier
    when the level's own key is missing or has a wildcard, or a higher one does not
    name one entity (QRS-5 → A900)."""
    given = _keys(identifier)
    depth = LEVELS.index(level)
    keys: dict[str, str] = {}
    for keyword, key in KEYS.items():
        if not key.unique or (model == STUDY_ROOT and keyword == "PatientID"):
            continue  # in Study Root the Patient ID is a study attribute, not a level's key
        if LEVELS.index(key_level(key, model)) <= depth and keyword in given:
            keys[keyword] = given[keyword].strip()
    own = LEVEL_KEY[level]
    value = keys.get(own, "")
    if not value.strip("\\"):
        raise InvalidIdentifier(f"a {level} level retrieve needs {own}")
    if "*" in value or "?" in value or (own == "PatientID" and "\\" in value):
        raise InvalidIdentifier(f"{own} must name the entities to retrieve (no wildcards)")
    _check_hierarchy(model, level, keys)
    return keys


def select(request: Any, index: Any, model: str) -> Selection:
    """The stored files of the instances the request's Identifier names."""
    from gateway.index import FileRecord
    from gateway.index.demographics import demographic_columns, demographics_of
    from gateway.net.storescu import Outgoing
    from gateway.plugins import HookError

    level = level_of(request.identifier, model)
    keys = retrieve_keys(request.identifier, model, level)
    query = plan(model, level, keys, index.dialect)  # UID list above the level: InvalidIdentifier
    matched = query.select.with_only_columns(_PK[level]).order_by(None)
    p, st, se, i, f = S.patients, S.studies, S.series, S.instances, S.files
    stmt = (sa.select(i.c.sop_instance_uid, i.c.sop_class_uid, f.c.path, f.c.size, f.c.sha256, f.c.backend,
                      f.c.transfer_syntax_uid, *demographic_columns())
            .select_from(f.join(i, f.c.instance_fk == i.c.id).join(se, i.c.series_fk == se.c.id)
                         .join(st, se.c.study_fk == st.c.id).join(p, st.c.patient_fk == p.c.id))
            .where(_PK[level].in_(matched))
            .order_by(p.c.id, st.c.study_date, st.c.id, se.c.series_number, se.c.id, i.c.instance_number, i.c.id))
    try:
        with index.engine.connect() as conn:
            rows = conn.execute(stmt).all()
    except sa.exc.SQLAlchemyError as exc:
        raise CannotSelect(f"cannot read the index: {exc}") from exc
    if len(rows) > MAX_SUB_OPERATIONS:
        raise CannotSelect(f"{len(rows)} instances match; at most {MAX_SUB_OPERATIONS} per request")
    originator = None
    if request.move_destination is not None:
        originator = (request.association.calling_ae, int(request.message_id))
    items: list[Any] = []
    unlocated: list[str] = []
    for r in rows:
        record = FileRecord(r.path, r.size, r.sha256, r.transfer_syntax_uid, backend=r.backend)
        try:
            path = request.plugins.call("gateway_stored_file_path", file=record, config=request.config)
        except HookError as exc:
            log.error("cannot locate the stored file of %s: %s", r.sop_instance_uid, exc)
            path = None
        if path is None:
            unlocated.append(r.sop_instance_uid)
            continue
        items.append(Outgoing(path=path, sop_class_uid=r.sop_class_uid, sop_instance_uid=r.sop_instance_uid,
                              transfer_syntax_uid=r.transfer_syntax_uid, key=r.sop_instance_uid,
                              move_originator=originator, demographics=demographics_of(r)))
    return Selection(items, unlocated)


class Tally:
    """Sub-operation counts of one C-MOVE / C-GET and the responses they make."""

    def __init__(self, total: int, unlocated: list[str] = ()) -> None:
        self.total = total
        self.remaining = total
        self.completed = self.failed = self.warning = 0
        self.failed_uids: list[str] = []
        for uid in unlocated:
            self.fail(uid)

    def fail(self, uid: str) -> None:
        self.remaining -= 1
        self.failed += 1
        self.failed_uids.append(uid)

    def add(self, result: Any) -> None:
        """One sub-operation's SendResult."""
        if not result.ok:
            self.fail(result.item.sop_instance_uid)
            return
        self.remaining -= 1
        if result.status is not None and category(int(result.status)) == "Warning":
            self.warning += 1
        else:
            self.completed += 1

    def _counts(self, remaining: bool) -> dict[str, int]:
        counts = {"NumberOfCompletedSuboperations": self.completed, "NumberOfFailedSuboperations": self.failed,
                  "NumberOfWarningSuboperations": self.warning}
        if remaining:
            counts["NumberOfRemainingSuboperations"] = self.remaining
        return counts

    def _failed_list(self) -> Dataset:
        ds = Dataset()
        ds.FailedSOPInstanceUIDList = list(self.failed_uids)
        return ds

    def pending(self) -> tuple[Response, None]:
        return Response(Status.PENDING, extra=self._counts(True)), None

    def cancelled(self) -> tuple[Response, Dataset]:
        return Response(Status.CANCEL, extra=self._counts(True)), self._failed_list()

    def final(self) -> tuple[Response, Dataset | None]:
        if not self.failed and not self.warning:
            return Response(Status.SUCCESS, extra=self._counts(False)), None
        if self.failed == self.total:
            return (Response(Status.UNABLE_TO_PERFORM_SUB_OPERATIONS, error_comment="every sub-operation failed",
                             extra=self._counts(False)), self._failed_list())
        return Response(Status.SUB_OPERATIONS_WITH_FAILURES, extra=self._counts(False)), self._failed_list()

    def __str__(self) -> str:
        return (f"{self.completed} completed, {self.warning} with warnings, {self.failed} failed, "
                f"{self.remaining} not attempted")


def refusal(exc: Exception, operation: str) -> tuple[Response, None]:
    """The response refusing a request whose selection could not be made."""
    if isinstance(exc, InvalidIdentifier):
        log.info("%s refused: %s", operation, exc)
        return Response(Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, error_comment=str(exc)), None
    log.error("%s refused: %s", operation, exc)
    return Response(Status.UNABLE_TO_CALCULATE_MATCHES, error_comment=str(exc)), None
