"""A small progress bar for long CLI operations (stderr, redrawn in place on a TTY)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Counts objects, not attempts: ``step`` once per object with its outcome;
    ``close`` prints "LABEL: N <verb>, M failed of T in S s"."""

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None, width: int = 30,
                 verb: str = "done") -> None:
        self.total = max(total, 0)
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.verb = verb
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._tty = getattr(self.stream, "isatty", lambda: False)()
        self._last = 0.0

    def step(self, item: str = "", failed: bool = False) -> None:
        self.done += 1
        self.failed += int(failed)
        now = time.monotonic()
        if self._tty and (now - self._last > 0.05 or self.done == self.total):
            self._last = now
            frac = self.done / self.total if self.total else 1.0
            bar = "#" * int(frac * self.width)
            extra = f" {self.failed} failed" if self.failed else ""
            self.stream.write(f"\r{self.label} [{bar:<{self.width}}] {self.done}/{self.total}{extra} {item[-40:]:<40}")
            self.stream.flush()

    @property
    def ok(self) -> int:
        return self.done - self.failed

    def close(self, summary: bool = True) -> None:
        """End the bar; ``summary=False`` when the caller prints a summary of its own."""
        if self._tty:
            self.stream.write("\n")
        if not summary:
            self.stream.flush()
            return
        elapsed = time.monotonic() - self.started
        self.stream.write(f"{self.label}: {self.ok} {self.verb}, {self.failed} failed of {self.total} "
                          f"in {elapsed:.1f} s\n")
        self.stream.flush()
