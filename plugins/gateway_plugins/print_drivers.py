"""Print drivers (issue 14, hook API 1.2): where a print job's rendered films go.

A printer file names its driver (``driver = "dicom"`` by default); the plugin host's
print driver registry (``gateway_register_print_drivers``) builds it with
``factory(printer, config)``. Built in:

* ``dicom`` — a Basic Grayscale / Color Print Management SCP through this plugin's
  Print SCU; the association is opened by the first job and kept for the next ones
  until the worker closes the driver (``idle_release``, PRN-7);
* ``png`` — one 8-bit PNG per film, exactly the sheets the ``dicom`` driver would
  send (``--preview`` is this driver writing to the path given).

The interface (docs/print.md, "Print drivers") is three methods: ``status()``,
``print(job) -> PrintResult`` and ``close()``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from gateway_plugins.print_config import PrinterSettings
from gateway_plugins.print_scu import PrintCancelled, PrintError, PrinterStatus, PrintResult, PrintSession, run_session

__all__ = ["Printer", "FilmJob", "PrintDriver", "DicomDriver", "PngDriver", "register", "registered", "create_driver"]

log = logging.getLogger("gateway.print")


@dataclass(frozen=True)
class Printer:
    """What a driver factory gets: the printer's name (its file's stem) and validated
    ``printers/<name>.toml``; ``options`` is the file's ``[options]`` table, a third-party
    driver's own settings."""

    name: str
    settings: PrinterSettings

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.settings.options)


def _never() -> bool:
    return False


@dataclass
class FilmJob:
    """One print job as a driver sees it: the rendered films and how to print them."""

    id: int | None
    printer: str
    films: Sequence[Any]          # gateway_plugins.print_render.Film: .display_format, .boxes, .sheet
    copies: int | None
    film_size: str
    orientation: str
    priority: str                 # HIGH, MED, LOW (the Film Session's Print Priority)
    #: True once an operator cancelled the job: ask before each step, raise PrintCancelled
    cancelled: Callable[[], bool] = field(default=_never)

    @property
    def images(self) -> int:
        return sum(len(f.boxes) for f in self.films)


class PrintDriver(Protocol):
    def status(self) -> PrinterStatus: ...

    def print(self, job: FilmJob) -> PrintResult: ...

    def close(self) -> None: ...


class DicomDriver:
    """A DICOM Print SCP (PRN-1..PRN-8). One association, opened by the first job and
    kept between jobs; a failed job aborts it (PRN-8) and the next job opens a new one."""

    def __init__(self, printer: Printer, config: Any) -> None:
        self.printer, self.config = printer, config
        self._session: PrintSession | None = None

    def _open(self) -> PrintSession:
        s = self._session
        if s is not None and s.assoc is not None and s.assoc.is_established:
            return s
        if s is not None:  # the printer released or aborted it while we were idle
            s.close(abort=True)
        self._session = PrintSession(self.printer.name, self.printer.settings, self.config).open()
        log.info("print association opened", extra={"printer": self.printer.name})
        return self._session

    def status(self) -> PrinterStatus:
        try:
            return self._open().printer_status()
        except Exception:
            self.close(abort=True)
            raise

    def print(self, job: FilmJob) -> PrintResult:
        session = self._open()
        # The job's priority is the Film Session's Print Priority (PRN-3).
        session.settings = self.printer.settings.model_copy(update={"priority": job.priority})
        try:
            return run_session(session, job.films, copies=job.copies, film_size=job.film_size,
                               orientation=job.orientation, cancelled=job.cancelled)
        except PrintCancelled:
            raise  # the film session was deleted in order; the association is still good
        except Exception:
            self.close(abort=True)  # PRN-8: any failure aborts the association
            raise

    def close(self, abort: bool = False) -> None:
        if self._session is not None:
            self._session.close(abort=abort)
            self._session = None
            log.info("print association closed", extra={"printer": self.printer.name, "aborted": abort})


class PngDriver:
    """Films as 8-bit grayscale or RGB PNG files: ``output`` (default DATA_DIR/films/NAME)
    gets ``job-<id>-<n>.png`` per film; ``paths`` (``--preview``) names the files instead."""

    def __init__(self, printer: Printer, config: Any, paths: Sequence[Path] | None = None) -> None:
        self.printer, self.paths = printer, list(paths) if paths is not None else None
        out = printer.settings.output
        self.folder = Path(out) if out else Path(config.node.data_dir) / "films" / printer.name

    def status(self) -> PrinterStatus:
        return PrinterStatus("NORMAL", "", self.printer.name, {"Output": str(self.folder)})

    def print(self, job: FilmJob) -> PrintResult:
        from gateway_plugins.print_render import write_png

        paths = self.paths or [self.folder / f"job-{job.id}-{n}.png" for n in range(1, len(job.films) + 1)]
        if len(paths) != len(job.films):
            raise PrintError(f"png driver: {len(paths)} file names for {len(job.films)} films")
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        for n, (film, path) in enumerate(zip(job.films, paths)):
            if job.cancelled():
                raise PrintCancelled(n, len(job.films), f"film {n + 1}")
            sheet = film.sheet
            write_png(path, sheet.width, sheet.height, sheet.channels, sheet.pixels)
        return PrintResult(len(job.films), job.images, [], None, note="wrote " + ", ".join(map(str, paths)))

    def close(self) -> None:
        """Nothing is held between jobs."""


_registry: list[Any] = []  # the newest host's print driver registry (as the storage plugin keeps its backends)


def register(registry: Any) -> None:
    registry.add("dicom", DicomDriver)
    registry.add("png", PngDriver)
    # gateway_config_loaded and the sender's workers get no host: they look drivers up here.
    _registry[:] = [registry]


def registered() -> Any:
    """The print driver registry of the newest plugin host in this process, or None."""
    return _registry[0] if _registry else None


def create_driver(name: str, settings: PrinterSettings, config: Any) -> PrintDriver:
    """The driver the printer names; a process that loaded no plugin host (a command)
    loads one. LookupError names the registered drivers."""
    registry = registered()
    if registry is None:
        from gateway.plugins import load_host

        registry = load_host(config.disabled_plugins, config.plugins.modules).print_drivers
    return registry.create(settings.driver, Printer(name, settings), config)
