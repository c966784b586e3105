"""How factors read to an operator."""

from __future__ import annotations

from typing import Any, Iterable

from gateway_suv.suv import Factors


def chosen(row: Any, prefer: str) -> tuple[float | None, str]:
    return Factors(row.philips, row.computed, row.why).chosen(prefer)


def series_column(rows: Iterable[Any], prefer: str) -> dict[str, str]:
    """series UID -> "0.0003237 g/ml (computed)", a range when the images differ
    (Decay Correction NONE), or "- (why)" when none of its images has a factor."""
    per_series: dict[str, list[tuple[float, str]]] = {}
    why_not: dict[str, str] = {}
    for row in rows:
        value, source = chosen(row, prefer)
        if value is not None:
            per_series.setdefault(row.series_instance_uid, []).append((value, source))
        else:
            why_not.setdefault(row.series_instance_uid, row.why)
    out = {uid: f"- ({why})" for uid, why in why_not.items() if uid not in per_series}
    for uid, values in per_series.items():
        low, high = min(v for v, _ in values), max(v for v, _ in values)
        sources = "/".join(sorted({s for _, s in values}))
        text = f"{low:.4g}" if high - low <= 1e-9 * high else f"{low:.4g}-{high:.4g}"
        out[uid] = f"{text} g/ml ({sources})"
    return out
