"""The TOML key locator: every pydantic ``loc`` maps to the line an operator must edit."""

from __future__ import annotations

import tomllib

import pytest

from conftest import REPO
from gateway.config.locate import key_lines, line_of

DOC = '''\
# leading comment
top = 1
[node]            # trailing comment
x = 2
"quoted.key" = 3
'literal' = 4
dotted.inner.leaf = 5
s = """
[not_a_header]
y = 6 \\""" still inside
"""
t = \'\'\'
[[nor_this]]
\'\'\'
[[l]]
p = 1
[[l]]
p = 2
m = { k = 1, j = "v,}", n = { z = [1, { q = 2 }] } }
arr = [
  "A",  # one
  "B", [3, 4],
  { w = 1 },
]
[[l.sub]]
w = 1
[[l.sub]]
w = 2
[l.tab]
v.u = 1
[ spaced . "header" ]
e = 1
[[fruit]]
[[fruit.var]]
name = "a"
[[fruit]]
[fruit.physical]
color = "red"
[[fruit.var]]
[[fruit.var]]
name = "c"
'''


@pytest.fixture(scope="module")
def lines():
    tomllib.loads(DOC)  # the fixture is valid TOML
    return key_lines(DOC)


@pytest.mark.parametrize("loc, line", [
    (("top",), 2),
    (("node",), 3),
    (("node", "x"), 4),
    (("node", "quoted.key"), 5),
    (("node", "literal"), 6),
    (("node", "dotted"), 7),
    (("node", "dotted", "inner", "leaf"), 7),
    (("node", "s"), 8),
    (("node", "t"), 12),
    (("l", 0), 15),
    (("l", 0, "p"), 16),
    (("l", 1), 17),
    (("l", 1, "p"), 18),
    (("l", 1, "m", "j"), 19),
    (("l", 1, "m", "n", "z", 1, "q"), 19),
    (("l", 1, "arr"), 20),
    (("l", 1, "arr", 0), 21),
    (("l", 1, "arr", 1), 22),
    (("l", 1, "arr", 2, 1), 22),
    (("l", 1, "arr", 3, "w"), 23),
    (("l", 1, "sub", 0, "w"), 26),
    (("l", 1, "sub", 1), 27),
    (("l", 1, "sub", 1, "w"), 28),
    (("l", 1, "tab", "v", "u"), 30),
    (("spaced", "header", "e"), 32),
    (("fruit", 0, "var", 0, "name"), 35),
    (("fruit", 1, "physical", "color"), 38),
    (("fruit", 1, "var", 0), 39),   # restarts at 0 under the second [[fruit]]
    (("fruit", 1, "var", 1, "name"), 41),
])
def test_located(lines, loc, line):
    assert line_of(lines, loc) == line


def test_headers_inside_strings_are_not_tables(lines):
    assert not any(k and k[0] in ("not_a_header", "nor_this") for k in lines)
    assert ("node", "y") not in lines


@pytest.mark.parametrize("loc, line", [
    (("node", "missing"), 3),            # a missing key: its table's header
    (("l", 1, "nope", "deeper"), 17),    # the [[l]] element's header
    (("l", 1, "arr", 9), 20),            # an index past the end: the array's key
    (("absent",), None),                 # top level, nowhere to point
    ((), None),
])
def test_falls_back_to_ancestor_then_none(lines, loc, line):
    assert line_of(lines, loc) == line


def test_partial_results_on_text_it_cannot_follow():
    lines = key_lines('a = 1\n[t]\nb = 2\nc = @@@ nonsense\n[u]\nd = 1\n')
    assert line_of(lines, ("a",)) == 1 and line_of(lines, ("t", "b")) == 3
    assert key_lines("") == {} and key_lines('x = "unterminated\ny = 1\n') == {("x",): 1}


def test_crlf_and_tabs():
    lines = key_lines('[node]\r\n\tae_title = "A"\r\n\r\n[[listeners]]\r\nport = 1\r\n')
    assert line_of(lines, ("node", "ae_title")) == 2 and line_of(lines, ("listeners", 0, "port")) == 5


def test_every_key_of_the_example_is_located():
    """On real files every leaf is found on a line that mentions it."""

    def leaves(value, loc=()):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from leaves(v, loc + (k,))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, v in enumerate(value):
                yield from leaves(v, loc + (i,))
        else:
            yield loc

    files = sorted((REPO / "examples" / "config").rglob("*.toml"))
    assert len(files) >= 4
    for path in files:
        text = path.read_text()
        lines, rows = key_lines(text), text.splitlines()
        for loc in leaves(tomllib.loads(text)):
            line = lines.get(loc)
            assert line is not None, (path, loc)
            assert str(loc[-1]) in rows[line - 1], (path, loc, line)
