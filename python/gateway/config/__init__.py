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

from gateway.config.loader import ConfigError, ConfigIssue, digest_of, load_config
from gateway.config.models import Document, GatewayConfig, Http, Listener, Node, PluginsSection, Remote

__all__ = ["ConfigError", "ConfigIssue", "GatewayConfig", "Node", "Listener", "Http", "PluginsSection",
           "Remote", "Document", "load_config", "digest_of", "check_command"]


def check_command(directory: Path, out=None) -> int:
    """`dicom-gateway config check DIR`: 0 when valid, 1 with every problem listed."""
    out = out or sys.stdout
    try:
        config = load_config(directory)
    except ConfigError as exc:
        print(f"{directory}: {len(exc.issues)} problem(s)", file=out)
        for issue in exc.issues:
            print(f"  {issue}", file=out)
        return 1
    ports = ", ".join(f"{l.port} ({'/'.join(l.ae_titles)})" for l in config.listeners)
    print(f"OK: {directory}: listeners {ports}; {len(config.remotes)} remote(s), {len(config.routes)} route rule(s), "
          f"{len(config.printers)} printer(s), {len(config.plugin_files)} plugin setting file(s)", file=out)
    return 0
