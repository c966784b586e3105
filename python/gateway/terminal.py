"""Text for people at a terminal: counted nouns and aligned tables.

Shared by every command, so that "1 instance" and "2 instances" read the same
everywhere and no command module has to import another to print a table.
"""

from __future__ import annotations

import sys
from typing import Any

# Irregular plurals of the nouns our commands count.
_PLURALS = {"study": "studies", "series": "series", "patient": "patients", "entry": "entries"}


def plural(n: int, noun: str) -> str:
    """``plural(1, "instance")`` -> "1 instance"; ``plural(2, "study")`` -> "2 studies"."""
    return f"{n} {noun if n == 1 else _PLURALS.get(noun, noun + 's')}"


def print_table(rows: list[tuple[Any, ...]], out: Any = None) -> None:
    """Rows as aligned columns, the first row a header underlined with dashes."""
    out = out or sys.stdout
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)
