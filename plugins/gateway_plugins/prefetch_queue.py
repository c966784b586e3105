"""The durable prefetch job queue: a table of the prefetch plugin's own in the index.

Two kinds of job, both leased, retried with backoff and dead-lettered like
forward jobs (:mod:`gateway.index.queue`):

* ``query`` — one per (archive, new study): ask the archive for the patient's
  other studies, filter them, and queue a ``pull`` for each one to fetch. It is
  written by the ``prefetch`` rule action **inside the storage service's index
  transaction**, with the first instance of a study the index did not have (a
  transactional outbox: acknowledged → the job exists);
* ``pull`` — one per (archive, prior study): C-MOVE (or C-GET) it home, check
  that it arrived, then queue forward jobs to the rule's ``forward_to``.

A partial unique index on (kind, remote, study) over the *active* states
(pending, claimed) means a study is never queried or pulled twice at once; the
inserts are ``ON CONFLICT DO NOTHING``. The table lives in its own
``MetaData`` (never the core's tables) and is created on first use, on the
connection that writes it (``create_all(checkfirst=True)``; DDL is
transactional in SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table

from gateway.index.leased import LeasedJobs, now

__all__ = ["metadata", "prefetch_jobs", "PrefetchJob", "PrefetchQueue", "ensure_table", "insert_job",
           "STATES", "ACTIVE"]

STATES = ("pending", "claimed", "done", "failed", "dead")
ACTIVE = ("pending", "claimed")

metadata = MetaData()

prefetch_jobs = Table(
    "prefetch_jobs", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String, nullable=False),                 # query | pull
    Column("rule", String, nullable=False),
    Column("remote", String, nullable=False),               # the archive: a remote's name or AET@host:port
    Column("patient_id", String, nullable=False),
    Column("study_instance_uid", String, nullable=False),   # query: the new study; pull: the prior
    Column("trigger_study_uid", String, nullable=False),    # the new study that asked for it
    Column("state", String, nullable=False),
    Column("options", String, nullable=False),              # JSON: the rule's settings when it was queued
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime, nullable=False),    # naive UTC
    Column("claimed_by", String),
    Column("lease_until", DateTime),
    Column("last_status", Integer),
    Column("last_error", String),
    Column("result", String),                               # what the last try did, for `prefetch ls`
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("done_at", DateTime),
)
J = prefetch_jobs
_active = J.c.state.in_(ACTIVE)
sa.Index("uq_prefetch_jobs_active", J.c.kind, J.c.remote, J.c.study_instance_uid, unique=True,
         sqlite_where=_active, postgresql_where=_active)
sa.Index("ix_prefetch_jobs_study", J.c.study_instance_uid)
sa.Index("ix_prefetch_jobs_trigger", J.c.trigger_study_uid)
sa.Index("ix_prefetch_jobs_due", J.c.state, J.c.next_attempt_at)

_created: set[str] = set()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def ensure_table(conn: sa.Connection) -> None:
    """Create the table on ``conn`` (inside its transaction) once per database and process."""
    key = str(conn.engine.url)
    if key in _created:
        return
    metadata.create_all(conn, checkfirst=True)
    _created.add(key)


def table_exists(engine: sa.Engine) -> bool:
    return sa.inspect(engine).has_table("prefetch_jobs")


def insert_job(conn: sa.Connection, *, kind: str, rule: str, remote: str, patient_id: str, study_uid: str,
               trigger_study_uid: str, options: dict[str, Any], when: datetime | None = None) -> bool:
    """Queue a job unless one of its kind is active for (remote, study); True when inserted."""
    when = when or now()
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(J).values(kind=kind, rule=rule, remote=remote, patient_id=patient_id,
                            study_instance_uid=study_uid, trigger_study_uid=trigger_study_uid, state="pending",
                            options=json.dumps(options, sort_keys=True), attempts=0, next_attempt_at=when,
                            created_at=when, updated_at=when).on_conflict_do_nothing()
    return bool(conn.execute(stmt).rowcount)


@dataclass(frozen=True)
class PrefetchJob:
    id: int
    kind: str
    rule: str
    remote: str
    patient_id: str
    study_instance_uid: str
    trigger_study_uid: str
    state: str
    options: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    claimed_by: str | None
    last_status: int | None
    last_error: str | None
    result: str | None
    created_at: datetime
    updated_at: datetime
    done_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k, v in out.items():
            if isinstance(v, datetime):
                out[k] = v.replace(tzinfo=timezone.utc).isoformat()
        return out


def _job(r: Any) -> PrefetchJob:
    return PrefetchJob(r.id, r.kind, r.rule, r.remote, r.patient_id, r.study_instance_uid, r.trigger_study_uid,
                       r.state, json.loads(r.options or "{}"), r.attempts, r.next_attempt_at, r.claimed_by,
                       r.last_status, r.last_error, r.result, r.created_at, r.updated_at, r.done_at)


class PrefetchQueue:
    """Operations on the jobs, each its own short transaction on an :class:`gateway.index.Index`."""

    def __init__(self, index: Any) -> None:
        self.index = index
        self.jobs = LeasedJobs(index, J)

    def ensure(self) -> None:
        with self.index._connect(write=True) as conn:
            ensure_table(conn)

    def exists(self) -> bool:
        return table_exists(self.index.engine)

    # ---- the worker: the lease operations are the core's (gateway.index.leased) ------------

    def claim(self, claimant: str, lease: float, limit: int = 1, when: datetime | None = None) -> list[PrefetchJob]:
        """The oldest due jobs (queries before pulls of the same age), leased to ``claimant``."""
        return [_job(r) for r in self.jobs.claim(claimant, lease, limit=limit, when=when)]

    def next_due(self) -> datetime | None:
        return self.jobs.next_due()

    def extend(self, job_id: int, claimant: str, lease: float) -> None:
        self.jobs.renew(job_id, claimant, lease)

    def done(self, job_id: int, result: str, status: int | None = None) -> None:
        self.jobs.finish(job_id, result=result[:500], last_status=status, done_at=now())

    def fail(self, job_id: int, error: str, *, status: int | None = None, retry: bool = True,
             max_attempts: int = 10, backoff_initial: float = 5.0, backoff_max: float = 600.0) -> str:
        """A failed try: ``pending`` after a backoff, ``dead`` after ``max_attempts``, or
        ``failed`` (``retry=False``: it can never work as configured)."""
        return self.jobs.fail(job_id, error, retry=retry, max_attempts=max_attempts, backoff_initial=backoff_initial,
                              backoff_max=backoff_max, last_status=status)

    def release(self, job_id: int) -> None:
        """Give a claimed job back untried (shutdown)."""
        self.jobs.release(job_id)

    def release_dead_claims(self) -> int:
        """Jobs claimed by processes of this host that no longer run (a killed sender)."""
        return self.jobs.release_dead_claims()

    def queue_pull(self, job: PrefetchJob, study_uid: str) -> bool:
        """A pull of ``study_uid`` from the query job's archive, unless one is active for it anywhere."""
        with self.index._connect(write=True) as conn:
            busy = conn.execute(sa.select(J.c.id).where(J.c.kind == "pull", J.c.study_instance_uid == study_uid,
                                                        _active).limit(1)).first()
            if busy is not None:
                return False
            return insert_job(conn, kind="pull", rule=job.rule, remote=job.remote, patient_id=job.patient_id,
                              study_uid=study_uid, trigger_study_uid=job.trigger_study_uid, options=job.options)

    # ---- operators (dicom-gateway prefetch) -----------------------------------------------

    def list(self, *, state: str | None = None, kind: str | None = None, study: str | None = None,
             limit: int = 1000) -> list[PrefetchJob]:
        cond = []
        if state:
            cond.append(J.c.state == state)
        if kind:
            cond.append(J.c.kind == kind)
        if study:
            cond.append(sa.or_(J.c.study_instance_uid == study, J.c.trigger_study_uid == study))
        return [_job(r) for r in self.jobs.list(*cond, limit=limit)]

    def retry(self, ids: Iterable[int] | None = None, states: tuple[str, ...] = ("dead", "failed")) -> int:
        """Replay dead or failed jobs now, attempts from zero. A job whose (remote, study) has
        an active one already is left as it is."""
        return self.jobs.retry(ids, states)

    def drop(self, ids: Iterable[int] | None = None, states: tuple[str, ...] = ("pending", "done", "failed", "dead")) -> int:
        """Delete jobs (never a claimed one: the worker is using it)."""
        return self.jobs.drop(ids, states)
