"""Group commit: concurrent new objects of one process share one index transaction.

Every store of a new object ends with an index transaction whose commit is a
WAL fsync (STO-7). Stores that reach that point while another store's
transaction is running queue their index writes; when it has committed, the
first of them runs every queued store's writes in one transaction (one write
lock, one fsync) and wakes the others. Each store still answers its peer only
after the transaction holding its rows has committed, so what a peer is told is
exactly what a lone store would have told it (tests/test_durability*.py).

Nobody waits for company: a store alone commits at once, as before; a batch
forms only from stores that would otherwise have queued for the write lock.
With more than one store in a batch, each one's writes run on a savepoint of
their own, so one object's failure (a bug, a plugin's rule action raising past
its own savepoint) fails that object only; a database that cannot be written
fails the batch, and every store in it answers with the refusal status (STO-8).
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Callable

from gateway.index import IndexUnavailable
from gateway.index.store import is_unavailable as _is_unavailable
from gateway.metrics import METRICS

__all__ = ["GroupCommit"]


class _Entry:
    __slots__ = ("work", "result", "error", "done")

    def __init__(self, work: Callable[[Any], Any]) -> None:
        self.work = work
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommit:
    """The group commit of one index (one per :class:`gateway.index.Index` in a process)."""

    def __init__(self, index: Any) -> None:
        self.index = index
        self._cond = threading.Condition()
        self._queue: list[_Entry] = []
        self._leading = False
        #: Committed transactions by the number of objects they held (bounded: one
        #: key per batch size), for the tests; ``gateway_index_commits_total`` and
        #: ``gateway_index_committed_objects_total`` count the same for operators.
        self.batches: Counter[int] = Counter()

    def run(self, work: Callable[[Any], Any]) -> Any:
        """``work(tx)`` inside a committed index transaction shared with the stores
        running at the same time; its result, or what it raised."""
        entry = _Entry(work)
        with self._cond:
            self._queue.append(entry)
            while self._leading and not entry.done:
                self._cond.wait()
            if not entry.done:
                # Nobody is committing: this store commits every store queued so far.
                self._leading = True
                batch, self._queue = self._queue, []
            else:
                batch = []
        if batch:
            try:
                self._commit(batch)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        if entry.error is not None:
            raise entry.error
        return entry.result

    def _commit(self, batch: list[_Entry]) -> None:
        try:
            with self.index.transaction() as tx:
                if len(batch) == 1:  # alone: exactly the transaction a lone store runs
                    entry = batch[0]
                    try:
                        entry.result = entry.work(tx)
                    except IndexUnavailable:
                        raise
                    except BaseException as exc:
                        if _is_unavailable(exc):
                            raise  # the transaction turns it into IndexUnavailable
                        entry.error = exc
                        raise _RolledBack from exc
                else:
                    for entry in batch:
                        try:
                            with tx.conn.begin_nested():
                                entry.result = entry.work(tx)
                        except IndexUnavailable:
                            raise
                        except Exception as exc:
                            if _is_unavailable(exc):
                                raise  # the database, not this object: the batch fails
                            entry.error = exc  # this object's writes are rolled back, alone
            self.batches[len(batch)] += 1
            METRICS.inc("gateway_index_commits_total")
            METRICS.inc("gateway_index_committed_objects_total", len(batch))
        except _RolledBack:
            pass
        except IndexUnavailable as exc:
            for entry in batch:
                entry.error = exc
        except Exception as exc:  # the commit itself failed: nothing of the batch is durable
            for entry in batch:
                entry.error = exc if entry.error is None else entry.error
        finally:
            for entry in batch:
                entry.done = True


class _RolledBack(Exception):
    """A lone store's work raised: its transaction is rolled back, the error is its own."""
