"""Where a key sits in a TOML file, so every error can name file:line.

tomllib gives values, not positions. This scanner follows table headers,
arrays of tables, dotted keys and one level of inline tables, which covers the
way our config files are written; anything it can't place falls back to the
nearest enclosing table's header line.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r'^\s*((?:"[^"]*"|\'[^\']*\'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|\'[^\']*\'|[A-Za-z0-9_-]+))*)\s*=')
_INLINE_KEY = re.compile(r'[{,]\s*("[^"]*"|[A-Za-z0-9_-]+)\s*=')

Path_ = tuple[object, ...]


def _split_key(text: str) -> tuple[str, ...]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', text)
    return tuple(a or b or c for a, b, c in parts)


def key_lines(text: str) -> dict[Path_, int]:
    """Map each key path (strings, and ints for array-of-table indexes) to its line."""
    lines: dict[Path_, int] = {}
    counts: dict[tuple[str, ...], int] = {}
    current: Path_ = ()
    in_multiline = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if in_multiline:
            if '"""' in line or "'''" in line:
                in_multiline = False
            continue
        if not line or line.startswith("#"):
            continue
        header = _HEADER.match(raw)
        if header and not _KEY.match(raw):
            names = _split_key(header.group(2))
            if header.group(1) == "[[":
                index = counts.get(names, -1) + 1
                counts[names] = index
                current = names + (index,)
            else:
                current = names
            lines.setdefault(current, number)
            continue
        key = _KEY.match(raw)
        if key:
            path = current + _split_key(key.group(1))
            lines.setdefault(path, number)
            rest = raw[key.end():]
            for inner in _INLINE_KEY.finditer(rest):
                lines.setdefault(path + _split_key(inner.group(1)), number)
            if rest.count('"""') == 1 or rest.count("'''") == 1:
                in_multiline = True
    return lines


def line_of(lines: dict[Path_, int], loc: Path_) -> int | None:
    """The line of ``loc`` or of its nearest located ancestor."""
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None
