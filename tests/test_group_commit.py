"""Group commit of concurrent stores (gateway_plugins.group_commit, issue 10)."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
import sqlalchemy as sa

from conftest import basic_toml, dcmtk, free_port, write_cts
from gateway.index import Index, IndexUnavailable
from gateway.index import schema as S
from gateway_plugins.group_commit import GroupCommit


def _insert(name: str, delay: float = 0.0):
    def work(tx):
        time.sleep(delay)
        tx.conn.execute(sa.insert(S.patients).values(patient_id=name, updated_at=sa.func.now()))
        return name
    return work


def _patients(index: Index) -> set[str]:
    with index.engine.connect() as conn:
        return set(conn.execute(sa.select(S.patients.c.patient_id)).scalars())


def test_stores_arriving_during_a_commit_share_the_next_one(tmp_path):
    index = Index(tmp_path / "index.db")
    group = GroupCommit(index)
    results: dict[str, object] = {}
    first = threading.Thread(target=lambda: results.setdefault("slow", group.run(_insert("slow", 0.5))))
    first.start()
    time.sleep(0.1)  # the slow one holds the transaction: these queue behind it
    others = [threading.Thread(target=lambda n=n: results.setdefault(n, group.run(_insert(n)))) for n in "abcde"]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join(10)
    assert results == {"slow": "slow", **{n: n for n in "abcde"}}
    assert sum(size * n for size, n in group.batches.items()) == 6 and max(group.batches) >= 2, group.batches
    assert _patients(index) == {"slow", *"abcde"}


def test_one_failing_store_fails_alone_in_a_batch(tmp_path):
    index = Index(tmp_path / "index.db")
    group = GroupCommit(index)
    outcome: dict[str, object] = {}

    def broken(tx):
        tx.conn.execute(sa.insert(S.patients).values(patient_id="broken", updated_at=sa.func.now()))
        raise ValueError("a bug in this object's writes")

    def call(name, work):
        try:
            outcome[name] = group.run(work)
        except Exception as exc:
            outcome[name] = exc

    slow = threading.Thread(target=call, args=("slow", _insert("slow", 0.4)))
    slow.start()
    time.sleep(0.1)
    batch = [threading.Thread(target=call, args=("x", _insert("x"))), threading.Thread(target=call, args=("bad", broken)),
             threading.Thread(target=call, args=("y", _insert("y")))]
    for t in batch:
        t.start()
    for t in [slow, *batch]:
        t.join(10)
    assert isinstance(outcome["bad"], ValueError)
    assert outcome["x"] == "x" and outcome["y"] == "y"
    assert _patients(index) == {"slow", "x", "y"}  # the broken object's row was rolled back alone


def test_a_lone_store_is_its_own_transaction_and_its_error_rolls_it_back(tmp_path):
    index = Index(tmp_path / "index.db")
    group = GroupCommit(index)

    def broken(tx):
        tx.conn.execute(sa.insert(S.patients).values(patient_id="gone", updated_at=sa.func.now()))
        raise KeyError("nope")

    with pytest.raises(KeyError):
        group.run(broken)
    assert _patients(index) == set() and not group.batches
    assert group.run(_insert("kept")) == "kept" and group.batches == {1: 1}


def test_an_unwritable_index_fails_every_store_of_the_batch(tmp_path):
    index = Index(tmp_path / "index.db", busy_timeout=0.2, lock_retries=0)
    group = GroupCommit(index)
    blocker = Index(tmp_path / "index.db")
    with blocker.transaction():  # another process's long write transaction holds the lock
        with pytest.raises(IndexUnavailable):
            group.run(_insert("late"))
    assert group.run(_insert("after")) == "after"


def test_concurrent_dcmtk_senders_are_group_committed_and_all_stored(inprocess_gateway, tmp_path):
    """Four storescu processes into one worker: every object stored and indexed, and
    the worker's transactions held more than one object at a time."""
    from gateway_plugins import storage

    port = free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "d"))
    senders = []
    for k in range(4):
        files = write_cts(tmp_path / f"s{k}", 25, patient_id=f"GC{k}")
        senders.append(subprocess.Popen([dcmtk("storescu"), "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port),
                                         *map(str, files)], env=dict(os.environ, TCP_NODELAY="1"),
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    for p in senders:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    config = gw.worker.runtime.config
    assert Index(config.effective_database_url()).stats()["instances"] == 100
    batches = storage.group_commit_of(config).batches
    assert sum(size * n for size, n in batches.items()) == 100, batches
    assert max(batches) >= 2, f"no transaction held two objects: {batches}"
