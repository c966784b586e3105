"""The service registry: what a plugin offers, and who handles a request.

A service declares its SOP classes, role and transfer syntaxes; the
association layer builds presentation contexts from the registry, and the
conformance statement is generated from it (DESIGN §3). Lookup is by DIMSE
operation and abstract syntax, so a new service class needs no core change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from gateway.messages import UNCOMPRESSED_SYNTAXES

#: DIMSE operations a service may implement, as method names on its handler.
OPERATIONS = (
    "c_echo", "c_store", "c_find", "c_get", "c_move",
    "n_event_report", "n_get", "n_set", "n_action", "n_create", "n_delete",
)


@dataclass(frozen=True)
class Service:
    """One service class offered by a plugin.

    ``handler`` is an object with methods named after the operations it
    serves (``c_echo(request)``, ``c_store(request)`` …), each returning a
    :class:`gateway.messages.Response` or a status code.
    ``sop_classes`` may be a callable taking the running config, for
    services whose SOP classes are configuration (e.g. STO-1's "any storage").
    """

    name: str
    sop_classes: tuple[str, ...] | Callable[[Any], Iterable[str]]
    handler: Any
    transfer_syntaxes: tuple[str, ...] = UNCOMPRESSED_SYNTAXES
    #: STO-3: "acceptor" picks by the order of ``transfer_syntaxes`` (Philips:
    #: Explicit LE > Explicit BE > Implicit LE); "proposer" takes the first of
    #: the peer's syntaxes we support (GENIE). May be a callable of the config.
    syntax_policy: str | Callable[[Any], str] = "acceptor"
    #: "scp" serves requests, "scu" makes them (Storage SCU, Storage Commitment
    #: SCU, Q/R SCU, Print SCU), "both" does each.
    role: str = "scp"
    description: str = ""
    #: For the SCU role: the object through which the core and other plugins act
    #: as this SCU (the Storage SCU's ``send``, …); found with
    #: :meth:`ServiceRegistry.scu`. Its methods are the service's own API.
    client: Any = None
    #: For the SCU role: what it proposes — presentation contexts, transfer
    #: syntax order, SCP/SCU role selection — one line each, as the generated
    #: conformance statement shows them.
    scu_behaviour: tuple[str, ...] = ()
    #: For the SCU role, when it proposes other syntaxes than it accepts as SCP.
    scu_transfer_syntaxes: tuple[str, ...] = ()
    # Name of the plugin that registered it (filled in by the registry).
    plugin: str = ""

    def operations(self) -> tuple[str, ...]:
        return tuple(op for op in OPERATIONS if callable(getattr(self.handler, op, None)))

    def resolve_syntax_policy(self, config: Any) -> str:
        return self.syntax_policy(config) if callable(self.syntax_policy) else self.syntax_policy

    def resolve_sop_classes(self, config: Any) -> tuple[str, ...]:
        if callable(self.sop_classes):
            return tuple(self.sop_classes(config))
        return tuple(self.sop_classes)


class DuplicateRegistration(ValueError):
    pass


@dataclass(frozen=True)
class RuleAction:
    """A routing rule action a plugin provides (``action = "<name>"`` in routes/*.toml;
    the rule's ``[rule.<name>]`` table is its settings, ``rule.action_settings``).

    ``record(conn, instance, rule, config)`` is called **inside the storage
    service's index transaction** for every stored instance the rule matches,
    after its index row was written (the instance is in the index), on a
    savepoint of its own: write your job rows on ``conn`` so they commit with
    the instance (a transactional outbox, like forward jobs) — no network I/O,
    nothing slow: the store holds the index's write lock. One that raises is
    rolled back alone, logged and counted; the instance is stored anyway.
    ``validate(rule, file, line, key_lines, config)`` returns ``file:line: key``
    problems with the rule's settings (the config is refused), or ``[]``.
    """

    name: str
    record: Callable[..., Any]
    validate: Callable[..., list[str]] | None = None
    description: str = ""
    plugin: str = ""


@dataclass
class ServiceRegistry:
    """Collects services from `gateway_register_services`."""

    services: dict[str, Service] = field(default_factory=dict)
    #: The same host's storage backends, so a service can open the backend
    #: its config names when it handles a request (registration order of
    #: plugins does not matter: look it up at request time).
    storage_backends: "BackendRegistry | None" = None
    #: The same host's print and media drivers (API 1.2), looked up the same way.
    print_drivers: "BackendRegistry | None" = None
    media_drivers: "BackendRegistry | None" = None
    #: Routing rule actions provided by plugins, by name (``add_rule_action``).
    rule_actions: dict[str, RuleAction] = field(default_factory=dict)
    _current_plugin: str = ""

    def add_rule_action(self, action: RuleAction) -> None:
        """Provide a routing rule action (``action = "<name>"``); see :class:`RuleAction`."""
        from gateway.routing.rules import BUILTIN_ACTIONS

        if action.name in BUILTIN_ACTIONS or action.name in self.rule_actions:
            other = self.rule_actions[action.name].plugin if action.name in self.rule_actions else "the core"
            raise DuplicateRegistration(f"rule action {action.name!r} registered twice (by {other!r} "
                                        f"and {self._current_plugin!r})")
        object.__setattr__(action, "plugin", action.plugin or self._current_plugin)
        self.rule_actions[action.name] = action

    def add(self, service: Service) -> None:
        if service.name in self.services:
            other = self.services[service.name].plugin
            raise DuplicateRegistration(
                f"service {service.name!r} registered twice (by {other!r} and {self._current_plugin!r})"
            )
        if service.role not in ("scp", "scu", "both"):
            raise ValueError(f"service {service.name!r}: role must be scp, scu or both")
        if not service.operations() and service.role != "scu":
            raise ValueError(f"service {service.name!r}: handler implements no DIMSE operation")
        object.__setattr__(service, "plugin", service.plugin or self._current_plugin)
        self.services[service.name] = service

    def scp_table(self, config: Any) -> dict[str, list[Service]]:
        """abstract syntax -> services acting as SCP for it, in registration order."""
        table: dict[str, list[Service]] = {}
        for service in self.services.values():
            if service.role == "scu":
                continue
            for uid in service.resolve_sop_classes(config):
                table.setdefault(uid, []).append(service)
        return table

    def scu(self, name: str) -> Service:
        """The SCU-role service called ``name`` (e.g. ``"storage-scu"``), for the
        core and for plugins that act through it (a C-MOVE's sub-operations go
        out through the Storage SCU). LookupError names the ones there are."""
        service = self.services.get(name)
        if service is None or service.role == "scp":
            known = ", ".join(sorted(s.name for s in self.scu_services())) or "none"
            raise LookupError(f"no SCU service named {name!r} (registered: {known})")
        return service

    def scu_services(self) -> list[Service]:
        """Services that act as SCU, in registration order."""
        return [s for s in self.services.values() if s.role in ("scu", "both")]

    def find(self, config: Any, operation: str, abstract_syntax: str) -> Service | None:
        """Who handles a request: an SCP service of the SOP class; else, for the
        requests an SCU receives (an N-EVENT-REPORT from a Storage Commitment
        SCP, PS3.4 J.3.3), a service registered with role "scu"."""
        for service in self.scp_table(config).get(abstract_syntax, ()):
            if operation in service.operations():
                return service
        for service in self.services.values():
            if (service.role == "scu" and operation in service.operations()
                    and abstract_syntax in service.resolve_sop_classes(config)):
                return service
        return None


@dataclass
class BackendRegistry:
    """Named factories for storage backends, print drivers or media drivers.

    Chosen by name from config (STYLE 8), never by import side effects.
    """

    kind: str
    factories: dict[str, Callable[..., Any]] = field(default_factory=dict)
    plugins: dict[str, str] = field(default_factory=dict)
    _current_plugin: str = ""

    def add(self, name: str, factory: Callable[..., Any]) -> None:
        if name in self.factories:
            raise DuplicateRegistration(
                f"{self.kind} {name!r} registered twice (by {self.plugins[name]!r} and {self._current_plugin!r})"
            )
        self.factories[name] = factory
        self.plugins[name] = self._current_plugin

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            factory = self.factories[name]
        except KeyError:
            known = ", ".join(sorted(self.factories)) or "none"
            raise LookupError(f"no {self.kind} named {name!r} (registered: {known})") from None
        return factory(*args, **kwargs)
