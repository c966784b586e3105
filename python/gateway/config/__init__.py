"""The configuration directory (DESIGN §4): TOML files validated by pydantic,
errors with file, line and key, hot reload by :mod:`gateway.config.reload`.

    gateway.toml      [node], [[listeners]], [http], [plugins]
    remotes/*.toml    one remote AE per file; the file name is its name
    routes/*.toml     [[rule]] tables
    printers/*.toml   one printer per file
    plugins/*.toml    one plugin's settings per file; `enabled = false` disables it
"""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.config.loader import ConfigError, ConfigIssue, check, digest_of, load_config
from gateway.config.models import (Document, GatewayConfig, Http, Listener, Node, PluginDoc, PluginsSection,
                                   PluginSettingsError, PrinterDoc, Remote, RouteRuleDoc, validate_document)

__all__ = ["ConfigError", "ConfigIssue", "GatewayConfig", "Node", "Listener", "Http", "PluginsSection",
           "Remote", "Document", "RouteRuleDoc", "PrinterDoc", "PluginDoc", "PluginSettingsError", "validate_document",
           "load_config", "digest_of",
           "check", "check_command"]


def check_command(directory: Path | str, out=None) -> int:
    """`dicom-gateway config check DIR`: print a summary and return 0, or print
    every problem (file:line: key '…': what was expected) and return 1."""
    out = out or sys.stdout
    try:
        config = load_config(directory)
    except ConfigError as exc:
        print(f"{directory}: {len(exc.issues)} problem(s)", file=out)
        for issue in exc.issues:
            print(f"  {issue}", file=out)
        return 1
    ports = ", ".join(f"{l.port} ({'/'.join(l.ae_titles)})" for l in config.listeners)
    print(f"OK: {len(config.remotes)} remotes, {len(config.routes)} routes, {len(config.listeners)} listeners "
          f"[{ports}], {len(config.printers)} printers, {len(config.plugin_files)} plugin files "
          f"({directory}, digest {config.digest[:12]})", file=out)
    return 0
