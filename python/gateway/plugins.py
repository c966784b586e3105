"""The plugin host: loads plugins, collects registrations, calls hooks safely.

Built-in plugins and third-party ones load through the same entry-point
group (STYLE 7); any of them can be disabled by name in config. A raising
hook implementation is logged and counted and never escapes to the network
layer (DESIGN §3).
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Iterable

import pluggy

from gateway import hookspecs
from gateway.metrics import METRICS
from gateway.services import BackendRegistry, ServiceRegistry

ENTRY_POINT_GROUP = "dicom_gateway"
#: The distribution that holds the built-in plugins (plugins/pyproject.toml).
BUILTIN_DIST = "dicom-gateway-plugins"
log = logging.getLogger("gateway.plugins")


@dataclass(frozen=True)
class PluginInfo:
    name: str
    module: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


class HookError(RuntimeError):
    """A hook implementation raised; carries the plugin's name."""

    def __init__(self, hook: str, plugin: str, exc: BaseException) -> None:
        super().__init__(f"plugin {plugin!r} failed in {hook}: {exc!r}")
        self.hook = hook
        self.plugin = plugin
        self.__cause__ = exc


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


@dataclass
class PluginHost:
    """One pluggy manager with the plugins for one config generation."""

    disabled: frozenset[str] = frozenset()
    extra_modules: tuple[str, ...] = ()
    pm: pluggy.PluginManager = field(init=False)
    infos: dict[str, PluginInfo] = field(init=False, default_factory=dict)
    services: ServiceRegistry = field(init=False, default_factory=ServiceRegistry)
    storage_backends: BackendRegistry = field(init=False)
    failed: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.storage_backends = BackendRegistry("storage backend")
        self.services.storage_backends = self.storage_backends
        self._lock = threading.Lock()

    # -- loading ---------------------------------------------------------
    def load(self, registrations: bool = True) -> "PluginHost":
        """Import and register every plugin; with ``registrations`` also collect
        their services and backends (the command line needs only their commands)."""
        for ep in _entry_points():
            if ep.name in self.disabled:
                log.info("plugin disabled by config", extra={"plugin": ep.name})
                continue
            dist = ep.dist
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin is left out, named, never fatal
                log.error("plugin failed to load; leaving it out", exc_info=exc, extra={"plugin": ep.name})
                METRICS.inc("gateway_plugin_errors_total", hook="load", plugin=ep.name)
                self.failed[ep.name] = f"import {ep.value}: {type(exc).__name__}: {exc}"
                continue
            self._register(ep.name, plugin, dist.name if dist else "?", dist.version if dist else "?")
        for module in self.extra_modules:
            name = module.rsplit(".", 1)[-1]
            if name in self.disabled:
                continue
            self._register(name, importlib.import_module(module), "(config)", "-")
        if registrations:
            self._collect_registrations()
        return self

    def register(self, name: str, plugin: Any) -> None:
        """Register an in-process plugin object (tests, embedding)."""
        self._register(name, plugin, "(runtime)", "-")
        self._collect_registrations(only=name)

    def _register(self, name: str, plugin: Any, dist: str, version: str) -> None:
        wanted = getattr(plugin, "GATEWAY_PLUGIN_API", None)
        ours = int(hookspecs.API_VERSION.split(".")[0])
        if wanted is not None and wanted != ours:
            # A hook it implements may have changed meaning: leave it out, named.
            log.error("plugin written for another hook API major version; leaving it out",
                      extra={"plugin": name, "wanted": wanted, "api": hookspecs.API_VERSION})
            METRICS.inc("gateway_plugin_errors_total", hook="load", plugin=name)
            self.failed[name] = f"written for hook API {wanted}, this gateway has {hookspecs.API_VERSION}"
            return
        self.pm.register(plugin, name=name)
        hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()))
        module = getattr(plugin, "__name__", type(plugin).__module__)
        self.infos[name] = PluginInfo(name, module, dist, version, hooks)

    def _collect_registrations(self, only: str | None = None) -> None:
        for hook, registry in (
            ("gateway_register_services", self.services),
            ("gateway_register_storage_backends", self.storage_backends),
        ):
            self.collect(hook, registry, only=only)

    def collect(self, hook: str, registry: Any, *, arg: str = "registry", only: str | None = None) -> None:
        """Call a registration hook one plugin at a time (historic hooks would call
        them all at once), so each registration is attributed to its plugin:
        ``registry._current_plugin`` names it while its implementation runs. A
        plugin that cannot register is unloaded and named in ``failed``, not fatal."""
        # The built-ins register first, so a third-party plugin that takes a name
        # they use is the one refused, whatever its entry-point name sorts as.
        ordered = sorted(self.pm.list_name_plugin(),
                         key=lambda np: getattr(self.infos.get(np[0]), "distribution", None) != BUILTIN_DIST)
        for name, plugin in ordered:
            if (only is not None and name != only) or not self._implements(plugin, hook):
                continue
            registry._current_plugin = name
            try:
                getattr(plugin, hook)(**{arg: registry})
            except Exception as exc:
                log.error("plugin failed to register; unloading it", exc_info=exc,
                          extra={"plugin": name, "hook": hook})
                METRICS.inc("gateway_plugin_errors_total", hook=hook, plugin=name)
                forget = getattr(registry, "forget", None)
                if forget is not None:  # what it added before it failed goes too
                    forget(name)
                self.pm.unregister(plugin)
                self.failed[name] = f"{hook}: {type(exc).__name__}: {exc}"
            finally:
                registry._current_plugin = ""

    def _implements(self, plugin: Any, hook: str) -> bool:
        return any(i.plugin is plugin for i in getattr(self.pm.hook, hook).get_hookimpls())

    def list(self) -> list[PluginInfo]:
        return [self.infos[n] for n in sorted(self.infos)]

    # -- calling -----------------------------------------------------------
    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call a hook; a raising implementation becomes a :class:`HookError`."""
        caller = getattr(self.pm.hook, hook)
        try:
            return caller(**kwargs)
        except Exception as exc:
            plugin = _blame(caller, exc)
            METRICS.inc("gateway_plugin_errors_total", hook=hook, plugin=plugin)
            log.error("plugin hook failed", exc_info=exc, extra={"hook": hook, "plugin": plugin})
            raise HookError(hook, plugin, exc) from exc

    def call_each(self, hook: str, **kwargs: Any) -> tuple[list[tuple[str, Any]], list[tuple[str, BaseException]]]:
        """Call every implementation on its own, so one that raises costs only its
        own answer: ([(plugin, result)], [(plugin, error)]); errors logged and counted."""
        results: list[tuple[str, Any]] = []
        failures: list[tuple[str, BaseException]] = []
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):  # pluggy's order: last registered first
            try:
                results.append((impl.plugin_name, impl.function(**{a: kwargs[a] for a in impl.argnames})))
            except Exception as exc:
                METRICS.inc("gateway_plugin_errors_total", hook=hook, plugin=impl.plugin_name)
                log.error("plugin hook failed", exc_info=exc, extra={"hook": hook, "plugin": impl.plugin_name})
                failures.append((impl.plugin_name, exc))
        return results, failures

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Call an observation hook; failures are logged and swallowed."""
        try:
            self.call(hook, **kwargs)
        except HookError:
            pass


def _blame(caller: Any, exc: BaseException) -> str:
    """Name the plugin whose code raised, from the traceback."""
    modules = {
        getattr(impl.plugin, "__name__", type(impl.plugin).__module__): impl.plugin_name
        for impl in caller.get_hookimpls()
    }
    tb = exc.__traceback__
    culprit = "?"
    while tb is not None:
        mod = tb.tb_frame.f_globals.get("__name__", "")
        if mod in modules:
            culprit = modules[mod]
        tb = tb.tb_next
    return culprit


def load_host(disabled: Iterable[str] = (), extra_modules: Iterable[str] = ()) -> PluginHost:
    return PluginHost(frozenset(disabled), tuple(extra_modules)).load()
