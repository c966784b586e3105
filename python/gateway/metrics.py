"""Process-local counters and gauges with Prometheus text rendering.

Each worker process keeps its own; the supervisor's HTTP endpoint sums the
snapshots workers publish in the run directory (see gateway.worker).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Iterable

Key = tuple[str, tuple[tuple[str, str], ...]]


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
    """Prometheus exposition text; counters summed, gauges summed per label set."""
    totals: dict[Key, float] = {}
    kinds: dict[str, str] = {}
    for snap in snapshots:
        for kind in ("counters", "gauges"):
            for name, labels, value in snap.get(kind, []):
                key = Metrics._key(name, labels)
                totals[key] = totals.get(key, 0) + value
                kinds[name] = "counter" if kind == "counters" else "gauge"
    lines = []
    for name in sorted(kinds):
        lines.append(f"# TYPE {name} {kinds[name]}")
        for (n, labels), value in sorted(totals.items()):
            if n != name:
                continue
            lab = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{lab}}} {value:g}" if lab else f"{name} {value:g}")
    return "\n".join(lines) + "\n"


METRICS = Metrics()
