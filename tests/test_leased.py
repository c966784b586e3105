"""The leased job table core (gateway.index.leased.LeasedJobs) on SQLite and PostgreSQL,
on a table of its own with the lease columns: claim order (default and an owner's),
lease expiry and renewal, a dead claimant's job released, backoff, dead letter after
max attempts, retry and drop."""

from __future__ import annotations

import socket
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table

from gateway.index import Index
from gateway.index.leased import LeasedJobs, now

md = MetaData()
jobs = Table(
    "leased_test_jobs", md,
    Column("id", Integer, primary_key=True),
    Column("rank", Integer, nullable=False),
    Column("state", String, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("claimed_by", String),
    Column("lease_until", DateTime),
    Column("last_error", String),
    Column("updated_at", DateTime, nullable=False),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def index(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'index.db'}"
    else:
        import psycopg

        base = request.getfixturevalue("pg_server")
        name = "l_" + uuid.uuid4().hex[:12]
        with psycopg.connect(base.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        url = f"{base}/{name}"
    idx = Index(url)
    with idx._connect(write=True) as conn:
        md.create_all(conn)
    yield idx
    idx.close()


def add(index, n: int, *, rank: int = 0, delay: float = 0.0) -> list[int]:
    when = now() + timedelta(seconds=delay)
    with index._connect(write=True) as conn:
        return [conn.execute(sa.insert(jobs).values(rank=rank, state="pending", attempts=0, next_attempt_at=when,
                                                    updated_at=when).returning(jobs.c.id)).scalar()
                for _ in range(n)]


def states(q: LeasedJobs) -> dict[int, str]:
    return {r.id: r.state for r in q.list()}


def test_claim_oldest_first_and_only_due(index):
    q = LeasedJobs(index, jobs)
    first = add(index, 2, delay=-10)
    add(index, 1, delay=3600)
    got = q.claim("me", 60, limit=5)
    assert [r.id for r in got] == first and {r.state for r in got} == {"claimed"}
    assert q.claim("me", 60) == []                      # the future job is not due, claimed ones are held
    assert q.next_due() is not None


def test_owner_ordering_and_where(index):
    q = LeasedJobs(index, jobs, order_by=[jobs.c.rank, jobs.c.id])
    low = add(index, 1, rank=2)
    high = add(index, 1, rank=0)
    assert [r.id for r in q.claim("me", 60)] == high
    assert q.claim("me", 60, where=[jobs.c.rank == 5]) == []
    assert [r.id for r in q.claim("me", 60)] == low


def test_lease_expiry_and_renewal(index):
    q = LeasedJobs(index, jobs)
    (job,) = add(index, 1)
    q.claim("a", 60)
    assert q.claim("b", 60, when=now() + timedelta(seconds=30)) == []
    assert q.renew(job, "a", 120)
    assert q.claim("b", 60, when=now() + timedelta(seconds=90)) == []       # renewed past 60 s
    taken = q.claim("b", 60, when=now() + timedelta(seconds=200))           # a stalled: its lease expired
    assert [r.claimed_by for r in taken] == ["b"]
    assert not q.renew(job, "a", 60)                                         # a lost it


def test_dead_claimant_released(index):
    q = LeasedJobs(index, jobs)
    (job,) = add(index, 1)
    q.claim(f"{socket.gethostname()}:999999999", 3600)                      # no such pid
    (mine,) = add(index, 1)
    from gateway.index.queue import worker_id

    q.claim(worker_id(), 3600)                                              # this process: alive
    assert q.release_dead_claims() == 1
    assert states(q) == {job: "pending", mine: "claimed"}


def test_backoff_then_dead_letter(index):
    q = LeasedJobs(index, jobs)
    (job,) = add(index, 1)
    q.claim("me", 60)
    before = now()
    assert q.fail(job, "refused", max_attempts=3, backoff_initial=10, backoff_max=100) == "pending"
    row = q.list()[0]
    assert row.attempts == 1 and row.claimed_by is None and row.last_error == "refused"
    assert before + timedelta(seconds=4.9) <= row.next_attempt_at <= now() + timedelta(seconds=10.1)
    assert q.claim("me", 60) == []                                           # backing off
    q.claim("me", 60, when=now() + timedelta(seconds=11))
    assert q.fail(job, "again", max_attempts=3) == "pending"
    q.claim("me", 60, when=now() + timedelta(seconds=3600))
    assert q.fail(job, "x" * 2000, max_attempts=3) == "dead"
    row = q.list()[0]
    assert row.attempts == 3 and len(row.last_error) == 500
    assert q.fail(10**6, "gone") == "gone"


def test_failed_finish_release(index):
    q = LeasedJobs(index, jobs)
    a, b, c = add(index, 3)
    q.claim("me", 60, limit=3)
    assert q.fail(a, "bad config", retry=False) == "failed"
    q.finish(b)
    q.release(c)
    rows = {r.id: r for r in q.list()}
    assert {i: r.state for i, r in rows.items()} == {a: "failed", b: "done", c: "pending"}
    assert rows[b].attempts == 1 and rows[c].attempts == 0 and rows[c].claimed_by is None


def test_retry_and_drop(index):
    q = LeasedJobs(index, jobs)
    a, b, c = add(index, 3)
    q.claim("me", 60, limit=3)
    q.fail(a, "x", max_attempts=1)
    q.fail(b, "x", retry=False)
    assert q.retry([a]) == 1
    assert states(q) == {a: "pending", b: "failed", c: "claimed"}
    assert q.list(jobs.c.id == a)[0].attempts == 0
    assert q.retry() == 1                                                    # b
    assert q.drop() == 2                                                     # never the claimed c
    assert states(q) == {c: "claimed"}
    assert q.drop([c], states=("claimed",)) == 0
