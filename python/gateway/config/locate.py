"""Where a key sits in a TOML file, so every error can name file:line (STYLE 13).

tomllib gives values, not positions. :func:`key_lines` scans the text once and
maps every key path to the line it starts on, using the same path shape as a
pydantic error ``loc``: strings for keys, ints for array indexes. It follows

- table headers ``[a.b]`` and arrays of tables ``[[a]]`` (counted per parent,
  so ``[[fruit.variety]]`` restarts at 0 under each ``[[fruit]]``),
- dotted and quoted keys (``a.b = 1``, ``"x.y" = 1``, ``'lit' = 1``),
- values: strings of all four kinds (multi-line ones may span lines and contain
  anything that looks like a header), arrays (each element's line, so
  ``('ae_titles', 2)`` points at the third element of a multi-line array),
  inline tables (nested), comments.

The text is assumed to be valid TOML (the loader parses it with tomllib
first); on anything unexpected the scanner stops and keeps what it has, so
:func:`line_of` falls back to the nearest located ancestor (usually the table
header), then None.
"""

from __future__ import annotations

Loc = tuple[object, ...]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class _Stop(Exception):
    pass


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.lines: dict[Loc, int] = {}

    # -- characters --------------------------------------------------------
    def peek(self, n: int = 0) -> str:
        j = self.i + n
        return self.s[j] if j < len(self.s) else ""

    def advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self.i < len(self.s):
                if self.s[self.i] == "\n":
                    self.line += 1
                self.i += 1

    def skip_inline_ws(self) -> None:
        while self.peek() in (" ", "\t", "\r") and self.peek():
            self.advance()

    def skip_comment(self) -> None:
        if self.peek() == "#":
            while self.peek() and self.peek() != "\n":
                self.advance()

    def skip_ws_comments_newlines(self) -> None:
        while True:
            self.skip_inline_ws()
            if self.peek() == "#":
                self.skip_comment()
            elif self.peek() == "\n":
                self.advance()
            else:
                return

    def record(self, loc: Loc, line: int) -> None:
        self.lines.setdefault(loc, line)

    # -- keys ----------------------------------------------------------------
    def key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self.skip_inline_ws()
            c = self.peek()
            if c == '"' or c == "'":
                parts.append(self.string())
            elif c in _BARE and c:
                start = self.i
                while self.peek() in _BARE and self.peek():
                    self.advance()
                parts.append(self.s[start:self.i])
            else:
                raise _Stop
            self.skip_inline_ws()
            if self.peek() == ".":
                self.advance()
                continue
            return tuple(parts)

    # -- values ---------------------------------------------------------------
    def string(self) -> str:
        quote = self.peek()
        if self.s.startswith(quote * 3, self.i):
            self.advance(3)
            end = self.i
            while not self.s.startswith(quote * 3, end):
                if end >= len(self.s):
                    raise _Stop
                end += 2 if quote == '"' and self.s[end] == "\\" else 1
            # A multi-line string may end with up to two extra quotes: """a"""""
            while self.s.startswith(quote, end + 3) and end + 3 < len(self.s):
                end += 1
            value = self.s[self.i:end]
            self.advance(end + 3 - self.i)
            return value
        self.advance()
        out: list[str] = []
        while True:
            c = self.peek()
            if c == "" or c == "\n":
                raise _Stop
            if c == quote:
                self.advance()
                return "".join(out)
            if c == "\\" and quote == '"':
                out.append(self.s[self.i:self.i + 2])
                self.advance(2)
                continue
            out.append(c)
            self.advance()

    def value(self, loc: Loc) -> None:
        c = self.peek()
        if c == '"' or c == "'":
            self.string()
        elif c == "[":
            self.array(loc)
        elif c == "{":
            self.inline_table(loc)
        else:  # number, bool, date: runs to a delimiter
            while self.peek() and self.peek() not in ",]}\n#":
                self.advance()

    def array(self, loc: Loc) -> None:
        self.advance()  # [
        index = 0
        while True:
            self.skip_ws_comments_newlines()
            if self.peek() == "]":
                self.advance()
                return
            if not self.peek():
                raise _Stop
            self.record(loc + (index,), self.line)
            self.value(loc + (index,))
            index += 1
            self.skip_ws_comments_newlines()
            if self.peek() == ",":
                self.advance()

    def inline_table(self, loc: Loc) -> None:
        self.advance()  # {
        while True:
            self.skip_ws_comments_newlines()  # newlines: TOML 1.1 allows them; harmless here
            if self.peek() == "}":
                self.advance()
                return
            if not self.peek():
                raise _Stop
            self.keyval(loc)
            self.skip_ws_comments_newlines()
            if self.peek() == ",":
                self.advance()

    def keyval(self, table: Loc) -> None:
        line = self.line
        names = self.key()
        if self.peek() != "=":
            raise _Stop
        self.advance()
        self.skip_inline_ws()
        path = table
        for name in names:  # a.b.c = 1 also locates a and a.b
            path = path + (name,)
            self.record(path, line)
        self.value(path)

    # -- document ---------------------------------------------------------------
    def document(self) -> dict[Loc, int]:
        table: Loc = ()
        aot_counts: dict[Loc, int] = {}  # array-of-tables path (with parent indexes) -> last index
        try:
            while True:
                self.skip_ws_comments_newlines()
                if not self.peek():
                    break
                line = self.line
                if self.peek() == "[":
                    double = self.peek(1) == "["
                    self.advance(2 if double else 1)
                    names = self.key()
                    if not self.s.startswith("]]" if double else "]", self.i):
                        raise _Stop
                    self.advance(2 if double else 1)
                    resolved: Loc = ()
                    for name in names[:-1]:
                        resolved += (name,)
                        self.record(resolved, line)
                        if resolved in aot_counts:  # inside the latest element of [[parent]]
                            resolved += (aot_counts[resolved],)
                    resolved += (names[-1],)
                    if double:
                        self.record(resolved, line)
                        aot_counts[resolved] = aot_counts.get(resolved, -1) + 1
                        resolved += (aot_counts[resolved],)
                    table = resolved
                    self.record(table, line)
                else:
                    self.keyval(table)
                self.skip_inline_ws()
                self.skip_comment()
                if self.peek() == "\n":
                    self.advance()
                elif self.peek():
                    raise _Stop
        except _Stop:
            pass
        return self.lines


def key_lines(text: str) -> dict[Loc, int]:
    """Map each key path (strings, and ints for array indexes) to its 1-based line."""
    return _Scanner(text).document()


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, else of its nearest located ancestor, else None."""
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return None
