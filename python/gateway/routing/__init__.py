"""Routing: which destinations an instance is forwarded to (routes/*.toml + `gateway_route`).

See :mod:`gateway.routing.rules` for the rule syntax and
:mod:`gateway.routing.router` for how rules and hooks combine.

The names below are imported on first use: the config loader needs only
:mod:`gateway.routing.rules`, and the router imports the forward queue (SQLAlchemy),
which a command that only reads its config would pay for at start-up (issue 13).
"""

from __future__ import annotations

from typing import Any

_FROM = {**dict.fromkeys(("Router", "RoutingDecision", "RuleVerdict", "association_key", "check_rule_actions",
                          "header_loader", "load_rules"), "router"),
         **dict.fromkeys(("RouteRule", "compile_rule"), "rules")}

__all__ = ["Router", "RoutingDecision", "RuleVerdict", "RouteRule", "compile_rule", "load_rules",
           "association_key", "header_loader", "check_rule_actions"]


def __getattr__(name: str) -> Any:
    module = _FROM.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.routing' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"gateway.routing.{module}"), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value
