"""The durable forward queue (gateway.index.queue.ForwardQueue, DESIGN §2) on SQLite and
PostgreSQL: claim order and leases, backoff with jitter, dead letter (issue 5.3),
operator retry/drop, dead claimants' jobs, series completeness (issue 5.4), and
`dicom-gateway queue ls|retry|drop`."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from gateway.index import Index
from gateway.index import schema as S
from gateway.index.queue import (ON_ASSOCIATION_END, ForwardPlan, ForwardQueue, backoff_delay, enqueue,
                                 touch_series)

ROOT = "1.2.826.0.1.3680043.10.1472.98"
CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture(params=["sqlite", "postgresql"])
def queue(request, tmp_path) -> ForwardQueue:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'index.db'}"
    else:
        import psycopg

        base = request.getfixturevalue("pg_server")
        name = "q_" + uuid.uuid4().hex[:12]
        with psycopg.connect(base.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        url = f"{base}/{name}"
    index = Index(url)
    yield ForwardQueue(index)
    index.close()


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def add(queue: ForwardQueue, n: int, destination: str = "pacs", *, priority: int = 0, state: str = "pending",
        series: str = f"{ROOT}.2.1", complete_after: float | None = None, first: int = 0) -> None:
    plans = [ForwardPlan(destination, "rule-a", priority, state, complete_after)]
    with queue.index.transaction() as tx:
        for i in range(first, first + n):
            enqueue(tx.conn, plans, sop_instance_uid=f"{ROOT}.3.{i}", sop_class_uid=CT,
                    series_instance_uid=series, study_instance_uid=f"{ROOT}.1")


def states(queue: ForwardQueue) -> dict[int, str]:
    return {j.id: j.state for j in queue.list()}


def test_claim_order_priority_then_age_and_per_destination(queue):
    add(queue, 3, "pacs")
    add(queue, 2, "pacs", priority=5, first=10)
    add(queue, 4, "other", first=20)
    assert queue.destinations_ready() == {"pacs": 5, "other": 4}
    jobs = queue.claim("pacs", "host:1", limit=3)
    # Highest priority first, then oldest (insertion order).
    assert [j.sop_instance_uid for j in jobs] == [f"{ROOT}.3.10", f"{ROOT}.3.11", f"{ROOT}.3.0"]
    assert all(j.state == "claimed" and j.claimed_by == "host:1" for j in jobs)
    assert all(j.destination == "pacs" for j in jobs)
    rest = queue.claim("pacs", "host:2", limit=10)
    assert [j.sop_instance_uid for j in rest] == [f"{ROOT}.3.1", f"{ROOT}.3.2"]
    assert queue.claim("pacs", "host:3") == []
    assert queue.destinations_ready() == {"other": 4}


def test_lease_expiry_makes_a_claim_available_again(queue):
    add(queue, 2)
    first = queue.claim("pacs", "host:1", lease=30)
    assert len(first) == 2
    assert queue.claim("pacs", "host:2", now=now() + timedelta(seconds=20)) == []
    # A sender that renews its lease keeps the jobs past the first expiry ...
    queue.extend([first[0].id], "host:1", lease=120)
    # ... and someone else's renewal does nothing.
    queue.extend([first[1].id], "host:9", lease=120)
    later = queue.claim("pacs", "host:2", now=now() + timedelta(seconds=60))
    assert [j.id for j in later] == [first[1].id]
    assert later[0].claimed_by == "host:2"


def test_backoff_delay_bounds():
    """Exponential backoff, capped, with jitter in [0.5, 1.0) of the step (DESIGN §2)."""
    rng = random.Random(7)
    for attempts in range(1, 15):
        base = min(600.0, 2.0 * 2 ** (attempts - 1))
        samples = [backoff_delay(attempts, 2.0, 600.0, rng) for _ in range(200)]
        assert all(base * 0.5 <= s < base for s in samples)
        assert max(samples) - min(samples) > base * 0.3  # it is jittered, not constant
    assert backoff_delay(0, 2.0, 600.0, rng) < 2.0  # the first try never waits longer than initial


def test_fail_backs_off_then_dead_letters(queue):
    add(queue, 1)
    for attempt in range(1, 3):
        job = queue.claim("pacs", "host:1", now=now() + timedelta(days=attempt))[0]
        before = now()
        assert queue.fail(job.id, error="A700 out of resources", status=0xA700, max_attempts=3,
                          backoff_initial=10, backoff_max=15) == "pending"
        job = queue.list()[0]
        assert job.attempts == attempt and job.last_status == 0xA700 and job.claimed_by is None
        base = min(15, 10 * 2 ** (attempt - 1))
        delay = (job.next_attempt_at - before).total_seconds()
        assert base * 0.5 - 1 <= delay <= base + 1
        assert queue.claim("pacs", "host:1") == []  # not due yet
    job = queue.claim("pacs", "host:1", now=now() + timedelta(days=9))[0]
    assert queue.fail(job.id, error="A700 again", status=0xA700, max_attempts=3) == "dead"
    dead = queue.list(state="dead")
    assert len(dead) == 1 and dead[0].attempts == 3 and dead[0].last_error == "A700 again"
    assert queue.claim("pacs", "host:1", now=now() + timedelta(days=30)) == []  # dead stays dead


def test_fail_not_retryable_and_uncharged(queue):
    add(queue, 2)
    a, b = queue.claim("pacs", "host:1")
    assert queue.fail(a.id, error="SOP class not accepted (SND-4)", retry=False) == "failed"
    assert queue.fail(b.id, error="circuit open", count_attempt=False, backoff_initial=0.01) == "pending"
    jobs = {j.id: j for j in queue.list()}
    assert jobs[a.id].state == "failed" and jobs[a.id].attempts == 1
    assert jobs[b.id].state == "pending" and jobs[b.id].attempts == 0
    assert queue.fail(10**9, error="x") == "gone"


def test_complete_and_release(queue):
    add(queue, 3)
    a, b, c = queue.claim("pacs", "host:1")
    queue.complete([a.id], status=0xB000)
    queue.release([b.id])
    queue.release([c.id], delay=3600)
    jobs = {j.id: j for j in queue.list()}
    assert jobs[a.id].state == "done" and jobs[a.id].last_status == 0xB000 and jobs[a.id].sent_at is not None
    assert jobs[a.id].attempts == 1
    assert jobs[b.id].state == "pending" and jobs[b.id].attempts == 0  # released untried: not charged
    assert [j.id for j in queue.claim("pacs", "host:2")] == [b.id]  # c waits for its delay
    queue.release([a.id])  # a done job is not "claimed": release leaves it alone
    assert {j.id: j.state for j in queue.list()}[a.id] == "done"


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_release_dead_claims_frees_only_dead_local_claimants(queue):
    add(queue, 4)
    host = socket.gethostname()
    jobs = queue.claim("pacs", "x", limit=4)
    owners = [f"{host}:{_dead_pid()}", f"{host}:{os.getppid()}", f"{host}:{os.getpid()}", f"elsewhere:{_dead_pid()}"]
    with queue.index._connect(write=True) as conn:
        for job, owner in zip(jobs, owners):
            conn.execute(sa.update(S.forward_jobs).where(S.forward_jobs.c.id == job.id).values(claimed_by=owner))
    assert queue.release_dead_claims() == 1
    after = {j.id: j for j in queue.list()}
    assert after[jobs[0].id].state == "pending" and after[jobs[0].id].claimed_by is None
    assert [after[j.id].state for j in jobs[1:]] == ["claimed"] * 3  # alive, ourselves, another host


def test_retry_and_drop_filters(queue):
    add(queue, 2, "pacs")
    add(queue, 1, "pacs", state="held", first=5)
    add(queue, 1, "other", first=9)
    a, b = queue.claim("pacs", "host:1")
    queue.fail(a.id, error="x", max_attempts=1)                  # dead
    queue.fail(b.id, error="SND-4", retry=False)                 # failed
    other = queue.claim("other", "host:1")[0]                    # claimed
    assert queue.retry(destination="other") == 0                 # claimed: not retried
    assert queue.retry(states=("dead",)) == 1
    jobs = {j.id: j for j in queue.list()}
    assert jobs[a.id].state == "pending" and jobs[a.id].attempts == 0
    assert queue.retry(destination="pacs") == 2                  # the failed and the held one
    assert sorted(j.state for j in queue.list(destination="pacs")) == ["pending"] * 3
    assert queue.drop(ids=[other.id]) == 0                       # never a claimed job
    assert queue.drop(destination="pacs", states=("dead",)) == 0
    assert queue.drop(ids=[a.id]) == 1
    assert queue.drop() == 2
    assert [j.id for j in queue.list()] == [other.id]


def test_summary_and_list_filters(queue):
    add(queue, 2, "pacs")
    add(queue, 1, "other", first=7)
    with queue.index.transaction() as tx:
        enqueue(tx.conn, [ForwardPlan("pacs", "r", state="held")], sop_instance_uid=f"{ROOT}.3.99",
                sop_class_uid=CT, series_instance_uid=f"{ROOT}.2.9", study_instance_uid=f"{ROOT}.9")
    rows = {(r["destination"], r["state"]): r["count"] for r in queue.summary()}
    assert rows == {("other", "pending"): 1, ("pacs", "held"): 1, ("pacs", "pending"): 2}
    assert all(isinstance(r["oldest"], datetime) for r in queue.summary())
    assert [j.sop_instance_uid for j in queue.list(study_instance_uid=f"{ROOT}.9")] == [f"{ROOT}.3.99"]
    assert len(queue.list(destination="pacs")) == 3 and len(queue.list(state="held")) == 1
    assert len(queue.list(limit=2)) == 2


def _touch(queue, series, association, at):
    with queue.index.transaction() as tx:
        touch_series(tx.conn, series_instance_uid=series, study_instance_uid=f"{ROOT}.1",
                     association=association, now=at)


def test_complete_series_quiet_time_association_end_and_late_arrivals(queue):
    """Issue 5.4: complete after the quiet time or when the sender's association ends;
    a late arrival reopens the series and its job is released again, never lost."""
    t0 = now()
    quiet, assoc_end = f"{ROOT}.2.1", f"{ROOT}.2.2"
    add(queue, 2, series=quiet, state="waiting", complete_after=None)
    add(queue, 1, series=assoc_end, state="waiting", complete_after=ON_ASSOCIATION_END, first=10)
    _touch(queue, quiet, "a1", t0)
    _touch(queue, quiet, "a1", t0)
    _touch(queue, assoc_end, "a2", t0)
    assert queue.complete_series(60, now=t0 + timedelta(seconds=10)) == []
    assert set(states(queue).values()) == {"waiting"}
    # The quiet time passes: the first series is complete, its jobs are released;
    # the second one's rule waits for the association's end, not for quiet.
    done = queue.complete_series(60, now=t0 + timedelta(seconds=61))
    assert done == [(quiet, f"{ROOT}.1", 2), (assoc_end, f"{ROOT}.1", 1)]
    by_series = {j.sop_instance_uid: j.state for j in queue.list()}
    assert by_series == {f"{ROOT}.3.0": "pending", f"{ROOT}.3.1": "pending", f"{ROOT}.3.10": "waiting"}
    assert queue.complete_series(60, now=t0 + timedelta(seconds=62)) == []  # reported once
    assert queue.association_ended("a2") == 1
    queue.complete_series(60, now=t0 + timedelta(seconds=63))
    assert {j.state for j in queue.list()} == {"pending"}
    # A late arrival reopens its series: its waiting job is released at the next completion.
    _touch(queue, quiet, "a3", t0 + timedelta(seconds=100))
    add(queue, 1, series=quiet, state="waiting", first=20)
    assert queue.complete_series(60, now=t0 + timedelta(seconds=101)) == []
    assert queue.list(state="waiting")[0].sop_instance_uid == f"{ROOT}.3.20"
    assert queue.complete_series(60, now=t0 + timedelta(seconds=161)) == [(quiet, f"{ROOT}.1", 3)]
    assert queue.list(state="waiting") == []


def test_complete_series_job_quiet_time_and_orphans(queue):
    """A rule's own quiet_time wins over the global one; a waiting job without an
    activity row (nothing more can arrive for it) is released at once."""
    t0 = now()
    add(queue, 1, series=f"{ROOT}.2.5", state="waiting", complete_after=5.0)
    add(queue, 1, series=f"{ROOT}.2.6", state="waiting", first=1)  # no touch_series: orphan
    _touch(queue, f"{ROOT}.2.5", "a", t0)
    queue.complete_series(600, now=t0 + timedelta(seconds=1))
    assert [j.sop_instance_uid for j in queue.list(state="pending")] == [f"{ROOT}.3.1"]
    queue.complete_series(600, now=t0 + timedelta(seconds=6))
    assert queue.list(state="waiting") == []


def test_concurrent_claims_never_share_a_job(queue):
    """SQLite BEGIN IMMEDIATE / PostgreSQL SKIP LOCKED: each job to exactly one claimant."""
    add(queue, 120)
    got: list[list[int]] = [[] for _ in range(4)]

    def claimer(n: int) -> None:
        while jobs := queue.claim("pacs", f"host:{n}", limit=7):
            got[n].extend(j.id for j in jobs)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [i for g in got for i in g]
    assert len(ids) == len(set(ids)) == 120


# ---- `dicom-gateway queue` ------------------------------------------------------------

def _cli(capsys, *args: str) -> subprocess.CompletedProcess:
    """`dicom-gateway queue ARGS`, in this process (as the console script calls it)."""
    from gateway.cli import main

    try:
        code = main(["queue", *args])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_queue_cli_ls_retry_drop(tmp_path, capsys):
    data = tmp_path / "data"
    index = Index("sqlite:///" + str((data / "index.db").resolve()))
    q = ForwardQueue(index)
    add(q, 3, "pacs")
    add(q, 1, "CT_AE@10.0.0.9:104", first=7)
    a, b = q.claim("pacs", "host:1", limit=2)
    q.fail(a.id, error="C-STORE status 0xA700 (Refused)", status=0xA700, max_attempts=1)
    q.fail(b.id, error="SND-4", retry=False)
    dd = ["--data-dir", str(data)]

    out = _cli(capsys, "ls", *dd)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "state", "destination", "tries"] and len(lines) == 2 + 4
    assert "0xA700 C-STORE status 0xA700 (Refused)" in out.stdout and "CT_AE@10.0.0.9:104" in out.stdout
    out = _cli(capsys, "ls", "--state", "dead", *dd)
    assert len(out.stdout.splitlines()) == 3 and f"{ROOT}.3.0" in out.stdout
    out = _cli(capsys, "ls", "--summary", *dd)
    assert out.returncode == 0
    rows = [line.split() for line in out.stdout.splitlines()[2:]]
    assert [r[:3] for r in rows] == [["CT_AE@10.0.0.9:104", "pending", "1"], ["pacs", "dead", "1"],
                                     ["pacs", "failed", "1"], ["pacs", "pending", "1"]]
    assert "(sender not running)" in out.stdout
    assert "no jobs match" in _cli(capsys, "ls", "--study", "1.2.3", *dd).stdout

    out = _cli(capsys, "retry", "--state", "dead", *dd)
    assert out.returncode == 0 and "1 job(s) queued again" in out.stdout
    assert {j.id: j.state for j in q.list()}[a.id] == "pending"

    out = _cli(capsys, "drop", *dd)
    assert out.returncode == 2 and "refusing to drop every job" in out.stderr
    assert len(q.list()) == 4
    out = _cli(capsys, "drop", "--destination", "pacs", "--state", "failed", *dd)
    assert out.returncode == 0 and "1 job(s) dropped" in out.stdout
    out = _cli(capsys, "drop", "--all", *dd)
    assert "3 job(s) dropped" in out.stdout and q.list() == []
    out = _cli(capsys, "ls", "--state", "bogus", *dd)
    assert out.returncode == 2 and "invalid choice" in out.stderr
