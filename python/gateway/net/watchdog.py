"""Time budgets for service calls without a thread hand-off per call.

A C-STORE on the Rust receive path runs its service in the association's own
thread. One watchdog thread per process holds the deadlines; when a call
overruns, the watchdog answers the peer itself (the failure status the call
would have earned, DESIGN §3) and marks the message as answered, so the late
result of the call is dropped instead of sent twice. The association then
waits for the call before it serves its next request: a hung plugin delays
that association, never the answer, and never other associations.

This replaced a thread-pool round trip per object (~1 ms of a ~10 ms store on
this 2-core machine, bench/RESULTS.md); the pool stays for the paths that
cannot answer from another thread (the pynetdicom receive path, the rare
services).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Callable

log = logging.getLogger("gateway.net")


class Watchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._pending: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None

    def watch(self, budget: float, on_overrun: Callable[[], None]) -> int:
        """Start timing a call; ``on_overrun`` runs on the watchdog thread if the
        call is still going after ``budget`` seconds. Returns a token for ``done``."""
        token = next(self._ids)
        with self._cond:
            if self._thread is None or not self._thread.is_alive():  # first use, or after fork
                self._thread = threading.Thread(target=self._run, name="gw-watchdog", daemon=True)
                self._thread.start()
            self._pending[token] = on_overrun
            heapq.heappush(self._heap, (time.monotonic() + budget, token))
            if self._heap[0][1] == token:
                self._cond.notify()
        return token

    def done(self, token: int) -> bool:
        """The call ended: True if in time, False if the watchdog already answered for it."""
        with self._cond:
            return self._pending.pop(token, None) is not None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, token = self._heap[0]
                now = time.monotonic()
                if deadline > now:
                    self._cond.wait(deadline - now)
                    continue
                heapq.heappop(self._heap)
                on_overrun = self._pending.pop(token, None)  # None: it finished in time
            if on_overrun is not None:
                try:
                    on_overrun()
                except Exception as exc:  # the answer could not go out: the association is failing anyway
                    log.error("could not answer for an overrunning service", exc_info=exc)


WATCHDOG = Watchdog()
