"""The print queue (PRN-7): persistent print jobs in a table of the print plugin's own
in the index (its own ``MetaData``, created on first use like the prefetch queue's).

A job names its printer, a priority (HIGH, MED, LOW; worked off in that order, then
first in, first out), what to print (``source``: files, stored studies/series, or the
instances a ``print`` rule collected in ``print_job_items``) and how (``options``:
format, film size, orientation, copies). States:

* ``collecting`` — a ``print`` rule's job for one series, gathering its instances
  (inserted inside the storage transaction) until the series is complete;
* ``pending`` — waiting for its printer (``next_attempt_at``: after a failed try, the backoff);
* ``claimed`` — being printed by the worker named in ``claimed_by`` (``host:pid``, leased;
  :func:`gateway.index.queue.release_dead_claims` frees a killed process's claims);
* ``done``, ``failed`` (every try failed, or it can never print as asked), ``cancelled``.

A cancel of a claimed job sets ``cancel_requested``; the printing worker stops before
its next film box or N-ACTION and the job becomes ``cancelled`` (``result`` says how
many films were printed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy import Boolean, Column, DateTime, ForeignKey, Integer, MetaData, String, Table

from gateway_plugins.prefetch_queue import now, worker_id
from gateway_plugins.print_config import PRIORITIES

__all__ = ["print_jobs", "print_job_items", "PrintJob", "PrintQueue", "ensure_table", "insert_job",
           "collect_instance", "STATES", "TERMINAL", "worker_id"]

STATES = ("collecting", "pending", "claimed", "done", "failed", "cancelled")
TERMINAL = ("done", "failed", "cancelled")

metadata = MetaData()

print_jobs = Table(
    "print_jobs", metadata,
    Column("id", Integer, primary_key=True),
    Column("printer", String, nullable=False),
    Column("priority", String, nullable=False),              # HIGH | MED | LOW
    Column("rank", Integer, nullable=False),                 # 0 | 1 | 2: the queue's order
    Column("state", String, nullable=False),
    Column("source", String, nullable=False),                # JSON: {"files": […]} | {"studies", "series"} | {"collected": true}
    Column("options", String, nullable=False),               # JSON: format, film, orientation, copies
    Column("rule", String),                                  # the routing rule that queued it
    Column("series_instance_uid", String),                   # a rule's job: the series it collects
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime, nullable=False),     # naive UTC
    Column("claimed_by", String),
    Column("lease_until", DateTime),
    Column("cancel_requested", Boolean, nullable=False),
    Column("last_error", String),
    Column("result", String),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("started_at", DateTime),
    Column("done_at", DateTime),
)
J = print_jobs
_collecting = J.c.state == "collecting"
# One collecting job per (rule, printer, series): instances of the series are appended to it.
sa.Index("uq_print_jobs_collecting", J.c.rule, J.c.printer, J.c.series_instance_uid, unique=True,
         sqlite_where=_collecting, postgresql_where=_collecting)
sa.Index("ix_print_jobs_due", J.c.printer, J.c.state, J.c.rank, J.c.id)

print_job_items = Table(
    "print_job_items", metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", Integer, ForeignKey("print_jobs.id", ondelete="CASCADE"), nullable=False),
    Column("sop_instance_uid", String, nullable=False),
    sa.UniqueConstraint("job_id", "sop_instance_uid", name="uq_print_job_items"),
)
I = print_job_items

_created: set[str] = set()


def ensure_table(conn: sa.Connection) -> None:
    """Both tables on ``conn``, inside its transaction, checked once per database and process."""
    if str(conn.engine.url) not in _created:
        metadata.create_all(conn, checkfirst=True)
        _created.add(str(conn.engine.url))


def _insert(conn: sa.Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def insert_job(conn: sa.Connection, *, printer: str, priority: str, source: dict[str, Any], options: dict[str, Any],
               state: str = "pending", claimed_by: str | None = None, lease: float = 0.0,
               rule: str | None = None, series: str | None = None) -> int:
    """A new job; ``claimed_by`` inserts it claimed already (the command that prints it
    itself, so no serving gateway takes it first). Returns its id."""
    when = now()
    row = conn.execute(sa.insert(J).values(
        printer=printer, priority=priority, rank=PRIORITIES.index(priority), state=state,
        source=json.dumps(source, sort_keys=True), options=json.dumps(options, sort_keys=True), rule=rule,
        series_instance_uid=series, attempts=0, next_attempt_at=when, claimed_by=claimed_by,
        lease_until=when + timedelta(seconds=lease) if claimed_by else None, cancel_requested=False,
        created_at=when, updated_at=when, started_at=when if claimed_by else None).returning(J.c.id))
    return int(row.scalar_one())


def collect_instance(conn: sa.Connection, *, rule: str, printer: str, priority: str, options: dict[str, Any],
                     series: str, sop_instance_uid: str) -> int:
    """Inside the store's transaction: the instance joins its series' collecting job for
    (rule, printer), made when it is the first. Returns the job's id."""
    ensure_table(conn)
    when = now()
    ins = _insert(conn)
    conn.execute(ins(J).values(
        printer=printer, priority=priority, rank=PRIORITIES.index(priority), state="collecting",
        source=json.dumps({"collected": True}), options=json.dumps(options, sort_keys=True), rule=rule,
        series_instance_uid=series, attempts=0, next_attempt_at=when, cancel_requested=False,
        created_at=when, updated_at=when).on_conflict_do_nothing())
    job_id = conn.execute(sa.select(J.c.id).where(J.c.rule == rule, J.c.printer == printer,
                                                  J.c.series_instance_uid == series, _collecting)).scalar_one()
    conn.execute(ins(I).values(job_id=job_id, sop_instance_uid=sop_instance_uid).on_conflict_do_nothing())
    conn.execute(sa.update(J).where(J.c.id == job_id).values(updated_at=when))
    return job_id


@dataclass(frozen=True)
class PrintJob:
    id: int
    printer: str
    priority: str
    state: str
    source: dict[str, Any]
    options: dict[str, Any]
    rule: str | None
    series_instance_uid: str | None
    attempts: int
    next_attempt_at: datetime
    claimed_by: str | None
    cancel_requested: bool
    last_error: str | None
    result: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    done_at: datetime | None

    @property
    def shown_state(self) -> str:
        """``cancelling`` for a claimed job asked to stop (it will at its next step)."""
        return "cancelling" if self.state == "claimed" and self.cancel_requested else self.state

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k, v in out.items():
            if isinstance(v, datetime):
                out[k] = v.replace(tzinfo=timezone.utc).isoformat()
        out["state"] = self.shown_state
        out["created"], out["error"] = out["created_at"], self.last_error
        return out


def _job(r: Any) -> PrintJob:
    return PrintJob(r.id, r.printer, r.priority, r.state, json.loads(r.source), json.loads(r.options), r.rule,
                    r.series_instance_uid, r.attempts, r.next_attempt_at, r.claimed_by, bool(r.cancel_requested),
                    r.last_error, r.result, r.created_at, r.updated_at, r.started_at, r.done_at)


def _due(when: datetime) -> Any:
    return sa.or_(sa.and_(J.c.state == "pending", J.c.next_attempt_at <= when),
                  sa.and_(J.c.state == "claimed", J.c.lease_until < when))


class PrintQueue:
    """Operations on the jobs, each its own short transaction on an :class:`gateway.index.Index`."""

    def __init__(self, index: Any) -> None:
        self.index = index

    def ensure(self) -> None:
        with self.index._connect(write=True) as conn:
            ensure_table(conn)

    def exists(self) -> bool:
        return sa.inspect(self.index.engine).has_table("print_jobs")

    def add(self, **kw: Any) -> int:
        """:func:`insert_job` in a transaction of its own."""
        with self.index._connect(write=True) as conn:
            ensure_table(conn)
            return insert_job(conn, **kw)

    # ---- the workers ---------------------------------------------------------------

    def due_printers(self) -> set[str]:
        with self.index._connect(write=False) as conn:
            return set(conn.execute(sa.select(J.c.printer).where(_due(now())).distinct()).scalars())

    def claim(self, printer: str, claimant: str, lease: float) -> PrintJob | None:
        """The printer's next job: HIGH before MED before LOW, then the oldest; leased to ``claimant``."""
        when = now()
        with self.index._connect(write=True) as conn:
            job_id = conn.execute(sa.select(J.c.id).where(J.c.printer == printer, _due(when))
                                  .order_by(J.c.rank, J.c.id).limit(1).with_for_update(skip_locked=True)).scalar()
            if job_id is None:
                return None
            conn.execute(sa.update(J).where(J.c.id == job_id).values(
                state="claimed", claimed_by=claimant, lease_until=when + timedelta(seconds=lease),
                updated_at=when, started_at=when))
            return _job(conn.execute(sa.select(J).where(J.c.id == job_id)).one())

    def claim_id(self, job_id: int, claimant: str, lease: float) -> PrintJob | None:
        """Job ``job_id`` if it is due (the command retrying its own job); None when someone else has it."""
        when = now()
        with self.index._connect(write=True) as conn:
            n = conn.execute(sa.update(J).where(J.c.id == job_id, _due(when)).values(
                state="claimed", claimed_by=claimant, lease_until=when + timedelta(seconds=lease),
                updated_at=when, started_at=when)).rowcount
            return _job(conn.execute(sa.select(J).where(J.c.id == job_id)).one()) if n else None

    def get(self, job_id: int) -> PrintJob | None:
        with self.index._connect(write=False) as conn:
            row = conn.execute(sa.select(J).where(J.c.id == job_id)).first()
        return _job(row) if row is not None else None

    def items(self, job_id: int) -> list[str]:
        with self.index._connect(write=False) as conn:
            return list(conn.execute(sa.select(I.c.sop_instance_uid).where(I.c.job_id == job_id)
                                     .order_by(I.c.id)).scalars())

    def cancel_requested(self, job_id: int, claimant: str, lease: float) -> bool:
        """Asked by the printing worker before each step; also renews its lease."""
        with self.index._connect(write=True) as conn:
            conn.execute(sa.update(J).where(J.c.id == job_id, J.c.claimed_by == claimant, J.c.state == "claimed")
                         .values(lease_until=now() + timedelta(seconds=lease)))
            return bool(conn.execute(sa.select(J.c.cancel_requested).where(J.c.id == job_id)).scalar())

    def _finish(self, job_id: int, **values: Any) -> None:
        when = now()
        with self.index._connect(write=True) as conn:
            conn.execute(sa.update(J).where(J.c.id == job_id).values(
                claimed_by=None, lease_until=None, updated_at=when, **values))

    def done(self, job_id: int, result: str) -> None:
        self._finish(job_id, state="done", result=result[:500], attempts=J.c.attempts + 1, done_at=now())

    def cancelled(self, job_id: int, result: str) -> None:
        self._finish(job_id, state="cancelled", result=result[:500], done_at=now())

    def fail(self, job_id: int, error: str, *, retries: int, backoff: float, retry: bool = True) -> str:
        """A failed try: ``pending`` again after a backoff while tries are left (``retries``
        after the first), else ``failed``; ``retry=False``: it can never print as asked."""
        from gateway.index.queue import backoff_delay

        when = now()
        with self.index._connect(write=True) as conn:
            attempts = conn.execute(sa.select(J.c.attempts).where(J.c.id == job_id)).scalar()
            if attempts is None:
                return "gone"
            attempts += 1
            if retry and attempts <= retries:
                state, due = "pending", when + timedelta(seconds=backoff_delay(attempts, backoff, 300.0))
            else:
                state, due = "failed", when
            conn.execute(sa.update(J).where(J.c.id == job_id).values(
                state=state, attempts=attempts, next_attempt_at=due, last_error=error[:500], claimed_by=None,
                lease_until=None, updated_at=when, done_at=when if state == "failed" else None))
        return state

    def release(self, job_id: int) -> None:
        """Give a claimed job back untried (shutdown before it started)."""
        when = now()
        with self.index._connect(write=True) as conn:
            conn.execute(sa.update(J).where(J.c.id == job_id, J.c.state == "claimed").values(
                state="pending", claimed_by=None, lease_until=None, next_attempt_at=when, updated_at=when))

    def release_dead_claims(self) -> int:
        """Jobs claimed by processes of this host that no longer run (a killed sender or command)."""
        from gateway.index.queue import release_dead_claims

        with self.index._connect(write=True) as conn:
            return release_dead_claims(conn, J, now())

    def promote(self, series_uid: str | None = None) -> int:
        """Collecting jobs of ``series_uid`` (its ``gateway_series_complete``) join the queue; with
        no UID, those of every series the index marks complete (an event missed while the sender
        restarted)."""
        from gateway.index import schema as S

        A = S.series_activity
        when = now()
        if series_uid is not None:
            cond = J.c.series_instance_uid == series_uid
        else:
            cond = J.c.series_instance_uid.in_(sa.select(A.c.series_instance_uid).where(A.c.completed_at.isnot(None)))
        # Asked every manager round: decide in a read, so the write lock the storage
        # service needs is taken only when a job is due (as the forward queue does).
        with self.index._connect(write=False) as conn:
            ids = list(conn.execute(sa.select(J.c.id).where(_collecting, cond)).scalars())
        if not ids:
            return 0
        with self.index._connect(write=True) as conn:
            return conn.execute(sa.update(J).where(J.c.id.in_(ids), _collecting, cond).values(
                state="pending", next_attempt_at=when, updated_at=when)).rowcount

    # ---- operators (dicom-gateway print ls|cancel) ------------------------------------

    def list(self, *, state: str | None = None, printer: str | None = None, limit: int = 1000) -> list[PrintJob]:
        cond = []
        if state == "cancelling":
            cond += [J.c.state == "claimed", J.c.cancel_requested.is_(True)]
        elif state:
            cond.append(J.c.state == state)
        if printer:
            cond.append(J.c.printer == printer)
        with self.index._connect(write=False) as conn:
            rows = conn.execute(sa.select(J).where(*cond).order_by(J.c.id).limit(limit)).all()
        return [_job(r) for r in rows]

    def cancel(self, ids: Iterable[int]) -> dict[int, str]:
        """Cancel jobs: a waiting one at once, a printing one at its next step. Returns what
        became of each id: cancelled, cancelling, or why not (already done, no such job)."""
        out: dict[int, str] = {}
        when = now()
        with self.index._connect(write=True) as conn:
            for job_id in ids:
                state = conn.execute(sa.select(J.c.state).where(J.c.id == job_id)).scalar()
                if state is None:
                    out[job_id] = "no such job"
                elif state in ("pending", "collecting"):
                    conn.execute(sa.update(J).where(J.c.id == job_id).values(
                        state="cancelled", result="cancelled before printing", updated_at=when, done_at=when))
                    out[job_id] = "cancelled"
                elif state == "claimed":
                    conn.execute(sa.update(J).where(J.c.id == job_id).values(cancel_requested=True, updated_at=when))
                    out[job_id] = "cancelling (stops before its next film box or N-ACTION)"
                else:
                    out[job_id] = f"already {state}"
        return out
