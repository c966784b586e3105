"""Watch a config directory and hand each valid change to the running gateway.

Bursts of file events (an editor's write-rename dance, a `cp -r`) are
debounced; unchanged content (same digest) is ignored; a new config is
validated before anyone sees it. On error the caller keeps the last good
config (DESIGN §4, STYLE 12).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from gateway.config.loader import ConfigError, digest_of, load_config

log = logging.getLogger("gateway.config")


class ConfigWatcher(FileSystemEventHandler):
    def __init__(self, directory: Path, on_change: Callable[[Any], None], on_error: Callable[[Exception], None],
                 debounce: float = 0.5, overrides: dict | None = None, digest: str | None = None) -> None:
        self.directory = Path(directory)
        self.on_change = on_change
        self.on_error = on_error
        self.debounce = debounce
        self.overrides = overrides or {}
        self._digest = digest if digest is not None else digest_of(self.directory)
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._observer: Any = None

    def start(self) -> "ConfigWatcher":
        self._observer = Observer()
        self._observer.schedule(self, str(self.directory), recursive=True)
        self._observer.daemon = True
        self._observer.start()
        return self

    def stop(self) -> None:
        with self._lock:
            if self._timer:
                self._timer.cancel()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(5)

    def on_any_event(self, event: Any) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        with self._lock:
            if self._timer:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce, self.check)
            self._timer.daemon = True
            self._timer.start()

    def check(self) -> None:
        """Reload now if the content changed (also callable directly, e.g. on SIGHUP)."""
        digest = digest_of(self.directory)
        if digest == self._digest:
            return
        self._digest = digest
        try:
            config = load_config(self.directory, self.overrides)
        except ConfigError as exc:
            self.on_error(exc)
            return
        try:
            self.on_change(config)
        except Exception as exc:  # the caller's provisioning failed; keep watching
            log.error("applying the new config failed", exc_info=exc)
            self.on_error(exc)
