"""A job table with leases: claim, renew, finish, fail with backoff and a dead letter,
release, retry, drop, list.

The forward queue (:mod:`gateway.index.queue`) set the pattern; plugins that keep a
durable queue of their own in the index (prefetch, print, media) use the same lease
columns so that :func:`gateway.index.queue.release_dead_claims` frees a killed
process's claims in every table alike (decision 0011 §3). This module holds only that
shared part; what a job *is* (its extra columns, its kinds, its ordering) stays with
the table's owner, which passes the :class:`sqlalchemy.Table` and, where it differs
from oldest-due-first, the ordering of claims.

Columns the table must have: ``id``, ``state``, ``attempts``, ``next_attempt_at``,
``claimed_by``, ``lease_until``, ``last_error``, ``updated_at`` (naive UTC times).
States: ``pending`` → ``claimed`` → ``done`` | ``pending`` (after a backoff) |
``dead`` (attempts exhausted) | ``failed`` (can never work as configured).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

import sqlalchemy as sa

from gateway.index.queue import backoff_delay, release_dead_claims

__all__ = ["LeasedJobs", "now"]

# Errors are shown by `ls` commands; a traceback-long text would only bloat the row,
# so they are cut as the forward queue cuts them (an owner may keep more).
TEXT_LIMIT = 500


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class LeasedJobs:
    """The lease operations on one job table, each its own short transaction on an
    :class:`gateway.index.Index` (``index._connect(write=...)``)."""

    def __init__(self, index: Any, table: sa.Table, order_by: Sequence[Any] | None = None,
                 text_limit: int = TEXT_LIMIT) -> None:
        self.index = index
        self.table = table
        self.text_limit = text_limit
        c = table.c
        # Oldest due first, ties by id (FIFO); an owner with priorities passes its own.
        self.order_by = list(order_by) if order_by is not None else [c.next_attempt_at, c.id]

    def due(self, when: datetime) -> Any:
        """Claimable now: pending and due, or claimed with an expired lease (its holder stalled)."""
        c = self.table.c
        return sa.or_(sa.and_(c.state == "pending", c.next_attempt_at <= when),
                      sa.and_(c.state == "claimed", c.lease_until < when))

    def claim(self, claimant: str, lease: float, *, limit: int = 1, where: Iterable[Any] = (),
              when: datetime | None = None, **values: Any) -> list[Any]:
        """Lease up to ``limit`` due rows (``where`` narrows them) to ``claimant``; the rows
        as claimed, by id. SKIP LOCKED lets two claimants on PostgreSQL take different rows."""
        t, when = self.table, when or now()
        with self.index._connect(write=True) as conn:
            ids = conn.execute(sa.select(t.c.id).where(self.due(when), *where).order_by(*self.order_by)
                               .limit(limit).with_for_update(skip_locked=True)).scalars().all()
            if not ids:
                return []
            conn.execute(sa.update(t).where(t.c.id.in_(ids)).values(
                state="claimed", claimed_by=claimant, lease_until=when + timedelta(seconds=lease),
                updated_at=when, **values))
            return conn.execute(sa.select(t).where(t.c.id.in_(ids)).order_by(t.c.id)).all()

    def next_due(self, *where: Any) -> datetime | None:
        t = self.table
        with self.index._connect(write=False) as conn:
            return conn.execute(sa.select(sa.func.min(t.c.next_attempt_at))
                                .where(t.c.state == "pending", *where)).scalar()

    def renew(self, job_id: int, claimant: str, lease: float, **values: Any) -> bool:
        """Extend the lease (a heartbeat) while ``claimant`` still holds it; False when it
        does not (the lease expired and someone else took the job, or an operator dropped it)."""
        t = self.table
        with self.index._connect(write=True) as conn:
            return bool(conn.execute(sa.update(t).where(t.c.id == job_id, t.c.claimed_by == claimant,
                                                        t.c.state == "claimed")
                                     .values(lease_until=now() + timedelta(seconds=lease), **values)).rowcount)

    def finish(self, job_id: int, state: str = "done", *, count_attempt: bool = True, **values: Any) -> None:
        """End a job in ``state`` (``done``, or an owner's own final state), lease cleared."""
        t = self.table
        if count_attempt:
            values.setdefault("attempts", t.c.attempts + 1)
        with self.index._connect(write=True) as conn:
            conn.execute(sa.update(t).where(t.c.id == job_id).values(
                state=state, claimed_by=None, lease_until=None, updated_at=now(), **values))

    def fail(self, job_id: int, error: str, *, retry: bool = True, max_attempts: int = 10,
             backoff_initial: float = 5.0, backoff_max: float = 600.0, **values: Any) -> str:
        """A failed try: ``pending`` after a backoff, ``dead`` once ``max_attempts`` are used,
        ``failed`` with ``retry=False``; returns the new state (``gone`` if the row was dropped)."""
        t, when = self.table, now()
        with self.index._connect(write=True) as conn:
            attempts = conn.execute(sa.select(t.c.attempts).where(t.c.id == job_id)).scalar()
            if attempts is None:
                return "gone"
            attempts += 1
            if not retry:
                state, due = "failed", when
            elif attempts >= max_attempts:
                state, due = "dead", when
            else:
                state, due = "pending", when + timedelta(seconds=backoff_delay(attempts, backoff_initial, backoff_max))
            conn.execute(sa.update(t).where(t.c.id == job_id).values(
                state=state, attempts=attempts, next_attempt_at=due, last_error=error[:self.text_limit],
                claimed_by=None, lease_until=None, updated_at=when, **values))
        return state

    def release(self, job_id: int) -> None:
        """Give a claimed job back untried and due now (shutdown): no attempt is counted."""
        t, when = self.table, now()
        with self.index._connect(write=True) as conn:
            conn.execute(sa.update(t).where(t.c.id == job_id, t.c.state == "claimed").values(
                state="pending", claimed_by=None, lease_until=None, next_attempt_at=when, updated_at=when))

    def release_dead_claims(self) -> int:
        """Jobs claimed by processes of this host that no longer run (a killed worker)."""
        with self.index._connect(write=True) as conn:
            return release_dead_claims(conn, self.table, now())

    def list(self, *where: Any, limit: int = 1000) -> list[Any]:
        t = self.table
        with self.index._connect(write=False) as conn:
            return conn.execute(sa.select(t).where(*where).order_by(t.c.id).limit(limit)).all()

    def retry(self, ids: Iterable[int] | None = None, states: Sequence[str] = ("dead", "failed"),
              **values: Any) -> int:
        """Replay jobs in ``states`` now, attempts from zero. Each on a savepoint: a job an
        owner's unique index refuses (an active twin exists) is left as it is."""
        t, when = self.table, now()
        cond = [t.c.state.in_(list(states))]
        if ids is not None:
            cond.append(t.c.id.in_(list(ids)))
        n = 0
        with self.index._connect(write=True) as conn:
            for job_id in conn.execute(sa.select(t.c.id).where(*cond)).scalars().all():
                try:
                    with conn.begin_nested():
                        n += conn.execute(sa.update(t).where(t.c.id == job_id).values(
                            state="pending", attempts=0, next_attempt_at=when, updated_at=when, **values)).rowcount
                except sa.exc.IntegrityError:
                    continue
        return n

    def drop(self, ids: Iterable[int] | None = None,
             states: Sequence[str] = ("pending", "done", "failed", "dead")) -> int:
        """Delete jobs, never a claimed one (a worker is using it)."""
        t = self.table
        cond = [t.c.state.in_([s for s in states if s != "claimed"])]
        if ids is not None:
            cond.append(t.c.id.in_(list(ids)))
        with self.index._connect(write=True) as conn:
            return conn.execute(sa.delete(t).where(*cond)).rowcount
