"""A circuit breaker per destination (DESIGN §2 "trip a circuit breaker on a dead peer").

``threshold`` consecutive association failures open the circuit. While it is
open nobody tries the peer and queued jobs are not charged attempts, so an
outage does not dead-letter the backlog. After ``cooldown`` seconds one
caller gets a probe (half-open): its success closes the circuit, its failure
opens it for another cooldown.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["CircuitBreaker", "BreakerState", "CLOSED", "OPEN", "HALF_OPEN"]

CLOSED, HALF_OPEN, OPEN = "closed", "half-open", "open"
#: Gauge values of ``gateway_forward_breaker_state``.
STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass(frozen=True)
class BreakerState:
    """A snapshot for metrics and ``dicom-gateway queue ls``."""

    state: str
    failures: int
    opened: int            # how many times the circuit opened
    retry_in: float        # seconds until the next probe (open only)
    last_error: str | None


class CircuitBreaker:
    """Thread-safe: every sender thread of one destination shares one breaker."""

    def __init__(self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened = 0
        self._opened_at = 0.0
        self._probing = False
        self.last_error: str | None = None

    def configure(self, threshold: int, cooldown: float) -> None:
        """New [forwarding] settings (hot reload); the current state is kept."""
        with self._lock:
            self.threshold, self.cooldown = threshold, cooldown

    @property
    def state(self) -> str:
        with self._lock:
            return self._peek()

    def _peek(self) -> str:
        if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown:
            return HALF_OPEN
        return self._state

    def may_try(self) -> bool:
        """Whether trying now could be allowed (no side effect): for the scheduler."""
        with self._lock:
            return self._peek() == CLOSED or (self._peek() == HALF_OPEN and not self._probing)

    def acquire(self) -> str | None:
        """Ask to open an association: ``CLOSED`` (go), ``HALF_OPEN`` (go: you are the
        one probe, and must then call success, failure or cancel) or None (open: don't)."""
        with self._lock:
            state = self._peek()
            if state == CLOSED:
                return CLOSED
            if state == HALF_OPEN and not self._probing:
                self._state = HALF_OPEN
                self._probing = True
                return HALF_OPEN
            return None

    def cancel(self) -> None:
        """The probe was not used (nothing to send): let another caller probe."""
        with self._lock:
            self._probing = False

    def success(self) -> None:
        with self._lock:
            self._state, self._failures, self._probing = CLOSED, 0, False
            self.last_error = None

    def failure(self, error: str) -> bool:
        """Count an association failure; returns True when this one opened the circuit."""
        with self._lock:
            self._failures += 1
            self.last_error = error
            was = self._peek()
            probing, self._probing = self._probing, False
            if probing or was == HALF_OPEN or (was == CLOSED and self._failures >= self.threshold):
                self._state = OPEN
                self._opened_at = self._clock()
                self._opened += 1
                return was != OPEN
            return False

    def snapshot(self) -> BreakerState:
        with self._lock:
            state = self._peek()
            retry_in = max(0.0, self._opened_at + self.cooldown - self._clock()) if state == OPEN else 0.0
            return BreakerState(state, self._failures, self._opened, round(retry_in, 3), self.last_error)
