"""`dicom-gateway`: the operator's command line (DESIGN §6).

Options follow DCMTK's vocabulary where our users already know it
(``--aet``/``--aec`` as in echoscu, STYLE 14).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

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


def _cmd_echo(args: argparse.Namespace) -> int:
    from gateway.net.scu import AssociationFailed, Peer, echo
    from gateway.status import category

    peer = Peer(args.host, args.port, called_ae=args.aec, calling_ae=args.aet, timeout=args.timeout)
    try:
        results = echo(peer, repeat=args.repeat)
    except AssociationFailed as exc:
        print(f"C-ECHO from {args.aet}: {exc}", file=sys.stderr)
        return 2 if exc.kind == "rejected" else 3
    worst = 0
    for r in results:
        print(f"C-ECHO {args.aet} -> {args.aec}@{args.host}:{args.port}: "
              f"{category(r.status)} (0x{r.status:04X}) in {r.seconds * 1000:.1f} ms")
        if r.status != 0:
            worst = 1
    return worst


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
    from gateway.config import check_command

    return check_command(Path(args.dir))


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

    return ls_command(open_command_index(load_command_config(args), "ls", read_only=True), args)


def _cmd_import(args: argparse.Namespace) -> int:
    from gateway import logs
    from gateway.importer import import_command
    from gateway.runtime import PluginConfigError, build_runtime

    config = load_command_config(args)
    logs.setup("WARNING", "text")
    try:
        runtime = build_runtime(config, 1)
    except PluginConfigError as exc:
        print(f"dicom-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    return import_command(args.paths, runtime)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicom-gateway", description="DICOM gateway for PET/CT and nuclear medicine.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the gateway in the foreground")
    p.add_argument("--config", metavar="DIR", help="config directory (default: embedded defaults)")
    p.add_argument("--port", type=int, help="port of the first listener")
    p.add_argument("--ae-title", help="local AE title")
    p.add_argument("--data-dir", help="data directory")
    p.add_argument("--workers", type=int, help="worker processes sharing each port")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("echo", help="C-ECHO a peer (VER-2), like echoscu",
                       epilog="example: dicom-gateway echo pacs.local 104 --aec PACS",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--aet", "-aet", default="DICOM_GATEWAY", help="calling AE title (default DICOM_GATEWAY)")
    p.add_argument("--aec", "-aec", default="ANY-SCP", help="called AE title (default ANY-SCP)")
    p.add_argument("--repeat", type=int, default=1, help="C-ECHOs on the one association")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for connect/ACSE/DIMSE")
    p.set_defaults(func=_cmd_echo)

    p = sub.add_parser("convert", help="convert files or folders to another transfer syntax",
                       epilog="example: dicom-gateway convert in/ out/ --syntax explicit-be",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IN", help="files or folders")
    p.add_argument("output", metavar="OUT", help="output file (one input file) or folder")
    p.add_argument("--syntax", required=True, help="implicit | explicit-le | explicit-be (or a UID)")
    p.set_defaults(func=_cmd_convert)

    from gateway.send_cli import add_send_parser

    add_send_parser(sub)

    from gateway.index.cli import LS_EXAMPLES, add_ls_arguments

    p = sub.add_parser("ls", help="list patients, studies and series in the index (a tree with counts)",
                       epilog=LS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="DIR")
    p.add_argument("--data-dir", help="data directory (default from config)")
    add_ls_arguments(p)
    p.set_defaults(func=_cmd_ls)

    p = sub.add_parser("import", help="import DICOM files or folders into the archive (no DICOMDIR needed)",
                       epilog="example: dicom-gateway import /media/cdrom /tmp/export/CT_0001.dcm",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--config", metavar="DIR")
    p.add_argument("--data-dir", help="data directory (default from config)")
    p.set_defaults(func=_cmd_import)

    from gateway.queue_cli import add_queue_parser

    def _config_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--config", metavar="DIR")
        q.add_argument("--data-dir", help="data directory (default from config)")

    add_queue_parser(sub, _config_options)

    p = sub.add_parser("plugins", help="list plugins, versions and the hooks they implement")
    p.add_argument("--config", metavar="DIR")
    p.set_defaults(func=_cmd_plugins)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    c = csub.add_parser("check", help="validate a config directory without running it")
    c.add_argument("dir")
    c.set_defaults(func=_cmd_config_check)

    p = sub.add_parser("route", help="routing tools")
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

    p = sub.add_parser("conformance", help="print the conformance statement generated from the loaded services")
    p.add_argument("--config", metavar="DIR")
    p.set_defaults(func=_cmd_conformance)

    from gateway.commit_cli import add_commit_parser

    add_commit_parser(sub)

    p = sub.add_parser("version", help="print versions")
    p.set_defaults(func=_cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. When the reader of stdout goes away (``dicom-gateway queue ls
    | head``) the command ends quietly with status 141, as a program killed by
    SIGPIPE does in a shell (128 + 13; what ``set -o pipefail`` sees from
    ``seq 100000 | head -1`` too), not with a BrokenPipeError traceback."""
    import os
    import select

    try:
        try:
            args = build_parser().parse_args(argv)  # --help prints, then SystemExit(0)
            return int(args.func(args) or 0)
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()  # a closed pipe shows here, not as "Exception ignored" at exit
    except BrokenPipeError:
        try:
            fd = sys.stdout.fileno()
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            closed = any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
        except (AttributeError, OSError, ValueError):
            closed = False
        if not closed:
            raise  # a broken connection to a peer, not our reader: report it as before
        # Python docs (signal, "Note on SIGPIPE"): point stdout at devnull so the
        # flush at interpreter exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
        return 141


if __name__ == "__main__":
    sys.exit(main())
