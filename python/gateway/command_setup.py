"""What a command needs before it runs: its configuration and, for the commands
that use it, the index. Shared by the core's command line and the commands
plugins add (send, commit, …), so a plugin's command needs nothing from ``gateway.cli``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def load_command_config(args: argparse.Namespace):
    """The config named by --config (or embedded defaults), or exit 2 with its errors."""
    from gateway.config import ConfigError, load_config

    overrides = {"data_dir": args.data_dir} if getattr(args, "data_dir", None) else None
    try:
        return load_config(Path(args.config) if args.config else None, overrides)
    except ConfigError as exc:
        print(f"dicom-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2)


def open_command_index(config: Any, command: str, read_only: bool = False) -> Any:
    """The config's index, or exit 2 saying why it cannot be opened. A command
    that only reads (``read_only``) never creates one: it exits 1 saying where it looked."""
    from gateway.index import Index, IndexUnavailable
    from gateway.index.store import index_missing

    url = config.effective_database_url()
    if read_only and (why := index_missing(url)):
        print(f"dicom-gateway {command}: {why} (give --data-dir or --config)", file=sys.stderr)
        raise SystemExit(1)
    try:
        return Index(url)
    except IndexUnavailable as exc:
        print(f"dicom-gateway {command}: index unavailable: {exc}", file=sys.stderr)
        raise SystemExit(2)


def command_runtime(config: Any) -> Any:
    """A one-generation runtime (plugins loaded and given the config) for a command
    that stores, as ``import`` does; or exit 2 with the plugins' config errors.
    Logs go to stderr as text, warnings and worse only."""
    from gateway import logs
    from gateway.runtime import PluginConfigError, build_runtime

    logs.setup("WARNING", "text")
    try:
        return build_runtime(config, 1)
    except PluginConfigError as exc:
        print(f"dicom-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(2)
