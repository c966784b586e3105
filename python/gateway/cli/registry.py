"""Who adds which ``dicom-gateway`` command: the core's own and every plugin's,
through one registry (hook ``gateway_register_commands``, as pytest's
``pytest_addoption`` or datasette's ``register_commands``).

The registry hands out plain :mod:`argparse` sub-parsers and remembers which
plugin added each command, so ``--help`` can group them and a name taken twice
is refused with both owners named.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

CORE = "core"


class CommandTaken(ValueError):
    pass


class CommandRegistry:
    """The top-level sub-commands of ``dicom-gateway``."""

    def __init__(self, subparsers: Any) -> None:
        self._sub = subparsers
        #: command name -> (plugin that added it, one-line help)
        self.commands: dict[str, tuple[str, str]] = {}
        self._current_plugin = CORE

    def add_parser(self, name: str, *, help: str, examples: str | None = None,
                   **kwargs: Any) -> argparse.ArgumentParser:
        """A new sub-command ``name``; ``examples`` (lines of shell) become its epilog.
        Other keyword arguments go to :meth:`argparse._SubParsersAction.add_parser`."""
        if name in self.commands:
            raise CommandTaken(f"command {name!r} is already added by {self.commands[name][0]!r}")
        if examples is not None:
            kwargs["epilog"] = "examples:\n" + textwrap.indent(textwrap.dedent(examples).strip("\n"), "  ")
        kwargs.setdefault("description", help)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        # No help= for argparse: the grouped listing in the top-level help replaces its own.
        parser = self._sub.add_parser(name, **kwargs)
        # ``args.command_plugin``: who added the command, so the command can tell when
        # the config disables that plugin without loading every plugin to find out.
        parser.set_defaults(command_plugin=self._current_plugin)
        self.commands[name] = (self._current_plugin, help)
        return parser

    def forget(self, plugin: str) -> None:
        """Take back every command ``plugin`` added (it failed half-way)."""
        for name in [n for n, (p, _) in self.commands.items() if p == plugin]:
            del self.commands[name]
            self._sub.choices.pop(name, None)

    @staticmethod
    def config_options(parser: argparse.ArgumentParser) -> None:
        """``--config DIR`` and ``--data-dir``, as every command that reads the config has."""
        parser.add_argument("--config", metavar="DIR", help="config directory (default: embedded defaults)")
        parser.add_argument("--data-dir", help="data directory (default from config)")

    def grouped_help(self) -> str:
        """The command list for the top-level help: the core's first, then one
        block per plugin, each command with its one-line help."""
        owners = [CORE] + sorted({p for p, _ in self.commands.values()} - {CORE})
        width = max((len(n) for n in self.commands), default=0) + 2
        blocks = []
        for owner in owners:
            title = "commands" if owner == CORE else f"commands from plugin {owner!r}"
            lines = [f"  {name:<{width}}{text}" for name, (p, text) in sorted(self.commands.items()) if p == owner]
            blocks.append(f"{title}:\n" + "\n".join(lines))
        return "\n\n".join(blocks)
