"""Media interchange (issue 15; MED-1..MED-5): the ``media`` command. The
file-set creator, reader and drivers are in the ``media_*`` modules beside this one."""

from __future__ import annotations

from gateway.hookspecs import hookimpl


@hookimpl
def gateway_register_commands(commands):
    """``media export | ls | import``."""
    from gateway_plugins.media_command import add_media_parser

    add_media_parser(commands)
