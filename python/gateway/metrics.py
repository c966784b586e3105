"""Process-local counters and gauges with Prometheus text rendering.

Each process (the supervisor, every worker, the sender) keeps its own; workers
and the sender publish snapshots in the run directory, and the supervisor's
``/metrics`` aggregates them (:func:`render`):

* **Counters of events** (associations, DIMSE requests, stored bytes,
  forwarded objects...) are **summed**: each process counts the events it
  handled itself, so the sum is the gateway's total.
* **Per-config state** (:data:`PER_CONFIG`) is held alike by every worker —
  each worker watches the config directory and reloads on its own — so it is
  reported **once, as the maximum over the processes**: the newest
  ``gateway_config_generation``, the latest
  ``gateway_config_last_reload_success_timestamp_seconds``, and
  ``gateway_config_reloads_total`` counting each change of the directory once
  (not once per worker; every worker reacts to every change).
  ``gateway_worker_config_generation{worker="N"}`` shows each worker's own
  generation, to spot one that lags (e.g. a restarted worker).
* Other gauges are summed per label set; the per-process ones carry a
  ``worker`` label (``gateway_associations_active``) or come from the single
  sender process (``gateway_forward_*``).

Values are printed exactly: integers as integers, floats with ``repr``
precision (a Unix timestamp keeps its fraction of a second).
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Iterable

Key = tuple[str, tuple[tuple[str, str], ...]]

#: Metrics every worker holds identically (they follow the config): the
#: maximum over the processes, not the sum.
PER_CONFIG = frozenset({
    "gateway_config_generation",
    "gateway_config_last_reload_success_timestamp_seconds",
    "gateway_config_reloads_total",
})


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[Key, float] = {}
        self._gauges: dict[Key, float] = {}

    @staticmethod
    def _key(name: str, labels: dict[str, object]) -> Key:
        return name, tuple(sorted((k, str(v)) for k, v in labels.items()))

    def inc(self, name: str, value: float = 1, **labels: object) -> None:
        key = self._key(name, labels)
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + value

    def set(self, name: str, value: float, **labels: object) -> None:
        with self._lock:
            self._gauges[self._key(name, labels)] = value

    def reset(self) -> None:
        """Forget everything (a forked child must not re-publish its parent's values)."""
        with self._lock:
            self._counters.clear()
            self._gauges.clear()

    def get(self, name: str, **labels: object) -> float:
        key = self._key(name, labels)
        with self._lock:
            return self._counters.get(key, self._gauges.get(key, 0))

    def snapshot(self) -> dict[str, list]:
        with self._lock:
            return {
                "counters": [[n, dict(l), v] for (n, l), v in self._counters.items()],
                "gauges": [[n, dict(l), v] for (n, l), v in self._gauges.items()],
            }

    def publish(self, path: Path) -> None:
        """Write the snapshot atomically for the supervisor to aggregate."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, path)


def render(snapshots: Iterable[dict[str, list]]) -> str:
    """Prometheus exposition text of the processes' snapshots (aggregated as the module says)."""
    totals: dict[Key, float] = {}
    kinds: dict[str, str] = {}
    for snap in snapshots:
        for kind in ("counters", "gauges"):
            for name, labels, value in snap.get(kind, []):
                key = Metrics._key(name, labels)
                if key not in totals:
                    totals[key] = value
                elif name in PER_CONFIG:
                    totals[key] = max(totals[key], value)
                else:
                    totals[key] = totals[key] + value
                kinds[name] = "counter" if kind == "counters" else "gauge"
    lines = []
    for name in sorted(kinds):
        lines.append(f"# TYPE {name} {kinds[name]}")
        for (n, labels), value in sorted(totals.items()):
            if n != name:
                continue
            lab = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{lab}}} {format_value(value)}" if lab else f"{name} {format_value(value)}")
    return "\n".join(lines) + "\n"


def format_value(value: float) -> str:
    """Exact text of a sample value: ``3``, ``1718000000.123456``, ``+Inf``, ``NaN``."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2 ** 53:
        return str(int(value))
    return repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


METRICS = Metrics()
