"""How many volumes a selection needs and which study goes on which (MED-2).

Studies are packed in order, first fit; a study goes whole onto one volume and
is split across volumes only when it alone is larger than a volume.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

__all__ = ["CAPACITIES", "parse_capacity", "plan_volumes", "DICOMDIR_RESERVE"]

CAPACITIES = {"cd650": 650 * 1024 * 1024, "cd700": 700 * 1024 * 1024, "cd": 700 * 1024 * 1024,
              "dvd": 4_700_000_000, "dvd4.7": 4_700_000_000}

#: Room kept on each volume for the DICOMDIR and file-system overhead (a
#: DICOMDIR record is some 300-500 bytes; 1 KiB per file plus 1 MiB is generous).
DICOMDIR_RESERVE = 1024 * 1024
PER_FILE_RESERVE = 1024

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.I)


def parse_capacity(text: str | None) -> int | None:
    """``cd650``, ``cd700``, ``dvd``, or a size (``1000000``, ``500MB``, ``4.7GB``); None: unlimited."""
    if text is None or text.lower() in ("", "none", "unlimited"):
        return None
    if text.lower() in CAPACITIES:
        return CAPACITIES[text.lower()]
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"capacity {text!r}: expected cd650, cd700, dvd or a size like 500MB")
    factor = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}[m.group(2).lower()]
    return int(float(m.group(1)) * factor)


def _cost(size: int) -> int:
    return size + PER_FILE_RESERVE


def plan_volumes(items: Sequence[Any], capacity: int | None) -> list[list[Any]]:
    """Items (with ``.size``, ``.study_instance_uid``; in study order) grouped into volumes."""
    if capacity is None:
        return [list(items)] if items else []
    room = capacity - min(DICOMDIR_RESERVE, capacity // 20)
    for it in items:
        if _cost(it.size) > room:
            raise ValueError(f"{it.sop_instance_uid}: {it.size} bytes does not fit on a volume of {capacity} bytes")
    studies: dict[str, list[Any]] = {}
    for it in items:
        studies.setdefault(it.study_instance_uid, []).append(it)
    volumes: list[list[Any]] = []
    used: list[int] = []
    for study in studies.values():
        need = sum(_cost(i.size) for i in study)
        if need <= room:
            for n, u in enumerate(used):  # first fit keeps the order mostly chronological
                if u + need <= room:
                    volumes[n].extend(study)
                    used[n] += need
                    break
            else:
                volumes.append(list(study))
                used.append(need)
            continue
        # MED-2: a study larger than one volume must be split: fill new volumes in order.
        current: list[Any] = []
        cur = 0
        for it in study:
            if cur + _cost(it.size) > room:
                volumes.append(current)
                used.append(cur)
                current, cur = [], 0
            current.append(it)
            cur += _cost(it.size)
        if current:
            volumes.append(current)
            used.append(cur)
    return volumes
