"""Read a config directory into a validated, immutable GatewayConfig.

Every problem is reported as ``file:line: key 'a.b': what is wrong`` and all
problems are reported at once, not just the first (STYLE 13).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config.locate import key_lines, line_of
from gateway.config.models import Document, GatewayConfig, Remote

SUBDIRS = ("remotes", "routes", "printers", "plugins")


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" key '{self.key}':" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigError(Exception):
    def __init__(self, issues: list[ConfigIssue]) -> None:
        super().__init__("\n".join(str(i) for i in issues))
        self.issues = issues


@dataclass
class _File:
    rel: str
    text: str
    data: dict[str, Any]
    lines: dict


def _read(root: Path, path: Path, issues: list[ConfigIssue]) -> _File | None:
    rel = path.relative_to(root).as_posix()
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


def _describe(err: dict[str, Any]) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling; see docs/configuration.md)"
    if err["type"] == "missing":
        return "required key is missing"
    if "input" in err and not isinstance(err["input"], (dict, list)):
        return f"{msg}, got {err['input']!r}"
    return msg


def _issues_from(exc: ValidationError, f: _File, prefix: tuple = ()) -> list[ConfigIssue]:
    out = []
    for err in exc.errors():
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith(("function-after", "list["))))
        full = prefix + loc
        line = line_of(f.lines, loc) if loc else None
        if line is None and prefix:
            line = line_of(f.lines, prefix)
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in full).replace(".[", "[")
        out.append(ConfigIssue(f.rel, line, key, _describe(err)))
    return out


def _digest(files: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for rel, text in sorted(files):
        h.update(rel.encode() + b"\0" + text.encode() + b"\0")
    return h.hexdigest()


def _apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> None:
    node = data.setdefault("node", {})
    if "data_dir" in overrides:
        node["data_dir"] = str(overrides["data_dir"])
    if "workers" in overrides:
        node["workers"] = overrides["workers"]
    if "ae_title" in overrides:
        old = node.get("ae_title", "DICOM_GATEWAY")
        node["ae_title"] = overrides["ae_title"]
        for listener in data.get("listeners", []):
            if listener.get("ae_titles") in (None, [], [old]):
                listener["ae_titles"] = [overrides["ae_title"]]
    if "port" in overrides:
        listeners = data.setdefault("listeners", [])
        if listeners:
            listeners[0]["port"] = overrides["port"]
        else:
            listeners.append({"port": overrides["port"]})


def load_config(directory: Path | str | None = None, overrides: dict[str, Any] | None = None) -> GatewayConfig:
    """Load and validate ``directory`` (None: embedded defaults) or raise ConfigError."""
    issues: list[ConfigIssue] = []
    texts: list[tuple[str, str]] = []
    main = _File("gateway.toml", "", {}, {})
    extra: dict[str, Any] = {"remotes": {}, "routes": [], "printers": {}, "plugin_files": {}}
    files_by_kind: dict[str, list[_File]] = {k: [] for k in SUBDIRS}
    root = Path(directory) if directory is not None else None
    if root is not None:
        if not root.is_dir():
            raise ConfigError([ConfigIssue(str(root), None, "", "config directory does not exist")])
        for path in sorted(root.glob("*.toml")):
            if path.name != "gateway.toml":
                issues.append(ConfigIssue(path.name, None, "", "unknown config file: the top level holds gateway.toml; "
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
        name = Path(f.rel).stem
        if name.lower() in remote_names:
            issues.append(ConfigIssue(f.rel, None, "", f"remote {name!r} is also defined in {remote_names[name.lower()]}"))
            continue
        remote_names[name.lower()] = f.rel
        try:
            extra["remotes"][name] = Remote.model_validate(f.data)
        except ValidationError as exc:
            issues.extend(_issues_from(exc, f))

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
                issues.append(ConfigIssue(f.rel, line, f"rule[{i}].name", "every rule needs a name"))
                continue
            if name in rule_names:
                issues.append(ConfigIssue(f.rel, line, f"rule[{i}].name", f"rule {name!r} is also defined in {rule_names[name]}"))
                continue
            rule_names[name] = f.rel
            extra["routes"].append(Document(file=f.rel, line=line, name=name, body=body))

    for kind, key in (("printers", "printers"), ("plugins", "plugin_files")):
        for f in files_by_kind[kind]:
            name = Path(f.rel).stem
            if kind == "plugins" and "enabled" in f.data and not isinstance(f.data["enabled"], bool):
                issues.append(ConfigIssue(f.rel, line_of(f.lines, ("enabled",)), "enabled", "must be true or false"))
            extra[key][name] = Document(file=f.rel, line=1, name=name, body=f.data)

    data = dict(main.data)
    _apply_overrides(data, overrides or {})
    unknown_tables = set(data) - {"node", "listeners", "http", "plugins"}
    for k in sorted(unknown_tables):
        issues.append(ConfigIssue(main.rel, line_of(main.lines, (k,)), k,
                                  "unknown key (gateway.toml holds [node], [[listeners]], [http] and [plugins])"))
        data.pop(k)
    config = None
    try:
        config = GatewayConfig.model_validate({**data, **extra, "source_dir": root, "digest": _digest(texts)})
    except ValidationError as exc:
        issues.extend(_issues_from(exc, main))
    if config is not None:
        seen: dict[int, int] = {}
        for i, listener in enumerate(config.listeners):
            if listener.port in seen:
                issues.append(ConfigIssue(main.rel, line_of(main.lines, ("listeners", i, "port")), f"listeners[{i}].port",
                                          f"port {listener.port} is already used by listeners[{seen[listener.port]}]"))
            seen.setdefault(listener.port, i)
    if issues:
        raise ConfigError(issues)
    assert config is not None
    return config


def digest_of(directory: Path) -> str:
    """The digest load_config would compute, without validating (cheap reload check)."""
    texts = []
    for path in sorted(directory.glob("*.toml")) + sorted(p for d in SUBDIRS for p in (directory / d).glob("*.toml")):
        try:
            texts.append((path.relative_to(directory).as_posix(), path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            texts.append((path.name, "<unreadable>"))
    return _digest(texts)
