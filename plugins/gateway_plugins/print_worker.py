"""Working off print jobs (PRN-7): one thread per printer in the sender process, and the
same :func:`run_job` for the ``print`` command that prints its own job in-process.

A printer's worker claims its next job (HIGH, MED, LOW, then oldest first), renders it,
hands the films to its driver and records the outcome. The driver is kept between jobs —
for ``dicom`` that is the association (seed 003 B 3.1.1.1: one association for a series
of film sessions) — and closed once the printer had no job for its ``idle_release``
seconds, when its settings change, and when the sender stops. A failed try is retried
``retries`` times with backoff; one that can never print as asked (an unreadable
object, a UID the index lacks) fails at once. A claimed job left by a killed process
is released by the next sender on this host (its claimant is gone) and printed again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gateway_plugins.print_queue import PrintJob, PrintQueue, worker_id

log = logging.getLogger("gateway.print")

#: A claim's lease; renewed before every step, so only a hung or killed worker loses it.
LEASE = 600.0
#: How often a manager asks the index which printers have due jobs.
POLL = 0.5
#: How often it frees jobs claimed by processes of this host that are gone.
REAP_INTERVAL = 30.0


@dataclass
class Rendered:
    pictures: list[Any]
    films: list[Any]
    display_format: str
    film_size: str
    orientation: str

    def summary(self, settings: Any) -> str:
        sheet = self.films[0].sheet
        return (f"{len(self.pictures)} images on {len(self.films)} film(s) of {self.display_format} ({self.film_size} "
                f"{self.orientation}, {sheet.width}×{sheet.height} px at {settings.resolution} dpi)")


@dataclass
class Outcome:
    """What one try of a job came to: the job's new state, the driver's result (done) or the whole error."""

    state: str
    result: Any = None
    error: str = ""


class Unprintable(Exception):
    """A job that can never print as asked: retrying cannot help."""


def source_paths(config: Any, source: dict[str, Any], items: list[str] | None = None) -> tuple[list[Path], bool]:
    """The files of a job's source and whether to sort them (stored objects: by series and
    Instance Number; files: as given). ``items``: the instances a rule collected."""
    from gateway.index.selection import SelectionError, stored_files

    if source.get("files"):
        return [Path(p) for p in source["files"]], False
    studies, series = list(source.get("studies") or ()), list(source.get("series") or ())
    try:
        found = stored_files(config, studies=studies, series=series)
    except SelectionError as exc:
        raise Unprintable(str(exc)) from None
    if items is not None:
        wanted = set(items)
        found = [f for f in found if f.sop_instance_uid in wanted]
    return [f.path for f in found], True


def render(paths: list[Path], settings: Any, options: dict[str, Any], *, sort: bool) -> Rendered:
    """The films of a job: ``options`` (format, film, orientation) over the printer's defaults."""
    from gateway_plugins.print_render import load_pictures, plan_films

    fmt = options.get("format") or settings.display_format
    film_size = options.get("film") or settings.film_size
    orientation = options.get("orientation") or settings.orientation
    pictures = load_pictures(paths, settings, sort=sort)
    films = plan_films(pictures, settings, display_format=fmt, film_size=film_size, orientation=orientation)
    return Rendered(pictures, films, fmt, film_size, orientation)


def run_job(job: PrintJob, config: Any, settings: Any, driver: Any, queue: PrintQueue, claimant: str,
            say: Callable[[str], None] | None = None) -> Outcome:
    """Print one claimed job on ``driver`` and record the outcome (``say``: the render summary)."""
    from gateway_plugins.print_config import PrinterConfigError
    from gateway_plugins.print_drivers import FilmJob
    from gateway_plugins.print_render import RenderError
    from gateway_plugins.print_scu import PrintCancelled

    def cancelled() -> bool:
        return queue.cancel_requested(job.id, claimant, LEASE)

    started = time.monotonic()
    try:
        if cancelled():
            queue.cancelled(job.id, "cancelled before printing")
            return Outcome("cancelled")
        source = dict(job.source)
        items = None
        if source.get("collected"):
            source["series"], items = [job.series_instance_uid], queue.items(job.id)
        paths, sort = source_paths(config, source, items)
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise Unprintable(f"no such file: {', '.join(missing[:5])}")
        rendered = render(paths, settings, job.options, sort=sort)
        if say:
            say(rendered.summary(settings))
        film_job = FilmJob(job.id, job.printer, rendered.films, job.options.get("copies"), rendered.film_size,
                           rendered.orientation, job.priority, cancelled)
        result = driver.print(film_job)
        result.images = len(rendered.pictures)  # the objects' frames, not the image boxes (a sheet is one box)
    except PrintCancelled as exc:
        queue.cancelled(job.id, f"cancelled while printing, before {exc.step}: {exc.printed} of {exc.total} "
                                "film(s) printed; film session deleted")
        log.info("print job cancelled", extra={"job": job.id, "printer": job.printer, "printed": exc.printed})
        return Outcome("cancelled")
    except (Unprintable, RenderError, PrinterConfigError, LookupError) as exc:
        queue.fail(job.id, str(exc), retries=0, backoff=1.0, retry=False)
        log.error("print job failed", extra={"job": job.id, "printer": job.printer, "error": str(exc)})
        return Outcome("failed", error=str(exc))
    except Exception as exc:  # PrintError, a refused association, an index hiccup: worth another try
        from gateway_plugins.print_scu import PrintError

        error = str(exc) if isinstance(exc, PrintError) else f"{type(exc).__name__}: {exc}"
        state = queue.fail(job.id, error, retries=settings.retries, backoff=settings.retry_backoff)
        log.warning("print job failed; " + ("retried later" if state == "pending" else "no tries left"),
                    exc_info=None if isinstance(exc, PrintError) else exc,  # a driver's bug: where it was
                    extra={"job": job.id, "printer": job.printer, "error": error, "attempt": job.attempts + 1})
        return Outcome(state, error=error)
    text = f"printed {result.films} film(s), {result.images} image(s)"
    if result.note:
        text += f"; {result.note}"
    if result.warnings:
        text += "; warnings: " + "; ".join(result.warnings)
    queue.done(job.id, text)
    log.info("print job done", extra={"job": job.id, "printer": job.printer, "films": result.films,
                                      "s": round(time.monotonic() - started, 2)})
    return Outcome("done", result)


class PrinterWorker(threading.Thread):
    """The jobs of one printer, one at a time, on one driver kept open between them."""

    def __init__(self, name: str, manager: "PrintWorkers") -> None:
        super().__init__(name=f"print-{name}", daemon=True)
        self.printer, self.manager = name, manager
        self.wake = threading.Event()
        self._driver: Any = None
        self._settings: Any = None
        self._last_used = 0.0

    def _current_settings(self) -> Any:
        from gateway_plugins.print_config import PrinterConfigError, printer_settings

        try:
            return printer_settings(self.manager.config, self.printer)[1]
        except PrinterConfigError:
            return None  # removed from the config: its jobs wait for it to come back

    def _close(self) -> None:
        if self._driver is not None:
            try:
                self._driver.close()
            except Exception as exc:
                log.warning("print driver close failed", extra={"printer": self.printer, "error": str(exc)})
            self._driver = None

    def run(self) -> None:
        m = self.manager
        look = True  # claim only when woken (the manager saw a due job) or after a job: no idle write locks
        try:
            while not m.stopping.is_set():
                settings = self._current_settings()
                if settings != self._settings:  # a reload changed the printer: a new driver
                    self._close()
                    self._settings = settings
                job = None
                if look and settings is not None:
                    try:
                        job = m.queue.claim(self.printer, m.claimant, LEASE)
                    except Exception as exc:
                        log.warning("print queue unavailable", extra={"printer": self.printer, "error": str(exc)})
                if job is None:
                    idle = time.monotonic() - self._last_used
                    if self._driver is not None and settings is not None and idle >= settings.idle_release:
                        self._close()  # PRN-7: an idle association is released
                    look = self.wake.wait(POLL)
                    self.wake.clear()
                    continue
                if m.stopping.is_set():
                    m.queue.release(job.id)
                    break
                self._work(job, settings)
                look = True
        finally:
            self._close()

    def _work(self, job: PrintJob, settings: Any) -> None:
        from gateway_plugins.print_drivers import create_driver

        m = self.manager
        try:
            if self._driver is None:
                self._driver = create_driver(self.printer, settings, m.config)
            run_job(job, m.config, settings, self._driver, m.queue, m.claimant)
        except Exception as exc:  # the driver could not be built: the job is not lost
            m.queue.fail(job.id, f"{type(exc).__name__}: {exc}", retries=settings.retries,
                         backoff=settings.retry_backoff)
            log.error("print job failed", exc_info=exc, extra={"job": job.id, "printer": self.printer})
        self._last_used = time.monotonic()


class PrintWorkers(threading.Thread):
    """Finds printers with due jobs and wakes (or starts) their workers; promotes the jobs
    of series that completed while no event reached us."""

    def __init__(self, config: Any, index: Any, stopping: threading.Event) -> None:
        super().__init__(name="print-workers", daemon=True)
        self.config, self.index, self.stopping = config, index, stopping
        self.queue = PrintQueue(index)
        self.claimant = worker_id()
        self.workers: dict[str, PrinterWorker] = {}

    def update(self, config: Any) -> None:
        self.config = config

    def run(self) -> None:
        started = False
        reaped = 0.0
        while not self.stopping.is_set():
            try:
                if not started:
                    self.queue.ensure()
                    started = True
                # At start (a killed sender's jobs) and now and then after (a killed `print` command's).
                if time.monotonic() - reaped >= REAP_INTERVAL:
                    reaped = time.monotonic()
                    freed = self.queue.release_dead_claims()
                    if freed:
                        log.warning("released print jobs claimed by a process that is gone", extra={"jobs": freed})
                self.queue.promote()
                due = self.queue.due_printers()
            except Exception as exc:  # the index is unavailable: try again later
                log.warning("print queue unavailable", extra={"error": str(exc)})
                self.stopping.wait(5.0)
                continue
            for name in due:
                worker = self.workers.get(name)
                if worker is None or not worker.is_alive():
                    worker = self.workers[name] = PrinterWorker(name, self)
                    worker.start()
                worker.wake.set()
            self.stopping.wait(POLL)
        for worker in self.workers.values():  # they release their associations
            worker.wake.set()
            worker.join(timeout=5)


_lock = threading.Lock()
_manager: PrintWorkers | None = None


def poll(config: Any, index: Any, stopping: threading.Event) -> None:
    """``gateway_sender_poll``: start the workers once printers are configured, then feed them the config."""
    global _manager
    with _lock:
        if _manager is not None and _manager.is_alive():
            _manager.update(config)
            return
        if stopping.is_set() or not getattr(config, "printers", None):
            return
        _manager = PrintWorkers(config, index, stopping)
        _manager.start()


def series_complete(series_uid: str, config: Any) -> None:
    """``gateway_series_complete``: the series' collecting jobs join the queue (the manager
    also finds them from the index's series activity, should this event be missed)."""
    manager = _manager
    if manager is None or not manager.is_alive():
        return
    try:
        if manager.queue.exists():
            manager.queue.promote(series_uid)
    except Exception as exc:
        log.warning("print: series completion not recorded; retried from the index",
                    extra={"series_instance_uid": series_uid, "error": str(exc)})
