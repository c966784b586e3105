"""The core's commands: serve, config, convert, ls, import, plugins, route,
conformance, version. Options follow DCMTK's vocabulary where our users
already know it (STYLE 14)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gateway.cli.registry import CommandRegistry
from gateway.command_setup import load_command_config, open_command_index

EXAMPLES = """examples:
  dicom-gateway serve                                  # embedded defaults: DICOM_GATEWAY on port 11112
  dicom-gateway serve --config /etc/dicom-gateway --workers 4
  dicom-gateway echo 127.0.0.1 11112 --aec DICOM_GATEWAY
  dicom-gateway config check /etc/dicom-gateway
  dicom-gateway plugins
  dicom-gateway route test --config /etc/dicom-gateway --calling-ae SCANNER1 IM0001.dcm
"""


def _cmd_serve(args: argparse.Namespace) -> int:
    from gateway import logs
    from gateway.config import ConfigError, load_config

    overrides = {k: v for k, v in (("port", args.port), ("ae_title", args.ae_title),
                                   ("data_dir", args.data_dir), ("workers", args.workers)) if v is not None}
    config_dir = Path(args.config) if args.config else None
    try:
        config = load_config(config_dir, overrides)
    except ConfigError as exc:
        print(f"dicom-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    logs.setup(config.node.log_level, config.node.log_format)
    from gateway.supervisor import Supervisor

    return Supervisor(config, config_dir, overrides).run()


def _cmd_plugins(args: argparse.Namespace) -> int:
    from gateway.plugins import load_host

    config = load_command_config(args)
    host = load_host(config.disabled_plugins, config.plugins.modules)
    rows = [("plugin", "version", "distribution", "hooks", "services")]
    for info in host.list():
        services = ", ".join(s.name for s in host.services.services.values() if s.plugin == info.name)
        rows.append((info.name, info.version, info.distribution,
                     ", ".join(h.removeprefix("gateway_") for h in info.hooks), services or "-"))
    for name in sorted(config.disabled_plugins):
        rows.append((name, "-", "-", "(disabled by config)", "-"))
    for name, why in sorted(host.failed.items()):
        rows.append((name, "-", "-", f"(failed: {why})", "-"))
    from gateway.terminal import print_table

    print_table(rows)
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    """The config's own checks, then every plugin's (``gateway_config_loaded``, as
    a start or a reload runs them): a config a plugin refuses is not OK."""
    import io

    from gateway.config import check_command, load_config
    from gateway.plugins import HookError, load_host

    summary = io.StringIO()
    if check_command(Path(args.dir), out=summary):
        print(summary.getvalue(), end="")
        return 1
    config = load_config(Path(args.dir))
    host = load_host(config.disabled_plugins, config.plugins.modules)
    try:
        problems = [p for answer in host.call("gateway_config_loaded", config=config) or () for p in answer or ()]
    except HookError as exc:
        problems = [str(exc)]
    from gateway.routing import check_rule_actions

    # Rules naming a plugin's action (prefetch, print, …), as serve refuses them.
    problems += check_rule_actions(config, host.services)
    for name, why in sorted(host.failed.items()):  # serving works without it: said, not refused
        print(f"warning: plugin {name!r} left out: {why}", file=sys.stderr)
    if problems:
        print(f"{args.dir}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(summary.getvalue(), end="")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from gateway.progress import Progress
    from gateway.transcode import TranscodeError, plan_conversions, convert_paths

    try:
        total = len(plan_conversions(args.inputs, Path(args.output)))
        bar = Progress(total, "convert", verb="converted")
        summary = convert_paths(args.inputs, args.output, args.syntax,
                                progress=lambda src, dst, err: bar.step(str(src), failed=err is not None))
    except (TranscodeError, OSError) as exc:
        print(f"dicom-gateway convert: {exc}", file=sys.stderr)
        return 2
    bar.close()
    for src, why in summary.failed:
        print(f"failed: {src}: {why}", file=sys.stderr)
    return 0 if summary.ok else 1


def _cmd_ls(args: argparse.Namespace) -> int:
    from gateway.index.cli import ls_command
    from gateway.plugins import load_host

    config = load_command_config(args)
    host = load_host(config.disabled_plugins, config.plugins.modules)

    def columns(level: str, uids: list[str]) -> dict[str, dict[str, str]]:
        merged: dict[str, dict[str, str]] = {}
        answers, failures = host.call_each("gateway_ls_columns", level=level, uids=uids, config=config)
        for plugin, exc in failures:  # the listing still prints, without that plugin's columns
            print(f"dicom-gateway ls: columns of plugin {plugin!r} left out: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
        for _plugin, answer in answers:
            for name, values in (answer or {}).items():
                merged.setdefault(name, {}).update(values)
        return merged

    return ls_command(open_command_index(config, "ls", read_only=True), args, columns=columns)


def _cmd_import(args: argparse.Namespace) -> int:
    from gateway.command_setup import command_runtime
    from gateway.importer import import_command

    return import_command(args.paths, command_runtime(load_command_config(args)))


def _cmd_route_test(args: argparse.Namespace) -> int:
    from gateway.routing.cli import route_test_command
    from gateway.runtime import PluginConfigError, build_runtime

    config = load_command_config(args)
    try:
        runtime = build_runtime(config, 1)
    except PluginConfigError as exc:
        print(f"dicom-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    return route_test_command(args.files, runtime, args.calling_ae, args.called_ae or config.node.ae_title,
                              args.source)


def _cmd_conformance(args: argparse.Namespace) -> int:
    from gateway.conformance import render
    from gateway.plugins import load_host

    config = load_command_config(args)
    print(render(config, load_host(config.disabled_plugins, config.plugins.modules)), end="")
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    import pydicom
    import pynetdicom

    from gateway import __version__

    try:
        from gateway import _rust

        rust = _rust.__version__
    except ImportError as exc:
        rust = f"not built ({exc})"
    print(f"dicom-gateway {__version__}\n  rust extension {rust}\n"
          f"  pynetdicom {pynetdicom.__version__}\n  pydicom {pydicom.__version__}")
    return 0


def register(commands: CommandRegistry) -> None:
    """The core's own commands: running the gateway, its config, its archive and
    index, its plugins and the conformance statement generated from them."""
    p = commands.add_parser("serve", help="run the gateway in the foreground")
    p.add_argument("--config", metavar="DIR", help="config directory (default: embedded defaults)")
    p.add_argument("--port", type=int, help="port of the first listener")
    p.add_argument("--ae-title", help="local AE title")
    p.add_argument("--data-dir", help="data directory")
    p.add_argument("--workers", type=int, help="worker processes sharing each port")
    p.set_defaults(func=_cmd_serve)

    p = commands.add_parser("convert", help="convert files or folders to another transfer syntax",
                            examples="dicom-gateway convert in/ out/ --syntax explicit-be")
    p.add_argument("inputs", nargs="+", metavar="IN", help="files or folders")
    p.add_argument("output", metavar="OUT", help="output file (one input file) or folder")
    p.add_argument("--syntax", required=True, help="implicit | explicit-le | explicit-be (or a UID)")
    p.set_defaults(func=_cmd_convert)

    from gateway.index.cli import LS_EXAMPLES, add_ls_arguments

    p = commands.add_parser("ls", help="list patients, studies and series in the index (a tree with counts)",
                            epilog=LS_EXAMPLES)
    commands.config_options(p)
    add_ls_arguments(p)
    p.set_defaults(func=_cmd_ls)

    p = commands.add_parser("import", help="import DICOM files or folders into the archive (no DICOMDIR needed)",
                            examples="dicom-gateway import /media/cdrom /tmp/export/CT_0001.dcm")
    p.add_argument("paths", nargs="+", metavar="PATH")
    commands.config_options(p)
    p.set_defaults(func=_cmd_import)

    p = commands.add_parser("plugins", help="list plugins, versions and the hooks they implement")
    p.add_argument("--config", metavar="DIR")
    p.set_defaults(func=_cmd_plugins)

    p = commands.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    c = csub.add_parser("check", help="validate a config directory without running it")
    c.add_argument("dir")
    c.set_defaults(func=_cmd_config_check)

    p = commands.add_parser("route", help="routing tools")
    rsub = p.add_subparsers(dest="route_command", required=True, metavar="SUBCOMMAND")
    r = rsub.add_parser("test", help="show which routing rules match DICOM files, and why",
                        epilog="example: dicom-gateway route test --config /etc/dicom-gateway "
                               "--calling-ae SCANNER1 ct/IM0001.dcm",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("files", nargs="+", metavar="FILE")
    r.add_argument("--config", metavar="DIR")
    r.add_argument("--calling-ae", "-aet", default="IMPORT", help="calling AE title to assume (default IMPORT)")
    r.add_argument("--called-ae", "-aec", help="called AE title to assume (default the node's)")
    r.add_argument("--source", default="127.0.0.1", help="sender's address to assume (default 127.0.0.1)")
    r.set_defaults(func=_cmd_route_test)

    p = commands.add_parser("conformance", help="print the conformance statement generated from the loaded services")
    p.add_argument("--config", metavar="DIR")
    p.set_defaults(func=_cmd_conformance)

    p = commands.add_parser("version", help="print versions")
    p.set_defaults(func=_cmd_version)
