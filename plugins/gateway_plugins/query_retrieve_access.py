"""Who may query and retrieve (issue 12, QRS-5; docs/query-retrieve.md).

A peer whose calling AE title is a configured remote's (``remotes/*.toml``) may C-FIND
when that remote has ``allow_query = true`` and C-MOVE / C-GET when it has
``allow_move = true`` (both default true). When several remotes carry the AE title,
those whose ``host`` is literally the peer's address decide, else all of them; any one
that forbids refuses. A calling AE title no remote carries is let in or refused by
``unknown_callers`` in ``plugins/query_retrieve.toml`` (default ``"allow"``)::

    # plugins/query_retrieve.toml
    unknown_callers = "refuse"    # only configured remotes may query and retrieve

The association is accepted as ever (the peer may still echo and store); the request
itself is answered with a failure status Cxxx "Unable to process" — 0xC124, with an
Error Comment saying why, and a log line. PS3.4 gives C-FIND, C-MOVE and C-GET no
"not authorized" status (A700 would say "out of resources": a peer retries it).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.messages import Response
from gateway.status import Status

log = logging.getLogger("gateway.qr")

#: The plugin settings file every Q/R plugin reads: plugins/query_retrieve.toml.
SETTINGS = "query_retrieve"


class QueryRetrieveSettings(BaseModel):
    """plugins/query_retrieve.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unknown_callers: Literal["allow", "refuse"] = Field(
        "allow", description="a calling AE title that is no configured remote's: allow or refuse its "
                             "C-FIND, C-MOVE and C-GET")


_cache: dict[int, tuple[Any, QueryRetrieveSettings]] = {}
_lock = threading.Lock()


def settings_of(config: Any) -> QueryRetrieveSettings:
    """The validated settings of this config generation (validated once per generation;
    the config was refused at load when they do not validate)."""
    hit = _cache.get(id(config))
    if hit is not None and hit[0] is config:
        return hit[1]
    settings = config.plugin_settings_as(SETTINGS, QueryRetrieveSettings)
    with _lock:
        if len(_cache) > 8:
            _cache.clear()
        _cache[id(config)] = (config, settings)
    return settings


def config_problems(config: Any) -> list[str]:
    """``file:line: key`` problems with plugins/query_retrieve.toml, for ``gateway_config_loaded``."""
    from gateway.config import PluginSettingsError

    try:
        config.plugin_settings_as(SETTINGS, QueryRetrieveSettings)
    except PluginSettingsError as exc:
        return exc.problems
    return []


def refusal(request: Any, operation: str) -> Response | None:
    """None when the requester may perform ``operation`` ("C-FIND", "C-MOVE", "C-GET"),
    else the response refusing it (logged)."""
    config = request.config
    assoc = request.association
    calling = assoc.calling_ae
    flag = "allow_query" if operation == "C-FIND" else "allow_move"
    named = [(n, r) for n, r in sorted((getattr(config, "remotes", None) or {}).items()) if r.ae_title == calling]
    if named:
        chosen = [(n, r) for n, r in named if r.host == assoc.peer_host] or named
        denied = [n for n, r in chosen if not getattr(r, flag)]
        if not denied:
            return None
        why = f"calling AE {calling} (remote {denied[0]}) has {flag} = false"
    else:
        if settings_of(config).unknown_callers == "allow":
            return None
        why = f"AE {calling} is no configured remote (unknown_callers)"
    log.warning("%s refused: %s", operation, why,
                extra={"calling_ae": calling, "peer": assoc.peer_host, "status": f"0x{Status.QR_NOT_AUTHORIZED:04X}"})
    return Response(Status.QR_NOT_AUTHORIZED, error_comment=why)
