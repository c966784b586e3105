"""The durable forward queue: jobs written with the instance row, claimed by senders.

DESIGN §2: a forward job is inserted in the same transaction as the instance it
forwards (:func:`enqueue` takes the store's ``Transaction``), so a C-STORE
acknowledged to a peer is never forgotten by a crash. Sender workers claim jobs
per destination with a lease; SQLite serializes claims with ``BEGIN
IMMEDIATE``, PostgreSQL with ``SELECT … FOR UPDATE SKIP LOCKED`` so several
nodes share one queue.

Delivery is at-least-once: a job is marked done only after the peer answered
its C-STORE, in a short transaction after the response (the sender records
sent jobs in small groups). A sender killed between the peer's response and
that commit leaves the job claimed; its lease is released when a
sender on the same host starts again (the claimant's process is gone), or when
the lease expires, and the object is sent once more. The same happens when
that commit fails (index unavailable: the job is released, or its lease
expires), and when a sender stalls for longer than its lease (it renews the
lease every third of it while sending). A C-STORE whose response never came
(DIMSE timeout, association lost) counts as a failed try and is retried, so a
peer that did store it gets it again. Nothing else sends twice; see
docs/forwarding.md.
"""

from __future__ import annotations

import json
import os
import random
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.index import schema as S
from gateway.index.job_states import STATES
from gateway.index.prepared import driver_cursor, prepared

__all__ = ["ForwardPlan", "Job", "ForwardQueue", "enqueue", "touch_series", "backoff_delay",
           "STATES", "worker_id"]

#: ``complete_after`` meaning "when the sending association ends".
ON_ASSOCIATION_END = -1.0

J = S.forward_jobs
A = S.series_activity


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def worker_id() -> str:
    """``host:pid``: who holds a claim (a restarted sender frees its dead predecessors')."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class ForwardPlan:
    """One destination an instance must go to, as the router decided it."""

    destination: str
    rule: str
    priority: int = 0
    #: "pending" (send now), "held" (keep for an operator) or "waiting" (until the series is complete)
    state: str = "pending"
    #: waiting only: quiet seconds, or ON_ASSOCIATION_END
    complete_after: float | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    id: int
    destination: str
    sop_instance_uid: str
    sop_class_uid: str
    series_instance_uid: str
    study_instance_uid: str
    rule: str
    priority: int
    state: str
    options: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    last_status: int | None = None
    last_error: str | None = None
    claimed_by: str | None = None
    sent_at: datetime | None = None


def _job(row: Any) -> Job:
    return Job(row.id, row.destination, row.sop_instance_uid, row.sop_class_uid,
               row.series_instance_uid, row.study_instance_uid, row.rule, row.priority, row.state,
               json.loads(row.options or "{}"), row.attempts, row.next_attempt_at, row.created_at,
               row.updated_at, row.last_status, row.last_error, row.claimed_by, row.sent_at)


def enqueue(conn: Connection, plans: Iterable[ForwardPlan], *, sop_instance_uid: str, sop_class_uid: str,
            series_instance_uid: str, study_instance_uid: str, now: datetime | None = None) -> int:
    """Insert one job per plan, inside the caller's (the store's) transaction.

    A ``waiting`` plan whose series is already complete is still a waiting job:
    the late arrival reopened the series (:func:`touch_series`), and the job is
    released when the series is complete again — never dropped.
    """
    now = now or _now()
    rows = [dict(destination=p.destination, sop_instance_uid=sop_instance_uid, sop_class_uid=sop_class_uid,
                 series_instance_uid=series_instance_uid, study_instance_uid=study_instance_uid,
                 rule=p.rule, priority=p.priority, state=p.state,
                 options=json.dumps(p.options, sort_keys=True), complete_after=p.complete_after,
                 attempts=0, next_attempt_at=now, created_at=now, updated_at=now)
            for p in plans]
    if rows:
        conn.execute(sa.insert(J), rows)
    return len(rows)


def touch_series(conn: Connection, *, series_instance_uid: str, study_instance_uid: str,
                 association: str, now: datetime | None = None, cursor: Any = None) -> None:
    """Record an arrival in a series (completeness); a completed series reopens.
    Once per stored object: prepared SQL (gateway.index.prepared), on the store
    transaction's ``cursor`` when given."""
    values = dict(series_instance_uid=series_instance_uid, study_instance_uid=study_instance_uid,
                  last_received_at=now or _now(), association=association, association_ended=False,
                  completed_at=None, instances_received=1)
    prepared("touch_series", conn.dialect, lambda: _touch_series_statement(conn.dialect.name),
             column_keys=list(values)).execute(cursor or driver_cursor(conn), values)


def _touch_series_statement(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    ins = insert(A)
    return ins.on_conflict_do_update(index_elements=[A.c.series_instance_uid], set_=dict(
        last_received_at=ins.excluded.last_received_at, association=ins.excluded.association,
        association_ended=False, completed_at=None, instances_received=A.c.instances_received + 1))


def backoff_delay(attempts: int, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter over the upper half: ``initial * 2**(n-1)``
    capped at ``maximum``, then scaled by a factor in [0.5, 1.0)."""
    base = min(maximum, initial * (2 ** max(0, attempts - 1)))
    return base * (0.5 + (rng or random).random() / 2)


class ForwardQueue:
    """Queue operations on an :class:`gateway.index.Index` (each its own short transaction)."""

    def __init__(self, index: Any) -> None:
        self.index = index

    # ---- senders -------------------------------------------------------------------

    def destinations_ready(self, now: datetime | None = None) -> dict[str, int]:
        """Destinations with jobs that can be claimed now, and how many."""
        now = now or _now()
        with self.index._connect(write=False) as conn:
            rows = conn.execute(sa.select(J.c.destination, sa.func.count()).where(_claimable(now))
                                .group_by(J.c.destination)).all()
        return {d: n for d, n in rows}

    def next_due(self, destination: str | None = None) -> datetime | None:
        """When the earliest pending job (of ``destination``) becomes due."""
        cond = [J.c.state == "pending"]
        if destination is not None:
            cond.append(J.c.destination == destination)
        with self.index._connect(write=False) as conn:
            return conn.execute(sa.select(sa.func.min(J.c.next_attempt_at)).where(*cond)).scalar()

    def claim(self, destination: str, claimant: str, limit: int = 64, lease: float = 300.0,
              now: datetime | None = None) -> list[Job]:
        """Claim up to ``limit`` due jobs of ``destination``: highest priority, then oldest."""
        now = now or _now()
        with self.index._connect(write=True) as conn:
            ids = conn.execute(
                sa.select(J.c.id).where(J.c.destination == destination, _claimable(now))
                .order_by(J.c.priority.desc(), J.c.id).limit(limit)
                .with_for_update(skip_locked=True)).scalars().all()
            if not ids:
                return []
            conn.execute(sa.update(J).where(J.c.id.in_(ids)).values(
                state="claimed", claimed_by=claimant, lease_until=now + timedelta(seconds=lease),
                updated_at=now))
            rows = conn.execute(sa.select(J).where(J.c.id.in_(ids))
                                .order_by(J.c.priority.desc(), J.c.id)).all()
        return [_job(r) for r in rows]

    def extend(self, ids: Iterable[int], claimant: str, lease: float) -> None:
        """Renew the lease of jobs still being worked on."""
        ids = list(ids)
        if not ids:
            return
        now = _now()
        with self.index._connect(write=True) as conn:
            conn.execute(sa.update(J).where(J.c.id.in_(ids), J.c.claimed_by == claimant, J.c.state == "claimed")
                         .values(lease_until=now + timedelta(seconds=lease)))

    def complete(self, ids: Iterable[int], status: int = 0) -> None:
        """The peer answered Success or Warning (SND-5)."""
        ids = list(ids)
        if not ids:
            return
        now = _now()
        with self.index._connect(write=True) as conn:
            conn.execute(sa.update(J).where(J.c.id.in_(ids)).values(
                state="done", sent_at=now, updated_at=now, last_status=status, claimed_by=None,
                lease_until=None, attempts=J.c.attempts + 1))

    def fail(self, job_id: int, *, error: str, status: int | None = None, retry: bool = True,
             max_attempts: int = 10, backoff_initial: float = 2.0, backoff_max: float = 600.0,
             count_attempt: bool = True, now: datetime | None = None) -> str:
        """Record a failed try. Returns the new state: ``pending`` (retried after a
        backoff), ``dead`` (out of attempts) or ``failed`` (``retry=False``: the peer
        can never take it, SND-4)."""
        now = now or _now()
        with self.index._connect(write=True) as conn:
            attempts = conn.execute(sa.select(J.c.attempts).where(J.c.id == job_id)).scalar()
            if attempts is None:
                return "gone"
            attempts += 1 if count_attempt else 0
            if not retry:
                state, due = "failed", now
            elif attempts >= max_attempts:
                state, due = "dead", now
            else:
                state = "pending"
                due = now + timedelta(seconds=backoff_delay(max(attempts, 1), backoff_initial, backoff_max))
            conn.execute(sa.update(J).where(J.c.id == job_id).values(
                state=state, attempts=attempts, next_attempt_at=due, last_error=error[:500],
                last_status=status, claimed_by=None, lease_until=None, updated_at=now))
        return state

    def release(self, ids: Iterable[int], delay: float = 0.0) -> None:
        """Give claimed jobs back untried (shutdown, open circuit)."""
        ids = list(ids)
        if not ids:
            return
        now = _now()
        with self.index._connect(write=True) as conn:
            conn.execute(sa.update(J).where(J.c.id.in_(ids), J.c.state == "claimed").values(
                state="pending", claimed_by=None, lease_until=None, updated_at=now,
                next_attempt_at=now + timedelta(seconds=delay)))

    def release_dead_claims(self, host: str | None = None) -> int:
        """Free jobs claimed by processes of this host that no longer run (a crash
        or kill left them claimed); returns how many."""
        with self.index._connect(write=True) as conn:
            return release_dead_claims(conn, J, _now(), host)

    # ---- series completeness ---------------------------------------------------------

    def association_ended(self, association: str) -> int:
        """Mark the series whose last arrival came on ``association`` as ended there."""
        with self.index._connect(write=True) as conn:
            return conn.execute(sa.update(A).where(A.c.association == association, A.c.association_ended.is_(False))
                                .values(association_ended=True)).rowcount

    def complete_series(self, quiet_time: float, now: datetime | None = None) -> list[tuple[str, str, int]]:
        """Mark series complete (association ended, or quiet for ``quiet_time``) and
        release the waiting jobs each rule's completeness condition allows.

        Returns the series completed by this call as (series UID, study UID,
        instances received), for the ``gateway_series_complete`` event.
        """
        now = now or _now()
        completable = sa.and_(A.c.completed_at.is_(None), sa.or_(
            A.c.association_ended.is_(True), A.c.last_received_at <= now - timedelta(seconds=quiet_time)))
        # The sender calls this every poll: decide in a read, so the write lock the
        # storage service needs is taken only when something is due.
        with self.index._connect(write=False) as conn:
            series_ids = conn.execute(sa.select(A.c.id).where(completable)).scalars().all()
            waiting = conn.execute(sa.select(J.c.id, J.c.complete_after, A.c.last_received_at,
                                             A.c.association_ended)
                                   .join(A, A.c.series_instance_uid == J.c.series_instance_uid, isouter=True)
                                   .where(J.c.state == "waiting")).all()
        ready = [w.id for w in waiting if _series_ready(w, quiet_time, now)]
        done: list[tuple[str, str, int]] = []
        if not series_ids and not ready:
            return done
        with self.index._connect(write=True) as conn:
            for chunk in range(0, len(series_ids), 500):
                # `completable` again: an arrival since the read reopened the series.
                rows = conn.execute(sa.update(A).where(A.c.id.in_(series_ids[chunk:chunk + 500]), completable)
                                    .values(completed_at=now)
                                    .returning(A.c.series_instance_uid, A.c.study_instance_uid,
                                               A.c.instances_received)).all()
                done += [(r.series_instance_uid, r.study_instance_uid, r.instances_received) for r in rows]
            for chunk in range(0, len(ready), 500):
                conn.execute(sa.update(J).where(J.c.id.in_(ready[chunk:chunk + 500]), J.c.state == "waiting")
                             .values(state="pending", next_attempt_at=now, updated_at=now))
        return done

    # ---- operators (dicom-gateway queue) -------------------------------------------

    def list(self, *, state: str | None = None, destination: str | None = None,
             study_instance_uid: str | None = None, limit: int = 1000) -> list[Job]:
        cond = _filters(state=state, destination=destination, study=study_instance_uid)
        with self.index._connect(write=False) as conn:
            rows = conn.execute(sa.select(J).where(*cond).order_by(J.c.id).limit(limit)).all()
        return [_job(r) for r in rows]

    def summary(self) -> list[dict[str, Any]]:
        """Per destination and state: count and oldest job's creation time."""
        with self.index._connect(write=False) as conn:
            rows = conn.execute(sa.select(J.c.destination, J.c.state, sa.func.count().label("n"),
                                          sa.func.min(J.c.created_at).label("oldest"))
                                .group_by(J.c.destination, J.c.state)
                                .order_by(J.c.destination, J.c.state)).all()
        return [dict(destination=r.destination, state=r.state, count=r.n, oldest=r.oldest) for r in rows]

    def retry(self, *, ids: Iterable[int] | None = None, destination: str | None = None,
              states: tuple[str, ...] = ("dead", "failed", "held")) -> int:
        """Replay dead-lettered, failed or held jobs now (attempts start over)."""
        cond = [J.c.state.in_(states)]
        if ids is not None:
            cond.append(J.c.id.in_(list(ids)))
        if destination is not None:
            cond.append(J.c.destination == destination)
        now = _now()
        with self.index._connect(write=True) as conn:
            return conn.execute(sa.update(J).where(*cond).values(
                state="pending", attempts=0, next_attempt_at=now, updated_at=now)).rowcount

    def drop(self, *, ids: Iterable[int] | None = None, destination: str | None = None,
             states: tuple[str, ...] = ("pending", "waiting", "held", "dead", "failed")) -> int:
        """Delete jobs (never a claimed one: its sender is using it)."""
        cond = [J.c.state.in_([s for s in states if s != "claimed"])]
        if ids is not None:
            cond.append(J.c.id.in_(list(ids)))
        if destination is not None:
            cond.append(J.c.destination == destination)
        with self.index._connect(write=True) as conn:
            return conn.execute(sa.delete(J).where(*cond)).rowcount


def _series_ready(w: Any, quiet_time: float, now: datetime) -> bool:
    """Whether a waiting job's series meets the completeness its rule asked for."""
    if w.last_received_at is None:  # no activity row: nothing more will arrive for it
        return True
    if w.complete_after == ON_ASSOCIATION_END:
        return bool(w.association_ended)
    quiet = quiet_time if w.complete_after is None else w.complete_after
    return w.last_received_at <= now - timedelta(seconds=quiet)


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(sa.and_(J.c.state == "pending", J.c.next_attempt_at <= now),
                  sa.and_(J.c.state == "claimed", J.c.lease_until < now))


def _filters(*, state: str | None, destination: str | None, study: str | None) -> list[Any]:
    cond: list[Any] = []
    if state:
        cond.append(J.c.state == state)
    if destination:
        cond.append(J.c.destination == destination)
    if study:
        cond.append(J.c.study_instance_uid == study)
    return cond


def release_dead_claims(conn: Any, jobs: sa.Table, now: datetime, host: str | None = None) -> int:
    """In any job table with this queue's lease columns (``state``, ``claimed_by``
    = "host:pid", ``lease_until``, ``next_attempt_at``, ``updated_at``; a plugin's
    own queue may share them): the jobs claimed by processes of this host that no
    longer run go back to pending, due now. Returns how many."""
    host = host or socket.gethostname()
    claimants = conn.execute(sa.select(jobs.c.claimed_by).where(
        jobs.c.state == "claimed", jobs.c.claimed_by.like(f"{host}:%")).distinct()).scalars().all()
    freed = 0
    for claimant in claimants:
        try:
            pid = int(claimant.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        freed += conn.execute(sa.update(jobs).where(jobs.c.state == "claimed", jobs.c.claimed_by == claimant)
                              .values(state="pending", claimed_by=None, lease_until=None,
                                      next_attempt_at=now, updated_at=now)).rowcount
    return freed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
