"""The storage plugin's commands: ``send`` (the Storage SCU) and ``archive check``.

Named as the plugin's command registrar (``dicom_gateway.commands`` entry point),
so the command line builds them without importing the storage service module.
"""

from __future__ import annotations

from typing import Any

from gateway_plugins.archive_check import add_archive_parser
from gateway_plugins.send_command import add_send_parser


def add_storage_parsers(sub: Any) -> None:
    add_send_parser(sub)
    add_archive_parser(sub)
