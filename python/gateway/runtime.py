"""One config generation, ready to serve: config + plugins + contexts.

A runtime is immutable once built. Hot reload builds a new one (validate,
provision) and swaps the reference; associations keep the one they started
with until they end (DESIGN §4, STYLE 12).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.plugins import HookError, PluginHost, load_host

log = logging.getLogger("gateway.runtime")


class PluginConfigError(Exception):
    """The config was valid TOML but plugins refused it."""


@dataclass(frozen=True)
class Runtime:
    config: Any
    plugins: PluginHost
    generation: int
    spool_dir: Path

    @functools.cached_property
    def scp_table(self) -> dict[str, list[Any]]:
        """abstract syntax -> SCP services, for this config generation."""
        return self.plugins.services.scp_table(self.config)

    @functools.cached_property
    def router(self) -> Any:
        """This generation's router (routes/*.toml + `gateway_route`)."""
        from gateway.routing import Router

        return Router(self.config, self.plugins)

    @functools.cached_property
    def contexts(self) -> list[Any]:
        from gateway.net.contexts import scp_contexts

        return scp_contexts(self.plugins.services, self.config)

    @functools.cached_property
    def default_role_contexts(self) -> list[Any]:
        """:attr:`contexts` for a peer that proposes no SCP role: only the SOP
        classes an SCP service serves (gateway.net.policy)."""
        return [cx for cx in self.contexts if str(cx.abstract_syntax) in self.scp_table]


def build_runtime(config: Any, generation: int, host: PluginHost | None = None) -> Runtime:
    """Load plugins for ``config`` and let them validate it.

    Raises :class:`PluginConfigError` listing every plugin's complaint.
    """
    if host is None:
        host = load_host(config.disabled_plugins, config.plugins.modules)
    host.hook_budget = config.node.hook_timeout or None  # a peer is waiting on these hooks
    try:
        answers = host.call("gateway_config_loaded", config=config)
    except HookError as exc:
        raise PluginConfigError(str(exc)) from exc
    problems = [p for answer in answers or () for p in (answer or ())]
    if getattr(config, "routes", None):  # rules whose action a plugin provides (prefetch, …)
        from gateway.routing import check_rule_actions

        problems += check_rule_actions(config, host.services)
    if problems:
        raise PluginConfigError("\n".join(problems))
    data_dir = Path(config.node.data_dir)
    spool = data_dir / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    return Runtime(config=config, plugins=host, generation=generation, spool_dir=spool)
