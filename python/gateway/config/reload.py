"""Watch a config directory and hand each valid change to the running gateway.

Reload is validate, provision, swap, drain (STYLE 12, DESIGN §4):

1. watchdog reports file events under the directory (recursively); a burst
   (an editor's write-rename dance, a `cp -r`) is debounced into one check;
2. the digest of the TOML files is compared with the last one seen: unchanged
   content (a touch, a save without edits, events from a data dir inside the
   config dir) does nothing;
3. the new directory is validated by :func:`load_config`; a :class:`ConfigError`
   goes to ``on_error`` and the caller keeps its last good config;
4. a valid config goes to ``on_change``, where the caller provisions (opens new
   ports) and then swaps, e.g. with :meth:`ConfigHolder.swap`. Running
   associations hold the frozen config they started with, so they drain on it.
   An exception from ``on_change`` is reported to ``on_error`` too.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from gateway.config.loader import SUBDIRS, ConfigError, digest_of, load_config
from gateway.config.models import GatewayConfig

log = logging.getLogger("gateway.config")


class ConfigWatcher(FileSystemEventHandler):
    """``ConfigWatcher(dir, on_change, on_error, debounce=0.5).start()``; ``stop()`` when done.

    ``overrides`` (the CLI flags) are re-applied on every reload. ``digest`` is
    the digest of the config already running (``config.digest``); by default
    the directory's digest when the watcher is created.
    """

    def __init__(self, directory: Path | str, on_change: Callable[[GatewayConfig], None],
                 on_error: Callable[[Exception], None], debounce: float = 0.5,
                 overrides: dict | None = None, digest: str | None = None) -> None:
        self.directory = Path(directory)
        self.on_change = on_change
        self.on_error = on_error
        self.debounce = debounce
        self.overrides = overrides or {}
        self.digest = digest if digest is not None else digest_of(self.directory)
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()        # guards _timer
        self._check_lock = threading.Lock()  # one check at a time (timer and SIGHUP)
        self._stopped = False
        self._observer: Any = None

    def start(self) -> "ConfigWatcher":
        # The directory and its config subdirectories, each non-recursively: the
        # loader reads nothing deeper, and a data directory inside the config
        # directory (`serve --config .` with the default ./gateway-data) would
        # otherwise cost inotify events for every stored file.
        self._observer = Observer()
        self._watched: set[str] = set()
        self._watch(self.directory)
        for sub in SUBDIRS:
            if (self.directory / sub).is_dir():
                self._watch(self.directory / sub)
        self._observer.daemon = True
        self._observer.start()
        return self

    def _watch(self, directory: Path) -> None:
        if str(directory) not in self._watched:
            self._watched.add(str(directory))
            self._observer.schedule(self, str(directory), recursive=False)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._timer:
                self._timer.cancel()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)

    def on_any_event(self, event: Any) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = (str(getattr(event, "src_path", "")), str(getattr(event, "dest_path", "") or ""))
        if event.is_directory:
            new_subdirs = [Path(p) for p in paths if p and Path(p).parent == self.directory
                           and Path(p).name in SUBDIRS and Path(p).is_dir()]
            if not new_subdirs and not any(Path(p).parent == self.directory and Path(p).name in SUBDIRS
                                           for p in paths if p):
                return  # a data directory (or anything else) inside the config directory
            for sub in new_subdirs:  # e.g. `mkdir routes` after start: watch it too
                self._watch(sub)
        elif not any(p.endswith(".toml") for p in paths):
            return  # editor swap files...
        with self._lock:
            if self._stopped:
                return
            if self._timer:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce, self.check)
            self._timer.daemon = True
            self._timer.start()

    def check(self) -> bool:
        """Reload now if the content changed (also callable directly, e.g. on SIGHUP).

        Returns True when something changed (and on_change or on_error was called).
        """
        with self._check_lock:
            if self._stopped:
                return False
            digest = digest_of(self.directory)
            if digest == self.digest:
                return False
            self.digest = digest  # a broken version is reported once, not on every event
            try:
                config = load_config(self.directory, self.overrides)
            except ConfigError as exc:
                log.error("config invalid; keeping the last good config", extra={"errors": str(exc).splitlines()})
                self._call(self.on_error, exc)
                return True
            try:
                self.on_change(config)
            except Exception as exc:  # the caller's provisioning failed; keep watching
                log.error("applying the new config failed", exc_info=exc)
                self._call(self.on_error, exc)
            return True

    @staticmethod
    def _call(callback: Callable[[Exception], None], exc: Exception) -> None:
        try:
            callback(exc)
        except Exception:  # never let a reporting bug kill the watcher thread
            log.exception("config on_error callback failed")


class ConfigHolder:
    """The config new work should use, swapped atomically.

    Readers take ``holder.current`` once and keep that reference for the whole
    association or operation; :meth:`swap` replaces it by one reference
    assignment, so a reader sees either the old or the new config, never a mix.
    The counters and timestamps are what the metrics endpoint and the CLI report.
    """

    def __init__(self, config: GatewayConfig) -> None:
        self._lock = threading.Lock()
        self.current: GatewayConfig = config
        self.generation = 1
        self.last_error: str | None = None
        self.last_error_ts: float | None = None
        self.last_reload_ok_ts: float | None = None
        self.reloads_ok = 0
        self.reloads_failed = 0

    def swap(self, new: GatewayConfig) -> GatewayConfig:
        """Make ``new`` current; return the old one (for draining)."""
        with self._lock:
            old, self.current = self.current, new
            self.generation += 1
            self.reloads_ok += 1
            self.last_reload_ok_ts = time.time()
            self.last_error = None
            return old

    def fail(self, error: Exception | str) -> None:
        """Record a rejected reload; ``current`` stays as it was."""
        with self._lock:
            self.reloads_failed += 1
            self.last_error = str(error)
            self.last_error_ts = time.time()

    def watch(self, directory: Path | str, provision: Callable[[GatewayConfig], None] | None = None,
              debounce: float = 0.5, overrides: dict | None = None) -> ConfigWatcher:
        """A started watcher that provisions (optional; raising rejects the config) then swaps."""

        def on_change(new: GatewayConfig) -> None:
            if provision is not None:
                provision(new)
            self.swap(new)

        return ConfigWatcher(directory, on_change, self.fail, debounce=debounce, overrides=overrides,
                             digest=self.current.digest if self.current.source_dir is not None else None).start()
