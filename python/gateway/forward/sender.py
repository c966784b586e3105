"""The sender service: workers that drain the durable forward queue (DESIGN §2, issue 5.3/5.4).

One :class:`SenderService` per gateway node runs a scheduler loop and, per
destination with due work, up to ``remote.associations`` worker threads. Each
worker owns at most one association, so a slow or dead destination only ever
occupies its own threads and never delays another's.

A worker claims a batch (a lease in the index), resolves each job's stored
file, sends it on an association it keeps open while work is queued (SND-3),
and records every result in its own short transaction:

* Success/Warning (SND-5): ``done``;
* a retryable failure: ``pending`` again after an exponential backoff with
  jitter, ``dead`` (the dead letter) after ``max_attempts`` tries;
* a failure that can never succeed (SOP class not accepted, SND-4; instance
  or file gone): ``failed``;
* Refused (A7xx, SND-5): the job is retried later, the association ends and
  the rest of the batch goes back to the queue untried.

Association failures feed a per-destination :class:`CircuitBreaker`; while
it is open nobody tries the peer and jobs are not charged attempts.

The scheduler loop also makes series complete ([forwarding]
series_quiet_time, or the end of the sending association), releases the
jobs that waited for that, and fires ``gateway_series_complete``.

Delivery is at-least-once; see docs/forwarding.md for exactly when an object
can be sent twice.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from gateway.forward.breaker import HALF_OPEN, STATE_VALUE, BreakerState, CircuitBreaker
from gateway.index.queue import ForwardQueue, Job, backoff_delay, worker_id
from gateway.metrics import METRICS

__all__ = ["SenderService", "DestinationWorker", "STATE_FILE", "read_state"]

log = logging.getLogger("gateway.forward")

#: Sent jobs are recorded done in groups of at most this many, at most this many seconds late.
DONE_GROUP = 32
DONE_DELAY = 0.25
#: Seconds between looks for storage commitment transactions without a result.
COMMITMENT_RETRY_INTERVAL = 5.0
#: Written to <data_dir>/run/ by the sender process: breaker states for `queue ls`.
STATE_FILE = "forward-state.json"


def read_state(data_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The last breaker states a running sender published, or None (no sender
    running on this data directory, or its state is stale)."""
    path = Path(data_dir) / "run" / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or not Path(f"/proc/{pid}").exists():
        return None
    if time.time() - float(state.get("time", 0)) > 60:
        return None
    return state


class SenderService:
    """``SenderService(config).start()`` … ``stop()``; or ``run()`` in the calling thread.

    ``config_dir`` (optional) is watched like the workers do: new or changed
    remotes and [forwarding] settings apply to the next batch, without a
    restart. ``plugins`` is the :class:`gateway.plugins.PluginHost` for hooks
    and storage backends; by default one is loaded from the config (and
    reloaded with it).
    """

    def __init__(self, config: Any, config_dir: Path | None = None, overrides: dict | None = None, *,
                 plugins: Any = None, index: Any = None, publish_dir: Path | None = None,
                 watch: bool = True) -> None:
        self.config = config
        self.config_dir = config_dir
        self.overrides = overrides or {}
        self._own_plugins = plugins is None
        self.plugins = plugins
        self.index = index
        self._own_index = index is None
        self.queue: ForwardQueue | None = ForwardQueue(index) if index is not None else None
        self.claimant = worker_id()
        self.publish_dir = publish_dir
        self.watch = watch
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.RLock()
        self._workers: dict[str, list[DestinationWorker]] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._thread: threading.Thread | None = None
        self._watcher: Any = None
        self._index_error: str | None = None
        self._last_publish = 0.0
        self._last_depth = 0.0
        self._depth_keys: set[tuple[str, str]] = set()
        self._started = False

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> "SenderService":
        """Run the scheduler in a thread of its own."""
        self._thread = threading.Thread(target=self.run, name="forward-sender", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """The scheduler loop, until :meth:`stop`."""
        if self.plugins is None:
            self.plugins = _load_plugins(self.config)
        if self.config_dir is not None and self.watch:
            from gateway.config.reload import ConfigWatcher

            self._watcher = ConfigWatcher(self.config_dir, self.swap, self._on_config_error,
                                          overrides=self.overrides, digest=self.config.digest or None)
            self._watcher.start()
        log.info("sender started", extra={"claimant": self.claimant})
        threading.Thread(target=self._commitment_loop, name="forward-commitment", daemon=True).start()
        try:
            while not self.stopping.is_set():
                try:
                    self.tick()
                except Exception as exc:  # never let one bad round end forwarding
                    log.error("sender round failed", exc_info=exc)
                    METRICS.inc("gateway_forward_errors_total", where="scheduler")
                self._wake.wait(self.config.forwarding.poll_interval)
                self._wake.clear()
        finally:
            if self._watcher is not None:
                self._watcher.stop()
            self._drain()
            self._publish(force=True)
            if self._own_index and self.index is not None:
                self.index.close()
            log.info("sender stopped")

    def stop(self, timeout: float | None = None) -> None:
        """Graceful stop: each worker finishes the object in flight, gives the rest
        of its batch back to the queue and releases its association."""
        self.stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.config.node.shutdown_grace + 5)

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        self._wake.set()

    def swap(self, config: Any) -> None:
        """A new valid config (hot reload): used by every batch from now on."""
        if config.effective_database_url() != self.config.effective_database_url():
            log.warning("the index database URL changed; the sender keeps the old one until restarted",
                        extra={"database": str(self.index) if self.index else None})
        if self._own_plugins:
            try:
                self.plugins = _load_plugins(config)
            except Exception as exc:
                log.error("plugins failed to load for the new config; keeping the old ones", exc_info=exc)
        self.config = config
        with self._lock:
            for b in self._breakers.values():
                b.configure(config.forwarding.breaker_threshold, config.forwarding.breaker_cooldown)
        log.info("sender config reloaded", extra={"digest": (config.digest or "")[:12],
                                                  "remotes": sorted(config.remotes)})
        self._wake.set()

    def _on_config_error(self, exc: Exception) -> None:
        log.error("config reload failed; the sender keeps the last good config",
                  extra={"errors": str(exc).splitlines()})

    # ---- one scheduler round -----------------------------------------------------

    def tick(self) -> None:
        """Series completeness, then a worker for each destination with due work."""
        if not self._open_index():
            return
        assert self.queue is not None
        if not self._started:
            freed = self.queue.release_dead_claims()
            if freed:
                log.warning("released jobs claimed by a sender that is gone", extra={"jobs": freed})
            self._started = True
        fw = self.config.forwarding
        self._reap()
        # [forwarding] enabled = false: jobs are queued (and waiting ones keep
        # waiting) but nothing is sent or completed until it is enabled again.
        if fw.enabled and not self.stopping.is_set():
            self._complete_series(fw.series_quiet_time)
            for destination, due in self.queue.destinations_ready().items():
                self._schedule(destination, due)
        if not self.stopping.is_set():
            # Plugins' own background work (prefetch jobs, …): the hook starts or feeds a thread.
            _notify_each(self.plugins, "gateway_sender_poll", config=self.config, index=self.index,
                         stopping=self.stopping)
        self._publish()

    def _open_index(self) -> bool:
        if self.queue is not None:
            return True
        from gateway.index import Index, IndexUnavailable

        url = self.config.effective_database_url()
        try:
            # The storage service creates and migrates the index with its first
            # object (no job can exist before). The sender never migrates: an
            # Alembic run holds the write lock long enough to make a store with
            # a short index_timeout fail (STO-8) on a busy machine.
            waiting = _schema_pending(url)
            if waiting is None:
                index = Index(url, migrate=False)
                waiting = _schema_pending(url, index)
                if waiting is None:
                    self.index, self.queue, self._index_error = index, ForwardQueue(index), None
                    return True
                index.close()
        except (IndexUnavailable, OSError, sa_exc.SQLAlchemyError) as exc:
            waiting = f"sender cannot open the index; retrying: {exc}"
        if waiting != self._index_error:
            log.info(waiting, extra={"database": url.split("@")[-1]})
            self._index_error = waiting
        return False

    def _complete_series(self, quiet_time: float) -> None:
        assert self.queue is not None
        from gateway.messages import SeriesInfo

        completed = self.queue.complete_series(quiet_time)
        for series_uid, study_uid, received in completed:
            METRICS.inc("gateway_series_completed_total")
            log.info("series complete", extra={"series_instance_uid": series_uid, "instances": received})
            _notify_each(self.plugins, "gateway_series_complete",
                         series=SeriesInfo(series_uid, study_uid, received), config=self.config)

    def _commitment_loop(self) -> None:
        """SND-8: re-send N-ACTIONs that got no result (gateway.net.commitment.retry_outstanding).
        A thread of its own: it does network I/O and must not hold up scheduling."""
        while not self.stopping.wait(COMMITMENT_RETRY_INTERVAL):
            if self.queue is None or not any(r.request_storage_commitment for r in self.config.remotes.values()):
                continue
            try:
                from gateway.net.commitment import retry_outstanding

                retry_outstanding(self.index, self.config)
            except Exception as exc:  # never affects forwarding
                METRICS.inc("gateway_forward_errors_total", where="commitment")
                log.error("storage commitment retry failed", exc_info=exc)

    def _schedule(self, destination: str, due: int) -> None:
        remote = _remote(self.config, destination)
        wanted = remote.associations if remote is not None else 1
        breaker = self.breaker(destination)
        with self._lock:
            running = [w for w in self._workers.get(destination, []) if w.is_alive()]
            # Another association only when every running one is busy with a batch:
            # an idle one (kept open, idle_close) picks the new work up itself.
            if running and (len(running) >= wanted or due <= 0 or not all(w.busy for w in running)):
                return
            if not breaker.may_try():
                return
            worker = DestinationWorker(self, destination)
            running.append(worker)
            self._workers[destination] = running
        worker.start()

    def _reap(self) -> None:
        with self._lock:
            for dest in list(self._workers):
                alive = [w for w in self._workers[dest] if w.is_alive()]
                if alive:
                    self._workers[dest] = alive
                else:
                    del self._workers[dest]
                METRICS.set("gateway_forward_associations_active",
                            sum(w.assoc is not None for w in alive), destination=dest)

    def _drain(self) -> None:
        with self._lock:
            workers = [w for ws in self._workers.values() for w in ws]
        deadline = time.monotonic() + self.config.node.shutdown_grace
        for w in workers:
            w.join(max(0.1, deadline - time.monotonic()))
            if w.is_alive():
                log.warning("sender worker still busy at shutdown; its jobs return to the queue "
                            "when this process is gone", extra={"destination": w.destination})

    # ---- breakers, metrics, state ------------------------------------------------------

    def breaker(self, destination: str) -> CircuitBreaker:
        with self._lock:
            b = self._breakers.get(destination)
            if b is None:
                fw = self.config.forwarding
                b = self._breakers[destination] = CircuitBreaker(fw.breaker_threshold, fw.breaker_cooldown)
            return b

    def breakers(self) -> dict[str, BreakerState]:
        with self._lock:
            items = list(self._breakers.items())
        return {d: b.snapshot() for d, b in items}

    def active_workers(self, destination: str | None = None) -> int:
        with self._lock:
            return sum(w.is_alive() for d, ws in self._workers.items() for w in ws
                       if destination is None or d == destination)

    def _publish(self, force: bool = False) -> None:
        now = time.monotonic()
        states = self.breakers()
        for dest, s in states.items():
            METRICS.set("gateway_forward_breaker_state", STATE_VALUE[s.state], destination=dest)
            METRICS.set("gateway_forward_breaker_failures", s.failures, destination=dest)
        if self.queue is not None and (force or now - self._last_depth >= 5.0):
            self._last_depth = now
            try:
                depth = {(r["destination"], r["state"]): r["count"] for r in self.queue.summary()
                         if r["state"] != "done"}
                for dest, state in self._depth_keys - depth.keys():  # drained since: 0, not a stale count
                    METRICS.set("gateway_forward_jobs", 0, destination=dest, state=state)
                for (dest, state), count in depth.items():
                    METRICS.set("gateway_forward_jobs", count, destination=dest, state=state)
                self._depth_keys |= depth.keys()
            except Exception as exc:
                log.warning("queue depth not available", extra={"error": str(exc)})
        if self.publish_dir is None or (not force and now - self._last_publish < 1.0):
            return
        self._last_publish = now
        try:
            self.publish_dir.mkdir(parents=True, exist_ok=True)
            body = {"pid": os.getpid(), "time": time.time(),
                    "breakers": {d: vars(s) for d, s in states.items()},
                    "workers": {d: n for d in states if (n := self.active_workers(d))}}
            tmp = self.publish_dir / (STATE_FILE + ".tmp")
            tmp.write_text(json.dumps(body))
            os.replace(tmp, self.publish_dir / STATE_FILE)
        except OSError as exc:
            log.warning("cannot publish the sender state", extra={"error": str(exc)})

    # ---- helpers for the workers ---------------------------------------------------

    def storage_path(self, file: Any) -> Path:
        """The local path of a stored file, from the storage service that wrote it."""
        from gateway.plugins import HookError

        try:
            path = self.plugins.call("gateway_stored_file_path", file=file, config=self.config)
        except HookError as exc:
            raise LookupError(f"cannot locate the stored file {file.path}: {exc}") from exc
        if path is None:
            raise LookupError(f"no storage service can locate files of backend {file.backend!r}")
        return Path(path)


_HEAD: list[str] = []


def _schema_pending(url: str, index: Any = None) -> str | None:
    """Why the index cannot be used by the sender yet (None: it can): no SQLite
    file yet, or a schema not at the newest revision (the storage service migrates)."""
    if index is None:
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:" \
                and not Path(parsed.database).exists():
            return "waiting for the index database to be created (by the first stored object)"
        return None
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from gateway.index import alembic_config

    if not _HEAD:
        _HEAD.append(ScriptDirectory.from_config(alembic_config(url)).get_current_head())
    with index._connect(write=False) as conn:  # a read: SQLite BEGIN DEFERRED, no write lock
        current = MigrationContext.configure(conn).get_current_revision()
    if current != _HEAD[0]:
        return f"waiting for the index schema to be migrated (at {current}, need {_HEAD[0]})"
    return None


def _remote(config: Any, destination: str) -> Any:
    """The remote a destination names, or None (an AET@host:port destination)."""
    found = config.remote(destination)
    return found[1] if found is not None else None


def _notify_each(host: Any, hook: str, **kwargs: Any) -> None:
    """Call every implementation of an observation hook on its own: one that raises
    is logged and counted (DESIGN §3) and neither stops the sender nor keeps the
    event from the other plugins (pluggy would stop at the first exception)."""
    if host is not None:
        host.call_each(hook, **kwargs)


def _load_plugins(config: Any) -> Any:
    from gateway.plugins import load_host

    return load_host(config.disabled_plugins, config.plugins.modules)


class _Stop(Exception):
    """The service is stopping: give the rest of the batch back."""


class DestinationWorker(threading.Thread):
    """One association's worth of sending to one destination."""

    def __init__(self, service: SenderService, destination: str) -> None:
        super().__init__(name=f"forward-{destination}", daemon=True)
        self.service = service
        self.destination = destination
        self.breaker = service.breaker(destination)
        self.assoc: Any = None
        self.dest: Any = None
        #: sending a batch (the scheduler adds associations only when every worker is busy)
        self.busy = True
        self._claimed: list[int] = []
        self._grant: str | None = None  # the breaker's permission for the next open
        self._failures = 0
        # The batch in hand: its attempt limit, and its sent jobs not yet recorded done.
        self._max_attempts = 1
        self._done: list[tuple[int, int]] = []
        self._done_recorded = 0.0

    # ---- the loop ------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._loop()
        except Exception as exc:
            log.error("sender worker failed", exc_info=exc, extra={"destination": self.destination})
            METRICS.inc("gateway_forward_errors_total", where="worker")
        finally:
            self._close()
            self._give_back()
            self._drop_grant()

    def _loop(self) -> None:
        svc = self.service
        queue = svc.queue
        assert queue is not None
        idle_since = time.monotonic()
        while not svc.stopping.is_set():
            fw = svc.config.forwarding
            if not fw.enabled:
                return
            if self.assoc is None and self._grant is None:
                self._grant = self.breaker.acquire()
                if self._grant is None:
                    return  # circuit open: the scheduler starts a worker again after the cooldown
            # A probe risks one object only: the peer may well still be down.
            limit = 1 if self._grant == HALF_OPEN else fw.batch
            self.busy = True
            jobs = queue.claim(self.destination, svc.claimant, limit, fw.lease)
            if not jobs:
                self.busy = False
                self._drop_grant()
                if self.assoc is None:
                    return
                idle = time.monotonic() - idle_since
                if idle >= fw.idle_close:
                    return  # the association is released in run()
                svc.stopping.wait(min(fw.poll_interval, fw.idle_close - idle))
                continue
            self._claimed = [j.id for j in jobs]
            try:
                reached = self._send_batch(jobs)
            finally:
                self._give_back()
                self._drop_grant()
            if not reached:
                # No association: wait before the next try (the breaker may open meanwhile).
                self._failures += 1
                if svc.stopping.wait(backoff_delay(self._failures, fw.backoff_initial, fw.backoff_max)):
                    return
            else:
                self._failures = 0
            idle_since = time.monotonic()

    def _drop_grant(self) -> None:
        if self._grant == HALF_OPEN:
            self.breaker.cancel()
        self._grant = None

    def _give_back(self) -> None:
        """Untried jobs of the batch return to the queue as they were (not charged)."""
        if self._claimed and self.service.queue is not None:
            try:
                self.service.queue.release(self._claimed)
            except Exception as exc:  # their lease expires anyway
                log.warning("could not release jobs; their lease will expire",
                            extra={"destination": self.destination, "jobs": len(self._claimed), "error": str(exc)})
        self._claimed = []

    # ---- one batch -------------------------------------------------------------------

    def _send_batch(self, jobs: list[Job]) -> bool:
        """Send a claimed batch; returns False when no association could be opened."""
        from gateway.net.storescu import resolve_destination

        config = self.service.config
        remote = _remote(config, self.destination)
        self._max_attempts = remote.max_attempts if remote is not None and remote.max_attempts \
            else config.forwarding.max_attempts
        try:
            dest = resolve_destination(self.destination, config)
        except LookupError as exc:
            # Retried with backoff: a remotes/*.toml being edited heals on the next reload.
            for job in jobs:
                self._fail(job, f"unknown destination: {exc}")
            return True
        pending = self._outgoing(jobs)
        sent: list[tuple[str, str, str]] = []
        try:
            return self._send_items(dest, pending, sent)
        finally:
            self._record_done()
            self._commit(dest, sent)

    def _outgoing(self, jobs: list[Job]) -> list[tuple[Job, Any]]:
        """Each job's file, from the index: the object as stored now (an overwrite,
        STO-6, is sent new). Jobs whose object is gone fail for good. An index that
        fails here ends the worker; the batch goes back uncharged."""
        from gateway.net.storescu import Outgoing

        svc = self.service
        found = svc.index.find_instances([job.sop_instance_uid for job in jobs])
        pending: list[tuple[Job, Any]] = []
        for job in jobs:
            stored = found.get(job.sop_instance_uid)
            if stored is None or stored.file is None:
                self._fail(job, f"instance {job.sop_instance_uid} is no longer in the index", retry=False)
                continue
            try:
                path = svc.storage_path(stored.file)
            except LookupError as exc:
                self._fail(job, str(exc), retry=False)
                continue
            if not path.is_file():
                self._fail(job, f"stored file {path} is missing", retry=False)
                continue
            pending.append((job, Outgoing(path, stored.sop_class_uid, stored.sop_instance_uid,
                                          stored.file.transfer_syntax_uid, key=job.id,
                                          preferred_syntax=job.options.get("syntax"),
                                          demographics=stored.demographics)))  # QRS-7
        return pending

    def _fail(self, job: Job, error: str, *, status: int | None = None, retry: bool = True) -> None:
        fw = self.service.config.forwarding
        state = self.service.queue.fail(job.id, error=error, status=status, retry=retry,
                                        max_attempts=self._max_attempts, backoff_initial=fw.backoff_initial,
                                        backoff_max=fw.backoff_max)
        self._claimed.remove(job.id)
        METRICS.inc("gateway_forward_failures_total", destination=self.destination, outcome=state)
        level = logging.ERROR if state in ("dead", "failed") else logging.WARNING
        log.log(level, "forward failed" + (" (dead-lettered)" if state == "dead" else ""), extra={
            "destination": self.destination, "job": job.id, "sop_instance_uid": job.sop_instance_uid,
            "state": state, "attempts_max": self._max_attempts,
            "status": f"0x{status:04X}" if status is not None else None, "error": error})

    def _record_done(self) -> None:
        """Mark the sent jobs done: one commit (one fsync) for a group of up to
        DONE_GROUP objects or DONE_DELAY seconds of sending; docs/forwarding.md
        says what a crash before it means (at-least-once)."""
        by_status: dict[int, list[int]] = {}
        for job_id, status in self._done:
            by_status.setdefault(status, []).append(job_id)
        for status, ids in by_status.items():
            self.service.queue.complete(ids, status)
            for job_id in ids:
                self._claimed.remove(job_id)
        self._done = []
        self._done_recorded = time.monotonic()

    def _send_items(self, dest: Any, pending: list[tuple[Job, Any]], sent: list[tuple[str, str, str]]) -> bool:
        svc = self.service
        queue = svc.queue
        assert queue is not None
        fw = svc.config.forwarding
        fresh = False
        last_extend = self._done_recorded = time.monotonic()
        while pending and not svc.stopping.is_set():  # stopping: the rest is given back untried
            if self._done and (len(self._done) >= DONE_GROUP
                               or time.monotonic() - self._done_recorded >= DONE_DELAY):
                self._record_done()
            if time.monotonic() - last_extend > fw.lease / 3:
                queue.extend(self._claimed, svc.claimant, fw.lease)  # a long batch keeps its lease
                last_extend = time.monotonic()
            job, item = pending[0]
            if self.assoc is not None and (not self.assoc.alive or self.dest != dest):
                self._close()  # gone, or the remote's settings changed (reload)
            if self.assoc is not None and not self.assoc.covers(item):
                if fresh:
                    # Cannot happen with <128 contexts per object; never loop on it.
                    self._fail(job, "no presentation context could be proposed for this object", retry=False)
                    pending.pop(0)
                    continue
                self._close()  # it needs contexts this association did not propose
            if self.assoc is None:
                outcome = self._open(dest, [it for _, it in pending])
                if outcome == "ok":
                    fresh = True
                    continue
                if outcome == "failed":
                    # Tried while the circuit was closed: each job had its try.
                    error = self.breaker.last_error or "association failed"
                    for j, _ in pending:
                        self._fail(j, error)
                # "probe-failed" / "skipped": the circuit is open; jobs are not charged
                return False
            fresh = False
            result = self.assoc.send(item)
            pending.pop(0)
            if result.state == "done":
                self._done.append((job.id, result.status or 0))
                METRICS.inc("gateway_forward_sent_total", destination=self.destination)
                if result.status:  # SND-5: a warning counts as sent, and is logged
                    log.warning("forwarded with a warning", extra={
                        "destination": self.destination, "sop_instance_uid": job.sop_instance_uid,
                        "status": f"0x{result.status:04X}", "error": result.error})
                # What the peer now holds (SND-7 conversions may have made other instances).
                sent.extend((sc, si, job.study_instance_uid)
                            for sc, si in (result.sent or [(job.sop_class_uid, job.sop_instance_uid)]))
                continue
            self._fail(job, result.error or "C-STORE failed", status=result.status,
                       retry=result.retryable or result.refused)
            if result.refused:
                # SND-5: Refused ends the association; the rest of the batch goes back to the queue.
                self._close()
                break
            if result.status is not None or not self.assoc.alive:
                # SND-5: another failure (or a timeout that aborted the association):
                # go on with the rest on a new association. A failure found before
                # anything went out (SND-4, an unreadable file) keeps this one.
                self._close()
        return True

    def _open(self, dest: Any, items: list[Any]) -> str:
        """``ok``; ``failed`` (tried with the circuit closed); ``probe-failed``; or
        ``skipped`` (the circuit is open: not tried)."""
        from gateway.net.scu import AssociationFailed
        from gateway.net.storescu import StoreAssociation
        from gateway.outgoing import outgoing_transform

        grant, self._grant = self._grant or self.breaker.acquire(), None
        if grant is None:
            return "skipped"
        try:
            self.assoc = StoreAssociation.open(dest, items, self.service.config,
                                               outgoing_transform(self.service.plugins, self.service.config))
        except Exception as exc:
            if isinstance(exc, AssociationFailed):
                kind, error = exc.kind, f"{exc.kind}: {exc}"
                log.warning("association failed", extra={"destination": self.destination, "kind": kind,
                                                          "error": str(exc), "probe": grant == HALF_OPEN})
            else:  # bad input or a bug in the SCU: the same to the queue, with a traceback in the log
                kind, error = "error", f"{type(exc).__name__}: {exc}"
                log.error("association could not be opened", exc_info=exc, extra={"destination": self.destination})
            METRICS.inc("gateway_forward_association_failures_total", destination=self.destination, kind=kind)
            if self.breaker.failure(error):
                METRICS.inc("gateway_forward_breaker_opened_total", destination=self.destination)
                log.error("circuit open: not trying this destination for a while", extra={
                    "destination": self.destination, "cooldown_s": self.breaker.cooldown,
                    "failures": self.breaker.snapshot().failures, "error": error})
            return "probe-failed" if grant == HALF_OPEN else "failed"
        if grant == HALF_OPEN:
            log.info("circuit closed: the destination answers again", extra={"destination": self.destination})
        self.breaker.success()
        self.dest = dest
        METRICS.inc("gateway_forward_associations_total", destination=self.destination)
        return "ok"

    def _close(self) -> None:
        """Release the association (abort one that is no longer alive)."""
        assoc, self.assoc = self.assoc, None
        if assoc is None:
            return
        try:
            if not assoc.alive:
                assoc.abort()
            else:
                assoc.release()
        except Exception as exc:
            log.debug("closing the association failed", extra={"destination": self.destination, "error": str(exc)})

    def _commit(self, dest: Any, sent: list[tuple[str, str, str]]) -> None:
        """SND-8: ask for storage commitment of what was just sent; never affects forwarding."""
        if not sent or not getattr(dest, "request_storage_commitment", False):
            return
        try:
            # Through the registry, as any plugin would: with the commitment plugin
            # disabled there is no Storage Commitment SCU and nothing is requested.
            host = self.service.plugins or _load_plugins(self.service.config)  # None only before run()
            client = host.services.scu("storage-commitment-scu").client
        except LookupError as exc:
            log.warning("storage commitment requested but no Storage Commitment SCU is loaded; objects stay sent",
                        extra={"destination": self.destination, "error": str(exc)})
            return
        try:
            client.request(dest, sent, self.service.index, self.service.config)
        except Exception as exc:
            METRICS.inc("gateway_forward_errors_total", where="commitment")
            log.error("storage commitment request failed; the objects stay sent", exc_info=exc,
                      extra={"destination": self.destination, "instances": len(sent)})
