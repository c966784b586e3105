"""Route rules (routes/*.toml): what an instance must match, and what happens then.

A rule::

    [[rule]]
    name = "pet-ct-to-pacs"
    match = { modality = ["CT", "PT"], calling_ae = "SCANNER*", Manufacturer = { regex = "^(GE|Philips)" } }
    forward = ["pacs", "archive"]       # remote names (remotes/<name>.toml) or "AET@host:port"
    action = "forward"                  # forward (default) | hold | drop
    priority = 10                       # higher is sent first
    syntax = "explicit-le"              # preferred transfer syntax, when the peer accepts it
    after_series_complete = "quiet"     # false (default) | "quiet" | "association"
    quiet_time = 30                     # seconds, for "quiet" (default [forwarding] series_quiet_time)

A rule's ``action`` may also name an action a plugin provides (``prefetch``,
registered with ``registry.add_rule_action``); the rule's table of that name
(``[rule.prefetch]``) holds the action's own settings, which the plugin
validates, and the rule forwards nothing itself.

Match keys are ANDed; a list is any-of. The fixed keys are ``calling_ae``,
``called_ae``, ``source`` (address or CIDR), ``sop_class`` and ``modality``;
every other key is a DICOM keyword (``Manufacturer``) or tag (``"0008,0070"``)
read from the object's header. A value is an exact string, a wildcard (``*``,
``?``), ``{ regex = "…" }``, a numeric range ``{ min = 1, max = 5 }``, a
date range ``{ date = "20250101-20251231" }`` (either end open), or
``{ not = <value> }``. An attribute the object does not have matches nothing
(but ``not``).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FIXED_KEYS = ("calling_ae", "called_ae", "source", "sop_class", "modality")
#: The actions the core carries out itself; any other is a plugin's (``ServiceRegistry.rule_actions``).
BUILTIN_ACTIONS = ("forward", "hold", "drop")
_ACTION_NAME = re.compile(r"[a-z][a-z0-9_-]{0,40}")

SYNTAX_NAMES = {
    "explicit-le": "1.2.840.10008.1.2.1",
    "implicit-le": "1.2.840.10008.1.2",
    "explicit-be": "1.2.840.10008.1.2.2",
}


class RouteRule(BaseModel):
    """One ``[[rule]]`` table, validated (file:line:key errors come from the loader)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    match: dict[str, Any] = Field(default_factory=dict)
    forward: list[str] = Field(default_factory=list)
    #: forward | hold | drop, or an action a plugin provides (its settings: ``action_settings``)
    action: str = "forward"
    #: the rule's table named after a plugin's action (``[rule.prefetch]``), as written
    action_settings: dict[str, Any] = Field(default_factory=dict)
    priority: int = 0
    syntax: str | None = None
    after_series_complete: Literal[False, "quiet", "association"] = False
    quiet_time: float | None = Field(None, ge=0)
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _plugin_action_table(cls, data: Any) -> Any:
        """``[rule.<action>]`` of a plugin action becomes ``action_settings``."""
        if isinstance(data, dict) and "action_settings" not in data:
            action = data.get("action")
            if isinstance(action, str) and action not in BUILTIN_ACTIONS and action in data \
                    and action not in cls.model_fields:
                data = dict(data)
                settings = data.pop(action)
                data["action_settings"] = settings if isinstance(settings, dict) else {"": settings}
        return data

    @field_validator("action")
    @classmethod
    def _action(cls, value: str) -> str:
        if value in BUILTIN_ACTIONS or _ACTION_NAME.fullmatch(value):
            return value
        raise ValueError(f"forward, hold, drop or the name of an action a plugin provides, got {value!r}")

    @property
    def plugin_action(self) -> bool:
        return self.action not in BUILTIN_ACTIONS

    @field_validator("syntax")
    @classmethod
    def _syntax(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value in SYNTAX_NAMES:
            return SYNTAX_NAMES[value]
        if value in SYNTAX_NAMES.values():
            return value
        raise ValueError(f"one of {', '.join(SYNTAX_NAMES)} (or its UID)")

    @field_validator("match")
    @classmethod
    def _match(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, cond in value.items():
            if key not in FIXED_KEYS:
                tag_of(key)  # raises ValueError naming the key
            compile_condition(key, cond)  # raises ValueError for a malformed condition
        return value

    @model_validator(mode="after")
    def _forward_needed(self) -> "RouteRule":
        if self.action in ("forward", "hold") and not self.forward:
            raise ValueError(f"action {self.action!r} needs forward = [\"<remote>\", ...]")
        if self.action == "drop" and self.forward:
            raise ValueError("a drop rule forwards nowhere: remove 'forward'")
        if self.plugin_action and self.forward:
            raise ValueError(f"a {self.action!r} rule forwards nothing itself: remove 'forward' "
                             f"(see the action's own settings, [rule.{self.action}])")
        if not self.plugin_action and self.action_settings:
            raise ValueError(f"action_settings belongs to a plugin action, not {self.action!r}")
        return self


def tag_of(key: str) -> int:
    """A DICOM keyword or a tag written ``"0008,0070"``, ``"(0008,0070)"`` or ``"00080070"``."""
    from pydicom.datadict import tag_for_keyword

    text = key.strip().strip("()").replace(",", "").replace(" ", "")
    if re.fullmatch(r"[0-9A-Fa-f]{8}", text):
        return int(text, 16)
    tag = tag_for_keyword(key)
    if tag is None:
        import difflib

        from pydicom.datadict import keyword_dict

        close = difflib.get_close_matches(key, list(FIXED_KEYS) + list(keyword_dict), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown match key {key!r}: use {', '.join(FIXED_KEYS)}, "
                         f"a DICOM keyword or a tag like \"0008,0070\"{hint}")
    return int(tag)


# ---- conditions --------------------------------------------------------------------
#
# A compiled condition takes the attribute's values (strings; [] when absent) and
# returns None when it matches, else why not — `route test` prints the reason.

Condition = Callable[[list[str]], str | None]


def _show(values: list[str]) -> str:
    return "absent" if not values else repr(values[0] if len(values) == 1 else values)


def compile_condition(key: str, spec: Any) -> Condition:
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"match.{key}: an empty list matches nothing")
        parts = [compile_condition(key, s) for s in spec]

        def any_of(values: list[str]) -> str | None:
            reasons = [p(values) for p in parts]
            return None if any(r is None for r in reasons) else f"{_show(values)} matches none of {spec!r}"
        return any_of
    if isinstance(spec, bool):
        raise ValueError(f"match.{key}: write a string, a number, a list or a table, got {spec!r}")
    if isinstance(spec, (int, float)):
        number = float(spec)

        def equals_number(values: list[str]) -> str | None:
            return None if any(_num(v) == number for v in values) else f"{_show(values)} != {spec}"
        return equals_number
    if isinstance(spec, str):
        if key == "source":
            return _source(spec)
        if "*" in spec or "?" in spec:
            # DICOM wildcards (PS3.4 C.2.2.2.4): * any run, ? one character; [ is literal
            pattern = re.compile(fnmatch.translate(spec.replace("[", "[[]")), re.S)

            def wildcard(values: list[str]) -> str | None:
                return None if any(pattern.match(v) for v in values) else f"{_show(values)} does not match {spec!r}"
            return wildcard

        def exact(values: list[str]) -> str | None:
            return None if spec in values else f"{_show(values)} != {spec!r}"
        return exact
    if isinstance(spec, dict):
        if len(spec) == 1 and "regex" in spec:
            try:
                rx = re.compile(str(spec["regex"]))
            except re.error as exc:
                raise ValueError(f"match.{key}.regex: {exc}") from None

            def regex(values: list[str]) -> str | None:
                return None if any(rx.search(v) for v in values) else f"{_show(values)} does not match /{rx.pattern}/"
            return regex
        if len(spec) == 1 and "not" in spec:
            inner = compile_condition(key, spec["not"])

            def negated(values: list[str]) -> str | None:
                return f"{_show(values)} matches {spec['not']!r}" if inner(values) is None else None
            return negated
        if len(spec) == 1 and "date" in spec:
            return _date_range(key, str(spec["date"]))
        if spec and set(spec) <= {"min", "max"}:
            for bound in spec.values():
                if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                    raise ValueError(f"match.{key}: min/max are numbers, got {bound!r}")
            lo, hi = spec.get("min"), spec.get("max")

            def in_range(values: list[str]) -> str | None:
                for v in values:
                    n = _num(v)
                    if n is not None and (lo is None or n >= lo) and (hi is None or n <= hi):
                        return None
                return f"{_show(values)} not in [{'' if lo is None else lo}, {'' if hi is None else hi}]"
            return in_range
        raise ValueError(f"match.{key}: a table is {{ regex = … }}, {{ min = …, max = … }}, "
                         f"{{ date = \"A-B\" }} or {{ not = … }}, got {spec!r}")
    raise ValueError(f"match.{key}: unsupported value {spec!r}")


def _num(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _date_range(key: str, text: str) -> Condition:
    lo, sep, hi = text.partition("-")
    lo, hi = lo.strip(), (hi.strip() if sep else lo.strip())
    for bound in (lo, hi):
        if bound and not re.fullmatch(r"\d{8}", bound):
            raise ValueError(f"match.{key}.date: YYYYMMDD, YYYYMMDD-YYYYMMDD, -YYYYMMDD or YYYYMMDD-, got {text!r}")

    def in_dates(values: list[str]) -> str | None:
        for v in values:
            d = v.strip()[:8]
            if len(d) == 8 and (not lo or d >= lo) and (not hi or d <= hi):
                return None
        return f"{_show(values)} not in {text}"
    return in_dates


def _source(spec: str) -> Condition:
    try:
        net = ipaddress.ip_network(spec, strict=False)
    except ValueError:
        raise ValueError(f"match.source: an IP address or CIDR block like 10.0.0.0/24, got {spec!r}") from None

    def in_net(values: list[str]) -> str | None:
        for v in values:
            try:
                if ipaddress.ip_address(v) in net:
                    return None
            except ValueError:
                continue
        return f"{_show(values)} not in {spec}"
    return in_net


@dataclass(frozen=True)
class CompiledRule:
    rule: RouteRule
    file: str
    line: int | None
    conditions: tuple[tuple[str, int | None, Condition], ...]  # key, tag (None: fixed key), condition

    @property
    def needs_dataset(self) -> bool:
        return any(tag is not None for _, tag, _ in self.conditions)


def compile_rule(rule: RouteRule, file: str = "", line: int | None = None) -> CompiledRule:
    conds = tuple((key, None if key in FIXED_KEYS else tag_of(key), compile_condition(key, spec))
                  for key, spec in rule.match.items())
    return CompiledRule(rule, file, line, conds)
