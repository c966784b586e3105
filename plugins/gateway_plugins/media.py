"""Media interchange (issue 15; MED-1..MED-5): the ``media`` command, the media drivers,
the ``media`` routing rule action and its durable export jobs.

The file-set creator, reader, drivers, rule action, job queue and worker are in
the ``media_*`` modules beside this one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.hookspecs import hookimpl
from gateway.services import RuleAction

GATEWAY_PLUGIN_API = 1
NAME = "media"


class MediaSettings(BaseModel):
    """``plugins/media.toml``: the export worker in the sender process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(5, ge=1)
    backoff_initial: float = Field(30.0, gt=0)
    backoff_max: float = Field(3600.0, gt=0)
    lease: float = Field(600.0, ge=10)
    poll_interval: float = Field(1.0, gt=0)


def settings_of(config: Any) -> MediaSettings:
    try:
        return config.plugin_settings_as(NAME, MediaSettings)
    except Exception:  # refused at load: the last good config has valid ones
        return MediaSettings()


@hookimpl
def gateway_register_media_drivers(registry: Any) -> None:
    """The built-in ``folder`` and ``iso`` drivers, registered like a site's."""
    from gateway_plugins.media_drivers import register_builtin

    register_builtin(registry)


@hookimpl
def gateway_register_services(registry: Any) -> None:
    from gateway_plugins.media_rule import ACTION, record

    # No ``validate`` here: the rule's settings are checked from gateway_config_loaded,
    # which `dicom-gateway config check` runs too (it does not run rule actions' validate).
    registry.add_rule_action(RuleAction(
        name=ACTION, record=record,
        description="write the study to media (a folder, an ISO image, a site's driver) once it is quiet"))


@hookimpl
def gateway_config_loaded(config: Any) -> list[str]:
    from gateway.config import PluginSettingsError
    from gateway_plugins.media_rule import rule_problems

    problems: list[str] = []
    try:
        config.plugin_settings_as(NAME, MediaSettings)
    except PluginSettingsError as exc:
        problems += exc.problems
    return problems + rule_problems(config)


_worker_lock = threading.Lock()
_worker: Any = None
_table_checked: dict[str, float] = {}
#: How often, without media rules, the sender looks whether `media export --queue` made the table.
TABLE_RECHECK = 5.0


def _wanted(config: Any, index: Any) -> bool:
    """Run the worker when a rule writes media, or the job table exists (jobs of an
    earlier config, or queued by `media export --queue`)."""
    from gateway_plugins.media_rule import ACTION

    if any(doc.body.get("action") == ACTION and doc.body.get("enabled", True) for doc in config.routes):
        return True
    key = str(index.engine.url)
    if time.monotonic() - _table_checked.get(key, float("-inf")) < TABLE_RECHECK:
        return False
    _table_checked[key] = time.monotonic()
    from gateway_plugins.media_jobs import table_exists

    try:
        return table_exists(index.engine)
    except Exception:
        return False


@hookimpl
def gateway_sender_poll(config: Any, index: Any, stopping: Any) -> None:
    """The export worker is a daemon thread of the sender process (one per node)."""
    global _worker
    with _worker_lock:
        if _worker is not None and _worker.is_alive():
            _worker.update(config)
            return
        if stopping.is_set() or not _wanted(config, index):
            return
        from gateway_plugins.media_worker import MediaWorker

        _worker = MediaWorker(config, index, stopping)
        _worker.start()


@hookimpl
def gateway_register_commands(commands: Any) -> None:
    """``media export | ls | import | jobs``."""
    from gateway_plugins.media_command import add_media_parser

    add_media_parser(commands)
