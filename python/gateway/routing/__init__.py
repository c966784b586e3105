"""Routing: which destinations an instance is forwarded to (routes/*.toml + `gateway_route`).

See :mod:`gateway.routing.rules` for the rule syntax and
:mod:`gateway.routing.router` for how rules and hooks combine.
"""

from gateway.routing.router import (Router, RoutingDecision, RuleVerdict, association_key, check_rule_actions,
                                    header_loader, load_rules)
from gateway.routing.rules import RouteRule, compile_rule

__all__ = ["Router", "RoutingDecision", "RuleVerdict", "RouteRule", "compile_rule", "load_rules",
           "association_key", "header_loader", "check_rule_actions"]
