"""Storage Commitment Push Model SCU transactions, persisted (SND-8, PS3.4 J.3).

A transaction is written before its N-ACTION leaves, so neither a lost
N-ACTION nor a restart loses it: a row in state ``requested`` is re-sent by
:func:`gateway.net.commitment.retry_outstanding` until an N-EVENT-REPORT
settles it. States (``schema.commitments``):

* ``requested`` — recorded; ``action_status`` is NULL until the SCP answered
  the N-ACTION, 0 once it accepted it (the report is then awaited).
* ``committed`` — the report listed every instance in the Referenced SOP Sequence.
* ``partial`` — some instances were committed, some failed.
* ``failed`` — none was committed (or no report came within ``give_up_after``).
* ``error`` — the SCP refused the N-ACTION (its status in ``action_status``).

Items are ``pending`` until the report, then ``committed`` or ``failed`` (with
the Failure Reason (0008,1197)). An instance reported failed is sent again: a
new forward job (rule ``storage-commitment``) is enqueued in the same database
transaction that records the failure, so a crash cannot lose the re-send;
after ``max_resends`` failed commitments of one instance at one destination it
is left failed, and ``dicom-gateway commit ls`` shows it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

import sqlalchemy as sa

from gateway.index import schema as S
from gateway.index.queue import ForwardPlan, enqueue

__all__ = ["Commitment", "CommitmentItem", "CommitmentStore", "ReportOutcome", "StudyCommitment",
           "InstanceCommitment", "STATES", "ITEM_STATES", "RESEND_RULE", "OPEN_JOB_STATES"]

#: Every transaction state; see the module docstring.
STATES = ("requested", "committed", "partial", "failed", "error")
ITEM_STATES = ("pending", "committed", "failed")
#: The ``rule`` of forward jobs that re-send an instance whose commitment failed.
RESEND_RULE = "storage-commitment"
#: Forward job states in which an instance is still on its way to a destination.
OPEN_JOB_STATES = ("waiting", "held", "pending", "claimed")

C = S.commitments
I = S.commitment_items
J = S.forward_jobs


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class CommitmentItem:
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    state: str = "pending"
    failure_reason: int | None = None


@dataclass(frozen=True)
class Commitment:
    id: int
    transaction_uid: str
    destination: str
    state: str
    action_status: int | None
    created_at: datetime
    updated_at: datetime
    items: tuple[CommitmentItem, ...] = ()


@dataclass
class ReportOutcome:
    """What one N-EVENT-REPORT changed."""

    transaction_uid: str
    destination: str
    state: str
    committed: int = 0
    failed: int = 0
    #: instances for which a forward job was enqueued again
    resent: list[str] = field(default_factory=list)
    #: failed instances left failed: out of re-sends, or no longer in the index
    gave_up: list[str] = field(default_factory=list)
    #: instance UIDs the report named that the transaction does not hold
    unknown: list[str] = field(default_factory=list)
    #: the transaction was already settled: nothing changed
    duplicate: bool = False


@dataclass(frozen=True)
class StudyCommitment:
    """One study at one destination, over the latest commitment of each instance."""

    destination: str
    study_instance_uid: str
    instances: int
    committed: int
    pending: int
    failed: int
    resending: int          # failed, with a re-send job still open
    updated_at: datetime

    @property
    def gave_up(self) -> int:
        return self.failed - self.resending

    @property
    def state(self) -> str:
        if self.committed == self.instances:
            return "committed"
        if self.pending or self.resending:
            return "pending"
        return "failed"


@dataclass(frozen=True)
class InstanceCommitment:
    destination: str
    study_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    state: str
    failure_reason: int | None
    transaction_uid: str
    failures: int           # failed commitments of this instance at this destination
    resending: bool


def _commitment(row: Any, items: Iterable[Any] = ()) -> Commitment:
    return Commitment(row.id, row.transaction_uid, row.destination, row.state, row.action_status,
                      row.created_at, row.updated_at,
                      tuple(CommitmentItem(i.sop_class_uid, i.sop_instance_uid, i.study_instance_uid,
                                           i.state, i.failure_reason) for i in items))


class CommitmentStore:
    """Commitment transactions on an :class:`gateway.index.Index` (each call one short transaction)."""

    def __init__(self, index: Any) -> None:
        self.index = index

    # ---- the SCU side ------------------------------------------------------------

    def create(self, transaction_uid: str, destination: str,
               items: Sequence[tuple[str, str, str]], now: datetime | None = None) -> Commitment:
        """Record a new transaction in state ``requested``; ``items`` are
        (SOP Class UID, SOP Instance UID, Study Instance UID). An instance listed
        twice is recorded once (PS3.4 J.3.2.1.1: each instance once per request)."""
        now = now or _now()
        seen: dict[str, tuple[str, str, str]] = {}
        for item in items:
            seen.setdefault(item[1], item)
        if not seen:
            raise ValueError("a storage commitment transaction needs at least one instance")
        with self.index._connect(write=True) as conn:
            pk = conn.execute(sa.insert(C).values(
                transaction_uid=transaction_uid, destination=destination, state="requested",
                action_status=None, created_at=now, updated_at=now)).inserted_primary_key[0]
            conn.execute(sa.insert(I), [dict(commitment_fk=pk, sop_class_uid=c, sop_instance_uid=i,
                                             study_instance_uid=s, state="pending", failure_reason=None)
                                        for c, i, s in seen.values()])
        return self.get(transaction_uid)  # type: ignore[return-value]

    def get(self, transaction_uid: str) -> Commitment | None:
        with self.index._connect(write=False) as conn:
            row = conn.execute(sa.select(C).where(C.c.transaction_uid == transaction_uid)).first()
            if row is None:
                return None
            items = conn.execute(sa.select(I).where(I.c.commitment_fk == row.id).order_by(I.c.id)).all()
        return _commitment(row, items)

    def action_answered(self, transaction_uid: str, status: int, now: datetime | None = None) -> None:
        """The SCP answered the N-ACTION: 0 (awaiting the report) or a refusal (``error``)."""
        now = now or _now()
        with self.index._connect(write=True) as conn:
            # The report may have come before the N-ACTION-RSP: keep the state it set.
            conn.execute(sa.update(C).where(C.c.transaction_uid == transaction_uid)
                         .values(action_status=status, updated_at=now))
            if status != 0:
                conn.execute(sa.update(C).where(C.c.transaction_uid == transaction_uid, C.c.state == "requested")
                             .values(state="error"))

    def touch(self, transaction_uid: str, now: datetime | None = None) -> None:
        """An N-ACTION (re-)try happened now: the retry clock starts over."""
        with self.index._connect(write=True) as conn:
            conn.execute(sa.update(C).where(C.c.transaction_uid == transaction_uid)
                         .values(updated_at=now or _now()))

    def claim_retry(self, transaction_uid: str, older_than: float, now: datetime | None = None) -> bool:
        """Take the right to re-send a transaction's N-ACTION: True for exactly one
        caller when it is still ``requested`` and untried for ``older_than`` seconds
        (several sender processes or nodes share the index)."""
        now = now or _now()
        with self.index._connect(write=True) as conn:
            return conn.execute(sa.update(C).where(
                C.c.transaction_uid == transaction_uid, C.c.state == "requested",
                C.c.updated_at <= now - timedelta(seconds=older_than)).values(updated_at=now)).rowcount == 1

    def pending(self, older_than: float = 0.0, now: datetime | None = None) -> list[Commitment]:
        """Transactions still ``requested`` whose last N-ACTION try is at least
        ``older_than`` seconds old, oldest first, with their items."""
        now = now or _now()
        with self.index._connect(write=False) as conn:
            rows = conn.execute(sa.select(C).where(
                C.c.state == "requested", C.c.updated_at <= now - timedelta(seconds=older_than))
                .order_by(C.c.updated_at, C.c.id)).all()
            out = []
            for row in rows:
                items = conn.execute(sa.select(I).where(I.c.commitment_fk == row.id).order_by(I.c.id)).all()
                out.append(_commitment(row, items))
        return out

    def expire(self, transaction_uid: str, now: datetime | None = None) -> bool:
        """No report came in time: the transaction and its pending items fail
        (not re-sent: the instances were delivered; the SCP never said more)."""
        now = now or _now()
        with self.index._connect(write=True) as conn:
            row = conn.execute(sa.select(C.c.id).where(C.c.transaction_uid == transaction_uid,
                                                       C.c.state == "requested")).first()
            if row is None:
                return False
            conn.execute(sa.update(I).where(I.c.commitment_fk == row.id, I.c.state == "pending")
                         .values(state="failed", failure_reason=None))
            conn.execute(sa.update(C).where(C.c.id == row.id).values(state=_settled_state(conn, row.id),
                                                                     updated_at=now))
        return True

    # ---- the report ----------------------------------------------------------------

    def apply_report(self, transaction_uid: str, committed: Iterable[tuple[str, str]],
                     failed: Iterable[tuple[str, str, int | None]], *, max_resends: int = 3,
                     now: datetime | None = None) -> ReportOutcome | None:
        """Record an N-EVENT-REPORT (PS3.4 J.3.3): ``committed`` are the Referenced
        SOP Sequence's (class, instance), ``failed`` the Failed SOP Sequence's
        (class, instance, Failure Reason). Returns None for an unknown Transaction UID.

        The report settles the transaction: an instance of the request that the
        report does not mention is failed too (the SCP gave no commitment for it).
        Failed instances get a re-send job in this same database transaction,
        unless they already failed ``max_resends`` times at this destination.
        A second report for a settled transaction changes nothing.
        """
        now = now or _now()
        committed = list(committed)
        failed = list(failed)
        with self.index._connect(write=True) as conn:
            row = conn.execute(sa.select(C).where(C.c.transaction_uid == transaction_uid)).first()
            if row is None:
                return None
            outcome = ReportOutcome(transaction_uid, row.destination, row.state)
            items = {i.sop_instance_uid: i for i in
                     conn.execute(sa.select(I).where(I.c.commitment_fk == row.id)).all()}
            named = {uid for _, uid in committed} | {uid for _, uid, _ in failed}
            outcome.unknown = sorted(named - set(items))
            if row.state != "requested":
                outcome.duplicate = True
                return outcome
            newly_failed: list[Any] = []
            committed_uids = {uid for _, uid in committed}
            ids = [i.id for uid, i in items.items() if uid in committed_uids and i.state == "pending"]
            for chunk in range(0, len(ids), 500):  # a report may list thousands of instances
                conn.execute(sa.update(I).where(I.c.id.in_(ids[chunk:chunk + 500])).values(state="committed"))
            outcome.committed = len(ids)
            reasons = {uid: reason for _, uid, reason in failed}
            for uid, item in items.items():
                if item.state != "pending" or uid in committed_uids:
                    continue
                reason = reasons.get(uid)
                conn.execute(sa.update(I).where(I.c.id == item.id).values(state="failed", failure_reason=reason))
                newly_failed.append(item)
                outcome.failed += 1
            for item in newly_failed:
                if self._resend(conn, row.destination, item, max_resends, now):
                    outcome.resent.append(item.sop_instance_uid)
                else:
                    outcome.gave_up.append(item.sop_instance_uid)
            state = _settled_state(conn, row.id)
            conn.execute(sa.update(C).where(C.c.id == row.id).values(state=state, updated_at=now))
            outcome.state = state
        return outcome

    def _resend(self, conn: Any, destination: str, item: Any, max_resends: int, now: datetime) -> bool:
        failures = conn.execute(sa.select(sa.func.count()).select_from(I.join(C, C.c.id == I.c.commitment_fk))
                                .where(C.c.destination == destination, I.c.sop_instance_uid == item.sop_instance_uid,
                                       I.c.state == "failed")).scalar_one()
        if failures > max_resends:
            return False
        open_job = conn.execute(sa.select(J.c.id).where(
            J.c.destination == destination, J.c.sop_instance_uid == item.sop_instance_uid,
            J.c.state.in_(OPEN_JOB_STATES)).limit(1)).first()
        if open_job is not None:  # already on its way again: one send is enough
            return True
        found = conn.execute(sa.select(S.series.c.series_instance_uid, S.studies.c.study_instance_uid)
                             .select_from(S.instances.join(S.series, S.series.c.id == S.instances.c.series_fk)
                                          .join(S.studies, S.studies.c.id == S.series.c.study_fk))
                             .where(S.instances.c.sop_instance_uid == item.sop_instance_uid)).first()
        if found is None:  # deleted from the archive since: nothing to send
            return False
        # The route's options (syntax preference, SND-7 conversions) come from the last forward.
        last = conn.execute(sa.select(J.c.options, J.c.priority).where(
            J.c.destination == destination, J.c.sop_instance_uid == item.sop_instance_uid)
            .order_by(J.c.id.desc()).limit(1)).first()
        plan = ForwardPlan(destination=destination, rule=RESEND_RULE,
                           priority=last.priority if last else 0,
                           options=json.loads(last.options) if last and last.options else {})
        enqueue(conn, [plan], sop_instance_uid=item.sop_instance_uid, sop_class_uid=item.sop_class_uid,
                series_instance_uid=found.series_instance_uid, study_instance_uid=found.study_instance_uid,
                now=now)
        return True

    # ---- operators (dicom-gateway commit ls) -----------------------------------------

    def _latest(self, study: str | None, destination: str | None) -> sa.Subquery:
        """Each instance's latest commitment item per destination."""
        cond = []
        if study:
            cond.append(I.c.study_instance_uid == study)
        if destination:
            cond.append(C.c.destination == destination)
        return (sa.select(C.c.destination, I.c.sop_instance_uid, sa.func.max(I.c.id).label("item_id"))
                .select_from(I.join(C, C.c.id == I.c.commitment_fk)).where(*cond)
                .group_by(C.c.destination, I.c.sop_instance_uid).subquery())

    def instances(self, *, study: str | None = None, destination: str | None = None,
                  limit: int = 10000) -> list[InstanceCommitment]:
        latest = self._latest(study, destination)
        failures = (sa.select(C.c.destination, I.c.sop_instance_uid, sa.func.count().label("n"))
                    .select_from(I.join(C, C.c.id == I.c.commitment_fk)).where(I.c.state == "failed")
                    .group_by(C.c.destination, I.c.sop_instance_uid).subquery())
        with self.index._connect(write=False) as conn:
            rows = conn.execute(
                sa.select(latest.c.destination, I, C.c.transaction_uid, failures.c.n)
                .select_from(latest.join(I, I.c.id == latest.c.item_id).join(C, C.c.id == I.c.commitment_fk)
                             .outerjoin(failures, sa.and_(failures.c.destination == latest.c.destination,
                                                          failures.c.sop_instance_uid == latest.c.sop_instance_uid)))
                .order_by(latest.c.destination, I.c.study_instance_uid, I.c.sop_instance_uid).limit(limit)).all()
            resending = _open_jobs(conn, [(r.destination, r.sop_instance_uid) for r in rows if r.state == "failed"])
        return [InstanceCommitment(r.destination, r.study_instance_uid, r.sop_instance_uid, r.sop_class_uid,
                                   r.state, r.failure_reason, r.transaction_uid, r.n or 0,
                                   (r.destination, r.sop_instance_uid) in resending) for r in rows]

    def studies(self, *, study: str | None = None, destination: str | None = None) -> list[StudyCommitment]:
        """The commitment state per study and destination (``commit ls``)."""
        per: dict[tuple[str, str], dict[str, Any]] = {}
        updated: dict[tuple[str, str], datetime] = {}
        latest = self._latest(study, destination)
        with self.index._connect(write=False) as conn:
            rows = conn.execute(sa.select(latest.c.destination, I.c.study_instance_uid, I.c.sop_instance_uid,
                                          I.c.state, C.c.updated_at)
                                .select_from(latest.join(I, I.c.id == latest.c.item_id)
                                             .join(C, C.c.id == I.c.commitment_fk))).all()
            resending = _open_jobs(conn, [(r.destination, r.sop_instance_uid) for r in rows if r.state == "failed"])
        for r in rows:
            key = (r.destination, r.study_instance_uid)
            counts = per.setdefault(key, dict(instances=0, committed=0, pending=0, failed=0, resending=0))
            counts["instances"] += 1
            counts[r.state] += 1
            if r.state == "failed" and (r.destination, r.sop_instance_uid) in resending:
                counts["resending"] += 1
            updated[key] = max(updated.get(key, r.updated_at), r.updated_at)
        return [StudyCommitment(d, s, updated_at=updated[(d, s)], **counts)
                for (d, s), counts in sorted(per.items())]

    def destinations(self) -> list[str]:
        with self.index._connect(write=False) as conn:
            return list(conn.execute(sa.select(C.c.destination).distinct().order_by(C.c.destination)).scalars())

    def transactions(self, *, destination: str | None = None, state: str | None = None,
                     limit: int = 1000) -> list[Commitment]:
        cond = []
        if destination:
            cond.append(C.c.destination == destination)
        if state:
            cond.append(C.c.state == state)
        with self.index._connect(write=False) as conn:
            rows = conn.execute(sa.select(C).where(*cond).order_by(C.c.id).limit(limit)).all()
            out = []
            for row in rows:
                items = conn.execute(sa.select(I).where(I.c.commitment_fk == row.id).order_by(I.c.id)).all()
                out.append(_commitment(row, items))
        return out


def _settled_state(conn: Any, pk: int) -> str:
    counts = dict(conn.execute(sa.select(I.c.state, sa.func.count()).where(I.c.commitment_fk == pk)
                               .group_by(I.c.state)).all())
    if counts.get("pending"):
        return "requested"
    if not counts.get("failed"):
        return "committed"
    return "partial" if counts.get("committed") else "failed"


def _open_jobs(conn: Any, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    uids = sorted({uid for _, uid in keys})
    for chunk in range(0, len(uids), 500):
        rows = conn.execute(sa.select(J.c.destination, J.c.sop_instance_uid).where(
            J.c.sop_instance_uid.in_(uids[chunk:chunk + 500]), J.c.state.in_(OPEN_JOB_STATES))).all()
        found.update((r.destination, r.sop_instance_uid) for r in rows)
    return found & set(keys)
