"""The media worker: one daemon thread in the sender process working off the export jobs.

A job's selection is read from the index (:func:`gateway.index.selection.stored_files`),
planned into volumes and written through its driver by the same code as
``dicom-gateway media export`` (:mod:`gateway_plugins.media_export`), every volume
verified after writing. The volumes are written to a hidden sibling of the
target (``.NAME.partial-<job>``) and moved to the target only once all of them
verified, so the target never shows half a file-set. What is at the target
already may be replaced only when an earlier try of this job, or an earlier
export of the same rule and study, wrote it; otherwise it must be empty or
absent.

A sender stopping mid-export gives the job back (cleanly, between objects); a
killed one leaves it claimed, and the next sender on this host frees it
(:meth:`MediaQueue.release_dead_claims`) — the export runs again from the start.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gateway.index.queue import worker_id
from gateway_plugins.media_jobs import MediaJob, MediaQueue

log = logging.getLogger("gateway.media")


class _Permanent(Exception):
    """A job that cannot work as asked: ``failed`` at once, not retried."""


class _Stopped(Exception):
    """The sender is stopping: the job goes back to pending, untried."""


class MediaWorker(threading.Thread):
    def __init__(self, config: Any, index: Any, stopping: threading.Event) -> None:
        super().__init__(name="media-worker", daemon=True)
        self.config = config
        self.index = index
        self.stopping = stopping
        self.queue = MediaQueue(index)
        self.claimant = worker_id()
        self._wake = threading.Event()

    def update(self, config: Any) -> None:
        """A newer config (hot reload). Called every sender round: waking only on a new one
        keeps the queue polled every ``poll_interval``, not every round."""
        if config is not self.config:
            self.config = config
            self._wake.set()

    @property
    def settings(self) -> Any:
        from gateway_plugins.media import settings_of

        return settings_of(self.config)

    def run(self) -> None:
        started = False
        while not self.stopping.is_set():
            try:
                if not started:
                    self.queue.ensure()
                    freed = self.queue.release_dead_claims()
                    if freed:
                        log.warning("released media jobs claimed by a sender that is gone", extra={"jobs": freed})
                    started = True
                job = self.queue.claim(self.claimant, self.settings.lease)
            except Exception as exc:  # the index is unavailable: try again later
                log.warning("media job queue unavailable", extra={"error": str(exc)})
                self._wait(5.0)
                continue
            if job is None:
                self._wait(self.settings.poll_interval)
            else:
                self._work(job)

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    # ---- one job -------------------------------------------------------------------------

    def _work(self, job: MediaJob) -> None:
        s = self.settings
        started = time.monotonic()
        heartbeat = _Heartbeat(self.queue, job.id, self.claimant, s.lease)
        try:
            result = self._export(job, heartbeat)
        except _Stopped:
            self.queue.release(job.id)
            log.info("media job given back: the sender is stopping", extra={"job": job.id})
            return
        except _Permanent as exc:
            self.queue.fail(job.id, str(exc), retry=False, max_attempts=s.max_attempts,
                            backoff_initial=s.backoff_initial, backoff_max=s.backoff_max)
            log.error("media job failed", extra={"job": job.id, "error": str(exc)})
            return
        except Exception as exc:  # anything else may work later: a target made writable, a disc inserted
            error = str(exc) if isinstance(exc, _TargetError) else f"{type(exc).__name__}: {exc}"
            state = self.queue.fail(job.id, error, retry=True, max_attempts=s.max_attempts,
                                    backoff_initial=s.backoff_initial, backoff_max=s.backoff_max)
            # A target problem is the operator's to fix and says so; anything else (a
            # driver's bug) keeps its traceback for whoever debugs it.
            log.warning("media job failed; " + ("retried later" if state == "pending" else f"now {state}"),
                        exc_info=None if isinstance(exc, _TargetError) else exc, extra={"job": job.id, "error": error})
            return
        finally:
            heartbeat.stop()
        self.queue.done(job.id, result)
        log.info("media job done", extra={"job": job.id, "study_instance_uid": job.study_instance_uid,
                                          "result": result, "s": round(time.monotonic() - started, 2)})

    def _export(self, job: MediaJob, heartbeat: "_Heartbeat") -> str:
        from gateway.index.selection import SelectionError, stored_files
        from gateway_plugins.media_drivers import driver_registry, open_driver
        from gateway_plugins.media_export import write_volumes
        from gateway_plugins.media_volumes import parse_capacity, plan_volumes

        config = self.config
        sel = job.selection
        try:
            items = stored_files(config, studies=sel.get("studies", ()), series=sel.get("series", ()),
                                 patients=sel.get("patients", ()))
        except SelectionError as exc:
            if "not in the index" in str(exc):
                raise _Permanent(str(exc)) from exc
            raise
        drv = open_driver(driver_registry(config), job.options.get("driver", "folder"), config)
        try:
            volumes = plan_volumes(items, parse_capacity(job.options.get("capacity")))
        except ValueError as exc:  # an object larger than a volume
            raise _Permanent(str(exc)) from exc
        if len(volumes) > 1 and not job.options.get("split"):
            raise _Permanent(f"needs {len(volumes)} volumes; queue it with --split to write them all")
        target = self._resolve_target(job)
        self._check_target(job, target)
        self.queue.start(job.id, self.claimant, str(target), len(items))
        heartbeat.start()
        partial = target.parent / f".{target.name}.partial-{job.id}"

        def on_object(_n: int, _item: Any, why: str | None) -> None:
            if self.stopping.is_set():
                raise _Stopped()
            heartbeat.written += why is None  # progress counts what is on the medium

        try:
            try:
                shutil.rmtree(partial, ignore_errors=True)  # what a killed try left
                partial.mkdir(parents=True)
            except OSError as exc:
                raise _TargetError(f"cannot write target {target}: {exc.strerror or exc} ({exc.filename})") from exc
            spool = Path(config.node.data_dir) / "spool"
            reports = list(write_volumes(volumes, partial, drv, on_object=on_object, tmp_dir=spool,
                                         identity=getattr(config.node, "implementation_class_uid", None)))
            bad = [r for r in reports if not r.verified]
            if bad:
                raise _TargetError("; ".join(r.line() for r in bad))
            _move_into_place(partial, target, job.id)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
            heartbeat.flush()
        rejected = [f"{uid}: {why}" for r in reports for uid, why in r.rejected]
        text = f"{len(reports)} volume(s), {sum(r.instances for r in reports)} instances, verified"
        if rejected:
            text += f"; not written {len(rejected)}: " + "; ".join(rejected[:3])
        return text

    def _resolve_target(self, job: MediaJob) -> Path:
        """A rule's job: its pattern filled in from the index; a command's: OUT as given."""
        from gateway.index import schema as S
        from gateway_plugins.media_rule import resolve_target

        if job.rule is None:
            return Path(job.target)
        st, p = S.studies, S.patients
        with self.index._connect(write=False) as conn:
            facts = conn.execute(sa.select(st.c.study_date, st.c.accession_number, p.c.patient_id)
                                 .join(p, p.c.id == st.c.patient_fk)
                                 .where(st.c.study_instance_uid == job.study_instance_uid)).first()
        return resolve_target(job.target, study_uid=job.study_instance_uid or "",
                              patient_id=facts.patient_id if facts else None,
                              study_date=facts.study_date if facts else None,
                              accession=facts.accession_number if facts else None)

    def _check_target(self, job: MediaJob, target: Path) -> None:
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            raise _TargetError(f"target {target} exists and is not a folder: move it away or change the "
                               f"target")
        if not target.is_dir() or not any(target.iterdir()):
            return
        owners = self.queue.owners_of(str(target))
        if not any(o.id == job.id or (job.rule is not None and o.rule == job.rule
                                      and o.study_instance_uid == job.study_instance_uid) for o in owners):
            raise _TargetError(f"target {target} is not empty and no earlier export of this "
                               f"{'rule and study' if job.rule else 'job'} wrote it: empty it or change the target")


class _TargetError(Exception):
    """The target cannot take the file-set (its message is the operator's)."""


def _move_into_place(partial: Path, target: Path, job_id: int) -> None:
    """The verified file-set becomes the target; an earlier one there is replaced."""
    if target.is_dir() and any(target.iterdir()):
        old = target.parent / f".{target.name}.old-{job_id}"
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        partial.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return
    if target.is_dir():
        target.rmdir()
    partial.rename(target)


class _Heartbeat:
    """Renews a running job's lease (a driver's write may take longer than the lease)
    and records its progress, at most every few seconds, from a thread of its own."""

    def __init__(self, queue: MediaQueue, job_id: int, claimant: str, lease: float) -> None:
        self.queue, self.job_id, self.claimant, self.lease = queue, job_id, claimant, lease
        self.written = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"media-job-{self.job_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = min(2.0, self.lease / 3)
        while not self._stop.wait(interval):
            self.flush()

    def flush(self) -> None:
        try:
            self.queue.progress(self.job_id, self.claimant, self.written, self.lease)
        except Exception as exc:  # a missed beat: the next one or the lease's length covers it
            log.warning("media job progress not recorded", extra={"job": self.job_id, "error": str(exc)})

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
