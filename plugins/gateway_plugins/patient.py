"""Latest demographics (issue 12, QRS-7): the ``patient`` command. The correction
itself is the index's (:mod:`gateway.index.demographics`): C-FIND answers it, and every
object leaving by C-MOVE, C-GET, forwarding or ``send`` carries it."""

from __future__ import annotations

from gateway.hookspecs import hookimpl


@hookimpl
def gateway_register_commands(commands):
    """``patient update``."""
    from gateway_plugins.patient_command import add_patient_parser

    add_patient_parser(commands)
