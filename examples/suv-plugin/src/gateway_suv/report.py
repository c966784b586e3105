"""How factors read to an operator."""

from __future__ import annotations

from typing import Any, Iterable

from gateway_suv.suv import Factors


def chosen(row: Any, prefer: str) -> tuple[float | None, str]:
    return Factors(row.philips, row.computed, row.why).chosen(prefer)


def series_column(rows: Iterable[Any], prefer: str) -> dict[str, str]:
    """series UID -> "3.237e-04 g/ml (computed)", or a range when the images differ (DecayCorrection NONE)."""
    per_series: dict[str, list[tuple[float, str]]] = {}
    for row in rows:
        value, source = chosen(row, prefer)
        if value is not None:
            per_series.setdefault(row.series_instance_uid, []).append((value, source))
    out = {}
    for uid, values in per_series.items():
        low, high = min(v for v, _ in values), max(v for v, _ in values)
        sources = "/".join(sorted({s for _, s in values}))
        text = f"{low:.4g}" if high - low <= 1e-9 * high else f"{low:.4g}-{high:.4g}"
        out[uid] = f"{text} g/ml ({sources})"
    return out
