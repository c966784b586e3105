"""Read a config directory into a validated, immutable GatewayConfig.

Every problem is reported as ``file:line: key 'a.b': what is wrong`` and all
problems are reported at once, not just the first (STYLE 13).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.config.locate import key_lines, line_of
from gateway.config.models import DESTINATION_SPEC, Document, GatewayConfig, Remote
from gateway.routing.rules import RouteRule

log = logging.getLogger("gateway.config")

SUBDIRS = ("remotes", "routes", "printers", "plugins")
COMMAND_LINE = Path("<command line>")
# CLI override -> where it lands in gateway.toml's data (errors in it name the command line)
_OVERRIDE_LOCS = {("listeners", 0, "port"): "port", ("node", "ae_title"): "ae_title",
                  ("node", "data_dir"): "data_dir", ("node", "workers"): "workers"}


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: ``file`` relative to the config directory, 1-based ``line``
    (None when unknown), dotted ``key`` (``listeners[1].port``; "" for the whole
    file) and what was expected."""

    file: Path
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        file = self.file.as_posix() if isinstance(self.file, Path) else str(self.file)
        where = f"{file}:{self.line}" if self.line else file
        key = f" key '{self.key}':" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigError(Exception):
    """Raised by :func:`load_config` with every problem found, not just the first."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues


@dataclass
class _File:
    rel: Path
    text: str
    data: dict[str, Any]
    lines: dict


def _read(root: Path, path: Path, issues: list[ConfigIssue]) -> _File | None:
    rel = path.relative_to(root)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        issues.append(ConfigIssue(rel, None, "", f"cannot read: {exc}"))
        return None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        line = int(m.group(1)) if m else None
        column = f" (column {m.group(2)})" if m else ""
        issues.append(ConfigIssue(rel, line, "", f"TOML syntax error: {message}{column}"))
        return None
    return _File(rel, text, data, key_lines(text))


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class holding the last key of ``loc`` (for "did you mean")."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        else:  # list[X], dict[str, X], X | None: step into X
            args = [a for a in typing.get_args(current) if a is not type(None)]
            if not args:
                return None
            current = args[-1]
        while typing.get_origin(current) in (typing.Union, types.UnionType):  # Optional[X]
            current = [a for a in typing.get_args(current) if a is not type(None)][0]
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _describe(err: dict[str, Any], model: type[BaseModel] | None, loc: tuple) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        holder = _model_at(model, loc) if model is not None and loc else None
        if holder is None:
            return "unknown key (check the spelling; see docs/configuration.md)"
        known = list(holder.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown key; {hint}expected one of: {', '.join(known)}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("int_parsing", "float_parsing", "bool_parsing", "int_type", "float_type", "bool_type",
                "string_type", "list_type", "dict_type", "model_type"):
        msg = msg.split(", unable to")[0]
        if kind == "model_type":
            msg = "expected a table"
    if "input" in err and not isinstance(err["input"], (dict, list)):
        return f"{msg}, got {err['input']!r}"
    return msg


def _issues_from(exc: ValidationError, f: _File, model: type[BaseModel] | None = None,
                 overridden: frozenset[tuple] = frozenset(), prefix: tuple = ()) -> list[ConfigIssue]:
    """One issue per pydantic error; ``prefix`` is where ``model``'s table sits in the file."""
    out = []
    for err in exc.errors():
        loc = tuple(x for x in err["loc"]
                    if not (isinstance(x, str) and x.startswith(("function-after", "list[", "literal["))))
        if prefix:
            text = _describe(err, model, loc)
            full = prefix + loc
            key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in full).replace(".[", "[")
            out.append(ConfigIssue(f.rel, line_of(f.lines, full) or line_of(f.lines, prefix), key, text))
            continue
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        if loc in overridden:
            out.append(ConfigIssue(COMMAND_LINE, None, f"--{_OVERRIDE_LOCS[loc].replace('_', '-')}",
                                   _describe(err, model, loc)))
            continue
        line = line_of(f.lines, loc) if loc else None
        out.append(ConfigIssue(f.rel, line, key, _describe(err, model, loc)))
    return out


def _digest(files: list[tuple[Path, str]]) -> str:
    """sha256 over every file's relative path and content, sorted by path."""
    h = hashlib.sha256()
    for rel, text in sorted(files, key=lambda f: f[0].as_posix()):
        h.update(rel.as_posix().encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()


def _apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    if not overrides:
        return
    node = data.setdefault("node", {})
    if not isinstance(node, dict) or not isinstance(data.get("listeners", []), list):
        return  # malformed: validation reports it
    if "data_dir" in overrides:
        node["data_dir"] = str(overrides["data_dir"])
    if "workers" in overrides:
        node["workers"] = overrides["workers"]
    if "ae_title" in overrides:
        old = node.get("ae_title", "DICOM_GATEWAY")
        node["ae_title"] = overrides["ae_title"]
        for listener in data.get("listeners", []):
            if isinstance(listener, dict) and listener.get("ae_titles") in (None, [], [old]):
                listener["ae_titles"] = [overrides["ae_title"]]
    if "port" in overrides:
        listeners = data.setdefault("listeners", [])
        if not listeners:
            listeners.append({"port": overrides["port"]})
        elif isinstance(listeners[0], dict):  # else malformed: validation reports it
            listeners[0]["port"] = overrides["port"]


def load_config(directory: Path | str | None = None, overrides: dict[str, Any] | None = None) -> GatewayConfig:
    """Load and validate ``directory`` or raise :class:`ConfigError` listing every problem.

    ``directory`` None: embedded defaults, no files needed. A directory without
    gateway.toml: node defaults. ``overrides`` come from CLI flags: ``port``
    (first listener), ``ae_title`` (node AE, and listeners that left
    ``ae_titles`` at the node's), ``data_dir``, ``workers``.
    Other ``*.toml`` files at the top level are errors (a misnamed file would
    otherwise be silently ignored); non-TOML files and other folders are ignored.
    """
    issues: list[ConfigIssue] = []
    texts: list[tuple[Path, str]] = []
    main = _File(Path("gateway.toml"), "", {}, {})
    extra: dict[str, Any] = {"remotes": {}, "routes": [], "printers": {}, "plugin_files": {}}
    files_by_kind: dict[str, list[_File]] = {k: [] for k in SUBDIRS}
    root = Path(directory) if directory is not None else None
    if root is not None:
        if not root.is_dir():
            raise ConfigError([ConfigIssue(root, None, "", "config directory does not exist")])
        for path in sorted(root.glob("*.toml")):
            if path.name != "gateway.toml":
                issues.append(ConfigIssue(Path(path.name), None, "", "unknown config file: the top level holds gateway.toml; "
                                          f"other files go in {', '.join(d + '/' for d in SUBDIRS)}"))
        if (root / "gateway.toml").exists():
            f = _read(root, root / "gateway.toml", issues)
            if f:
                main = f
                texts.append((f.rel, f.text))
        for kind in SUBDIRS:
            for path in sorted((root / kind).glob("*.toml")) if (root / kind).is_dir() else ():
                f = _read(root, path, issues)
                if f:
                    files_by_kind[kind].append(f)
                    texts.append((f.rel, f.text))

    remote_names: dict[str, str] = {}
    for f in files_by_kind["remotes"]:
        name = f.rel.stem
        duplicate = name.lower() in remote_names
        if duplicate:
            issues.append(ConfigIssue(f.rel, None, "", f"remote {name!r} is also defined in "
                                      f"{remote_names[name.lower()]} (remote names ignore case)"))
        remote_names.setdefault(name.lower(), f.rel.as_posix())
        try:
            remote = Remote.model_validate(f.data)
        except ValidationError as exc:
            issues.extend(_issues_from(exc, f, Remote))
            continue
        if not duplicate:
            extra["remotes"][name] = remote

    rule_names: dict[str, str] = {}
    for f in files_by_kind["routes"]:
        rules = f.data.get("rule", [])
        unknown = [k for k in f.data if k != "rule"]
        for k in unknown:
            issues.append(ConfigIssue(f.rel, line_of(f.lines, (k,)), k, "unknown key: a routes file holds [[rule]] tables"))
        if not isinstance(rules, list):
            issues.append(ConfigIssue(f.rel, line_of(f.lines, ("rule",)), "rule", "write rules as [[rule]] tables"))
            continue
        for i, body in enumerate(rules):
            line = line_of(f.lines, ("rule", i))
            name = body.get("name") if isinstance(body, dict) else None
            if not isinstance(name, str) or not name:
                got = f", got {name!r}" if isinstance(body, dict) and "name" in body else ""
                issues.append(ConfigIssue(f.rel, line_of(f.lines, ("rule", i, "name")), f"rule[{i}].name",
                                          f"every rule needs a name (a non-empty string, unique across routes/){got}"))
                continue
            if name in rule_names:
                issues.append(ConfigIssue(f.rel, line_of(f.lines, ("rule", i, "name")), f"rule[{i}].name",
                                          f"rule {name!r} is also defined in {rule_names[name]}; rule names are unique"))
                continue
            rule_names[name] = f.rel.as_posix()
            try:
                rule = RouteRule.model_validate(body)
            except ValidationError as exc:
                issues.extend(_issues_from(exc, f, RouteRule, prefix=("rule", i)))
                continue
            for j, dest in enumerate(rule.forward):
                if dest.lower() not in remote_names and not DESTINATION_SPEC.match(dest):
                    known = ", ".join(sorted(extra["remotes"])) or "none configured"
                    issues.append(ConfigIssue(f.rel, line_of(f.lines, ("rule", i, "forward")) or line,
                                              f"rule[{i}].forward[{j}]",
                                              f"unknown destination {dest!r}: name a remote (remotes/<name>.toml; "
                                              f"known: {known}) or write AET@host:port"))
            rule_lines = {k[2:]: v for k, v in f.lines.items() if k[:2] == ("rule", i) and len(k) > 2}
            extra["routes"].append(Document(file=f.rel.as_posix(), line=line, name=name, body=body,
                                            key_lines=rule_lines))

    for kind, key in (("printers", "printers"), ("plugins", "plugin_files")):
        for f in files_by_kind[kind]:
            name = f.rel.stem
            if kind == "plugins" and "enabled" in f.data and not isinstance(f.data["enabled"], bool):
                issues.append(ConfigIssue(f.rel, line_of(f.lines, ("enabled",)), "enabled",
                                          f"must be true or false, got {f.data['enabled']!r}"))
            extra[key][name] = Document(file=f.rel.as_posix(), line=1, name=name, body=f.data, key_lines=f.lines)

    data = _copy(main.data)
    _apply_overrides(data, overrides or {})
    overridden = frozenset(loc for loc, name in _OVERRIDE_LOCS.items() if name in (overrides or {}))
    sections = ("node", "listeners", "http", "plugins", "forwarding")
    for k in sorted(set(data) - set(sections)):
        close = difflib.get_close_matches(k, sections, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        issues.append(ConfigIssue(main.rel, line_of(main.lines, (k,)), k,
                                  f"unknown key; {hint}gateway.toml holds [node], [[listeners]], [http], [plugins] and [forwarding]"))
        data.pop(k)
    config = None
    try:
        config = GatewayConfig.model_validate({**data, **extra, "source_dir": root, "digest": _digest(texts)})
    except ValidationError as exc:
        issues.extend(_issues_from(exc, main, GatewayConfig, overridden))
    if config is not None:
        seen: dict[int, int] = {}
        for i, listener in enumerate(config.listeners):
            if listener.port in seen:
                issues.append(ConfigIssue(main.rel, line_of(main.lines, ("listeners", i, "port")), f"listeners[{i}].port",
                                          f"port {listener.port} is already used by listeners[{seen[listener.port]}]; "
                                          "each listener needs its own port"))
            seen.setdefault(listener.port, i)
        if config.http.enabled and config.http.port in seen:
            i = seen[config.http.port]
            issues.append(ConfigIssue(main.rel, line_of(main.lines, ("http", "port")), "http.port",
                                      f"port {config.http.port} is already used by listeners[{i}]; "
                                      "pick another port or set enabled = false"))
    if issues:  # gateway.toml first, then by file and line
        issues.sort(key=lambda i: (i.file != main.rel, str(i.file), i.line or 0))
        raise ConfigError(issues)
    assert config is not None
    return config


def _copy(value: Any) -> Any:
    """Deep copy of parsed TOML (dicts and lists), so overrides never touch the original."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def digest_of(directory: Path | str) -> str:
    """The digest load_config would compute, without validating (cheap reload check).

    Covers gateway.toml and every ``*.toml`` in the four subfolders (the files
    load_config reads; it also includes stray top-level ``*.toml`` so fixing one is seen).
    """
    directory = Path(directory)
    texts = []
    paths = sorted(directory.glob("*.toml")) + sorted(p for d in SUBDIRS for p in (directory / d).glob("*.toml"))
    for path in paths:
        rel = path.relative_to(directory)
        try:
            texts.append((rel, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            texts.append((rel, "<unreadable>"))
    return _digest(texts)


def check(directory: Path | str) -> list[str]:
    """Validate ``directory`` without running anything: one line per problem, [] when valid."""
    try:
        load_config(directory)
    except ConfigError as exc:
        return [str(issue) for issue in exc.issues]
    return []
