"""Durable media export jobs: a table of the media plugin's own in the index database.

A job exports one selection — a rule's study, or what ``media export --queue``
named — to a target through a media driver. Jobs are leased, retried with
exponential backoff and jitter and dead-lettered after ``max_attempts``, like
forward and prefetch jobs; the lease columns are the forward queue's, so
:func:`gateway.index.queue.release_dead_claims` frees the claims of a killed
sender.

A rule's job is written by the ``media`` rule action **inside the storage
service's transaction** with one UPSERT: the study's ``pending`` job of that
rule (a partial unique index allows one) has its due time pushed to "now +
quiet" and its arrivals counted; when there is none — the study's first
instance, or one arriving while its export runs or after it ran — a new job is
inserted, which exports the whole study again (docs/media.md, "Export rules").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table

from gateway.index.leased import LeasedJobs, now

__all__ = ["media_jobs", "MediaJob", "MediaQueue", "ensure_table", "table_exists", "record_arrival",
           "insert_command_job", "STATES"]

STATES = ("pending", "claimed", "done", "failed", "dead")

metadata = MetaData()

media_jobs = Table(
    "media_jobs", metadata,
    Column("id", Integer, primary_key=True),
    Column("rule", String),                   # the routing rule; NULL: queued by `media export --queue`
    Column("study_instance_uid", String),     # a rule's job: its study
    Column("selection", String, nullable=False),  # JSON {"studies": [], "series": [], "patients": []}
    Column("target", String, nullable=False),     # as configured: a path pattern (rule) or a folder (command)
    Column("written_to", String),             # the target resolved by the last try
    Column("options", String, nullable=False),    # JSON: driver, capacity, split
    Column("state", String, nullable=False),
    Column("arrivals", Integer, nullable=False),  # instances that (re)scheduled it
    Column("written", Integer, nullable=False),   # progress: objects written by the current or last try
    Column("total", Integer),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime, nullable=False),  # naive UTC; for a rule's job: last arrival + quiet
    Column("claimed_by", String),
    Column("lease_until", DateTime),
    Column("last_error", String),
    Column("result", String),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("done_at", DateTime),
)
J = media_jobs
_PENDING = J.c.state == "pending"
sa.Index("uq_media_jobs_pending", J.c.rule, J.c.study_instance_uid, unique=True,
         sqlite_where=_PENDING, postgresql_where=_PENDING)
sa.Index("ix_media_jobs_due", J.c.state, J.c.next_attempt_at)

_created: set[str] = set()


def ensure_table(conn: sa.Connection) -> None:
    """Create the table on ``conn`` (inside its transaction) once per database and process."""
    key = str(conn.engine.url)
    if key not in _created:
        metadata.create_all(conn, checkfirst=True)
        _created.add(key)


def table_exists(engine: sa.Engine) -> bool:
    return sa.inspect(engine).has_table("media_jobs")


def _insert(conn: sa.Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(J)


def _row(*, rule: str | None, study: str | None, selection: dict, target: str, options: dict,
         due: datetime, when: datetime) -> dict[str, Any]:
    return dict(rule=rule, study_instance_uid=study, selection=json.dumps(selection, sort_keys=True), target=target,
                options=json.dumps(options, sort_keys=True), state="pending", arrivals=1, written=0, attempts=0,
                next_attempt_at=due, created_at=when, updated_at=when)


def record_arrival(conn: sa.Connection, *, rule: str, study_uid: str, target: str, options: dict,
                   quiet: float) -> None:
    """One UPSERT, inside the store's transaction: the study's pending job of ``rule``
    becomes due ``quiet`` seconds from now, or a new one is queued."""
    when = now()
    stmt = _insert(conn).values(**_row(rule=rule, study=study_uid, selection={"studies": [study_uid]},
                                       target=target, options=options, due=when + timedelta(seconds=quiet),
                                       when=when))
    conn.execute(stmt.on_conflict_do_update(
        index_elements=[J.c.rule, J.c.study_instance_uid], index_where=_PENDING,
        set_=dict(next_attempt_at=stmt.excluded.next_attempt_at, arrivals=J.c.arrivals + 1,
                  target=stmt.excluded.target, options=stmt.excluded.options, updated_at=when)))


def insert_command_job(conn: sa.Connection, *, selection: dict, target: str, options: dict) -> int:
    """A job of ``media export --queue``, due now; returns its id."""
    when = now()
    return conn.execute(sa.insert(J).values(**_row(rule=None, study=None, selection=selection, target=target,
                                                   options=options, due=when, when=when))
                        .returning(J.c.id)).scalar_one()


@dataclass(frozen=True)
class MediaJob:
    id: int
    rule: str | None
    study_instance_uid: str | None
    selection: dict[str, list[str]]
    target: str
    written_to: str | None
    options: dict[str, Any]
    state: str
    arrivals: int
    written: int
    total: int | None
    attempts: int
    next_attempt_at: datetime
    claimed_by: str | None
    last_error: str | None
    result: str | None
    created_at: datetime
    updated_at: datetime
    done_at: datetime | None

    @property
    def what(self) -> str:
        """The study, or the command's selection in a few words."""
        if self.study_instance_uid:
            return self.study_instance_uid
        one = {"studies": "study", "patients": "patient", "series": "series"}
        return "; ".join(f"{one.get(k, k) if len(v) == 1 else k} {', '.join(v)}"
                         for k, v in self.selection.items() if v)

    @property
    def progress(self) -> str:
        return f"{self.written}/{self.total}" if self.total is not None else "-"

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k, v in out.items():
            if isinstance(v, datetime):
                out[k] = v.replace(tzinfo=timezone.utc).isoformat()
        out.update(study=self.what, progress=self.progress, error=self.last_error,
                   driver=self.options.get("driver", "folder"))
        return out


def _job(r: Any) -> MediaJob:
    return MediaJob(r.id, r.rule, r.study_instance_uid, json.loads(r.selection), r.target, r.written_to,
                    json.loads(r.options or "{}"), r.state, r.arrivals, r.written, r.total, r.attempts,
                    r.next_attempt_at, r.claimed_by, r.last_error, r.result, r.created_at, r.updated_at, r.done_at)


class MediaQueue:
    """Operations on the jobs, each its own short transaction on an :class:`gateway.index.Index`."""

    def __init__(self, index: Any) -> None:
        self.index = index
        # Media keeps longer errors than the core's default: a volume's verification
        # failure names the file and what differed.
        self.jobs = LeasedJobs(index, J, text_limit=1000)

    def ensure(self) -> None:
        with self.index._connect(write=True) as conn:
            ensure_table(conn)

    def exists(self) -> bool:
        return table_exists(self.index.engine)

    def _update(self, job_id: int, *cond: Any, **values: Any) -> int:
        with self.index._connect(write=True) as conn:
            return conn.execute(sa.update(J).where(J.c.id == job_id, *cond)
                                .values(updated_at=now(), **values)).rowcount

    # ---- the worker ------------------------------------------------------------------

    def claim(self, claimant: str, lease: float) -> MediaJob | None:
        """The oldest due job (a pending one past its due time, or one whose lease ran out)."""
        rows = self.jobs.claim(claimant, lease)
        return _job(rows[0]) if rows else None

    def next_due(self) -> datetime | None:
        return self.jobs.next_due()

    def owners_of(self, target: str) -> list[MediaJob]:
        """Jobs whose tries wrote to ``target`` (who may replace what is there)."""
        with self.index._connect(write=False) as conn:
            return [_job(r) for r in conn.execute(sa.select(J).where(J.c.written_to == target)).all()]

    def start(self, job_id: int, claimant: str, written_to: str, total: int) -> None:
        self._update(job_id, J.c.claimed_by == claimant, written_to=written_to, written=0, total=total)

    def progress(self, job_id: int, claimant: str, written: int, lease: float) -> None:
        """Objects written so far; renews the lease (a long export keeps its claim)."""
        self.jobs.renew(job_id, claimant, lease, written=written, updated_at=now())

    def done(self, job_id: int, result: str) -> None:
        self.jobs.finish(job_id, result=result[:1000], last_error=None, done_at=now())

    def fail(self, job_id: int, error: str, *, retry: bool, max_attempts: int, backoff_initial: float,
             backoff_max: float) -> str:
        """A failed try: ``pending`` after a backoff, ``dead`` after ``max_attempts``, or
        ``failed`` at once (``retry=False``: it cannot work as asked)."""
        try:
            return self.jobs.fail(job_id, error, retry=retry, max_attempts=max_attempts,
                                  backoff_initial=backoff_initial, backoff_max=backoff_max)
        except sa.exc.IntegrityError:
            # A newer arrival queued a pending job for the same study meanwhile: it
            # exports the study, so this try's job ends here.
            self._update(job_id, state="failed", attempts=J.c.attempts + 1, claimed_by=None, lease_until=None,
                         last_error=(error + "; superseded by a newer pending job of the study")[:1000])
            return "failed"

    def release(self, job_id: int) -> None:
        """Give a claimed job back untried (the sender is stopping)."""
        try:
            self.jobs.release(job_id)
        except sa.exc.IntegrityError:  # a newer pending job of the study will export it
            self._update(job_id, state="failed", claimed_by=None, lease_until=None,
                         last_error="stopped; superseded by a newer pending job of the study")

    def release_dead_claims(self) -> int:
        """Jobs claimed by processes of this host that no longer run (a killed sender)."""
        return self.jobs.release_dead_claims()

    # ---- operators (dicom-gateway media jobs) ------------------------------------------

    def list(self, *, state: str | None = None, ids: Iterable[int] | None = None, limit: int = 1000) -> list[MediaJob]:
        cond = []
        if state:
            cond.append(J.c.state == state)
        if ids is not None:
            cond.append(J.c.id.in_(list(ids)))
        return [_job(r) for r in self.jobs.list(*cond, limit=limit)]

    def retry(self, job_id: int) -> str:
        """Replay a dead or failed job now, tries from zero. Returns what happened, for the operator."""
        job = next(iter(self.list(ids=[job_id])), None)
        if job is None:
            return f"job {job_id}: no such job"
        if job.state not in ("dead", "failed"):
            return f"job {job_id}: is {job.state}, not dead or failed: left as it is"
        try:
            self._update(job_id, J.c.state.in_(("dead", "failed")), state="pending", attempts=0,
                         next_attempt_at=now(), last_error=None)
        except sa.exc.IntegrityError:
            return f"job {job_id}: the study already has a pending job of rule {job.rule!r}, which exports it"
        return ""

    def drop(self, job_id: int) -> str:
        """Delete a job (never a claimed one: the worker is using it)."""
        with self.index._connect(write=True) as conn:
            state = conn.execute(sa.select(J.c.state).where(J.c.id == job_id)).scalar()
            if state is None:
                return f"job {job_id}: no such job"
            if state == "claimed":
                return f"job {job_id}: is being exported now: left as it is"
            conn.execute(sa.delete(J).where(J.c.id == job_id))
        return ""
