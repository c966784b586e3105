"""The hooks: what the gateway calls. Kept thin; the work is in the other modules.

* ``gateway_config_loaded``: refuse a bad ``plugins/suv.toml`` (file:line: key).
* ``gateway_instance_stored``: queue a stored PET object for its SUV row (no I/O here).
* ``gateway_ls_columns``: an ``SUVbw`` column in ``dicom-gateway ls``.
* ``gateway_register_commands``: ``dicom-gateway suv``.
"""

from __future__ import annotations

from typing import Any

from gateway.hookspecs import hookimpl

#: The hook API major version this plugin is written for: a gateway with
#: another major leaves the plugin out (and names it) instead of calling hooks
#: whose meaning may have changed.
GATEWAY_PLUGIN_API = 1

_settings: tuple[Any, Any] = (None, None)  # (config, its settings): validated once per config generation


def _settings_for(config: Any) -> Any:
    global _settings
    if _settings[0] is not config:
        from gateway_suv.settings import settings_of

        _settings = (config, settings_of(config))
    return _settings[1]


@hookimpl
def gateway_config_loaded(config: Any) -> list[str]:
    from gateway.config import PluginSettingsError

    try:
        _settings_for(config)
    except PluginSettingsError as exc:
        return exc.problems
    return []


@hookimpl
def gateway_instance_stored(instance: Any, config: Any) -> None:
    if instance.path is None or (instance.modality or "") not in _settings_for(config).modalities:
        return
    from gateway_suv.store import WRITER

    # Only a queue put here: the peer is waiting for its C-STORE response.
    WRITER.submit(config.effective_database_url(), instance.path, instance.sop_instance_uid,
                  instance.series_instance_uid, instance.study_instance_uid)


@hookimpl
def gateway_ls_columns(level: str, uids: list[str], config: Any) -> dict[str, dict[str, str]] | None:
    if level != "series" or not uids:
        return None
    from gateway.index import shared_index

    from gateway_suv.report import series_column
    from gateway_suv.store import read_rows

    rows = read_rows(shared_index(config.effective_database_url()).engine, series=uids)
    return {"SUVbw": series_column(rows, _settings_for(config).prefer)} if rows else None


@hookimpl
def gateway_register_commands(commands: Any) -> None:
    from gateway_suv.command import add_suv_parser

    add_suv_parser(commands)
