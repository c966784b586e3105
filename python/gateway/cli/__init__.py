"""`dicom-gateway`: the operator's command line (DESIGN §6).

The core adds only what is core (:mod:`gateway.cli.core`, :mod:`gateway.cli.queue`);
every service's commands — the built-in ones too — come from plugins through
``gateway_register_commands``, the path a third party uses. A plugin that fails
to load or to add its commands is named in one line on stderr; the rest of the
command line works.
"""

from __future__ import annotations

import argparse
import sys

from gateway.cli.registry import CommandRegistry

__all__ = ["CommandRegistry", "build_parser", "main"]


def _plugin_commands(commands: CommandRegistry) -> dict[str, str]:
    """Add every installed plugin's commands; returns the plugins left out, with why."""
    import logging

    from gateway.plugins import PluginHost

    # The host logs a broken plugin with its traceback; here the one line below
    # says it. Without a handler logging's last resort would print it all on
    # stderr; a command that sets logging up (serve) still gets the records.
    root = logging.getLogger("gateway")
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())
    # Only the commands: a plugin's services (and their imports) are not loaded here,
    # so every command line, --help included, starts fast (issue 13).
    host = PluginHost().load_commands()
    host.collect("gateway_register_commands", commands, arg="commands")
    return host.failed


def build_parser(warn=sys.stderr) -> argparse.ArgumentParser:
    from gateway.cli import core, queue

    parser = argparse.ArgumentParser(
        prog="dicom-gateway", description="DICOM gateway for PET/CT and nuclear medicine.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help=argparse.SUPPRESS)
    commands = CommandRegistry(sub)
    core.register(commands)
    queue.register(commands)
    for name, why in sorted(_plugin_commands(commands).items()):
        if warn is not None:
            print(f"dicom-gateway: plugin {name!r} left out: {why}", file=warn)
    parser.epilog = commands.grouped_help() + "\n\n" + core.EXAMPLES
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
