"""The plugin host: loads plugins, collects registrations, calls hooks safely.

Built-in plugins and third-party ones load through the same entry-point
group (STYLE 7); any of them can be disabled by name in config. A raising
hook implementation is logged and counted and never escapes to the network
layer (DESIGN §3).

In a serving process (``hook_budget`` set from ``node.hook_timeout``) a
third-party implementation runs on a hook thread under that budget: one that
overruns is abandoned for that operation — the operation goes on without its
answer — and counted in ``gateway_hook_timeouts_total``; while an abandoned
call of a plugin is still running, that plugin's implementations are skipped
(and counted) instead of tying up one more thread each. Built-in plugins run
inline: they are ours, and the hand-off (~50 µs) would be paid per object.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
import os
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterable

import pluggy

from gateway import hookspecs
from gateway.metrics import METRICS
from gateway.services import BackendRegistry, ServiceRegistry

ENTRY_POINT_GROUP = "dicom_gateway"
#: Optional: a plugin's ``gateway_register_commands`` as a callable of its own, under the
#: plugin's entry-point name, for the command line (see :meth:`PluginHost.load_commands`).
COMMANDS_GROUP = "dicom_gateway.commands"
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


class HookTimeout(HookError):
    """A hook implementation overran the host's budget and was abandoned."""

    def __init__(self, hook: str, plugin: str, budget: float, still_running: bool = False) -> None:
        why = "an earlier call is still running" if still_running else f"it ran longer than {budget:g} s"
        RuntimeError.__init__(self, f"plugin {plugin!r} abandoned in {hook}: {why}")
        self.hook = hook
        self.plugin = plugin


class _HookThreads:
    """Daemon threads for budgeted hook calls. Not a ThreadPoolExecutor: its
    threads are joined at interpreter exit, so one hung plugin would hold up
    every shutdown. An abandoned call keeps its thread; more start as needed."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._pid = 0

    def submit(self, fn: Callable[..., Any], **kwargs: Any) -> Future:
        future: Future = Future()
        # The plugin's log lines still name the association (contextvars).
        self._jobs.put((contextvars.copy_context(), fn, kwargs, future))
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked worker
                self._pid, self._idle = os.getpid(), 0
            if self._idle:
                self._idle -= 1
            else:
                threading.Thread(target=self._run, name="gw-hook", daemon=True).start()
        return future

    def _run(self) -> None:
        while True:
            ctx, fn, kwargs, future = self._jobs.get()
            try:
                future.set_result(ctx.run(fn, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)
            with self._lock:
                self._idle += 1


_HOOK_THREADS = _HookThreads()


def _entry_points(group: str = ENTRY_POINT_GROUP) -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=group), key=lambda ep: ep.name)


class _CommandsOnly:
    """Stands in, on the command line, for a plugin whose command registration is an
    entry point of its own: implements ``gateway_register_commands`` by calling it,
    so the plugin's module (its services, their imports) is never imported there."""

    def __init__(self, register: Callable[[Any], None], where: str) -> None:
        self._register = register
        self.__name__ = where  # what `PluginInfo.module` shows: the registrar, not the plugin module

    @hookspecs.hookimpl
    def gateway_register_commands(self, commands: Any) -> None:
        self._register(commands)


@dataclass
class PluginHost:
    """One pluggy manager with the plugins for one config generation."""

    disabled: frozenset[str] = frozenset()
    extra_modules: tuple[str, ...] = ()
    pm: pluggy.PluginManager = field(init=False)
    infos: dict[str, PluginInfo] = field(init=False, default_factory=dict)
    services: ServiceRegistry = field(init=False, default_factory=ServiceRegistry)
    storage_backends: BackendRegistry = field(init=False)
    print_drivers: BackendRegistry = field(init=False)
    media_drivers: BackendRegistry = field(init=False)
    failed: dict[str, str] = field(init=False, default_factory=dict)
    #: Seconds a third-party hook implementation may run (``node.hook_timeout``);
    #: None: inline and unbounded (the command line: nobody else waits).
    hook_budget: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.storage_backends = BackendRegistry("storage backend")
        self.services.storage_backends = self.storage_backends
        self.print_drivers = self.services.print_drivers = BackendRegistry("print driver")
        self.media_drivers = self.services.media_drivers = BackendRegistry("media driver")
        self._lock = threading.Lock()
        self._stuck: dict[str, int] = {}  # plugin -> abandoned calls still running

    # -- loading ---------------------------------------------------------
    def load(self, registrations: bool = True) -> "PluginHost":
        """Import and register every plugin; with ``registrations`` also collect
        their services, backends and drivers (the command line uses :meth:`load_commands`)."""
        for ep in _entry_points():
            self._load_entry_point(ep)
        for module in self.extra_modules:
            name = module.rsplit(".", 1)[-1]
            if name in self.disabled:
                continue
            self._register(name, importlib.import_module(module), "(config)", "-")
        if registrations:
            self._collect_registrations()
        return self

    def load_commands(self) -> "PluginHost":
        """What the command line needs to build its parser, and no more: every plugin's
        ``gateway_register_commands``. A plugin that names that registration in the
        ``dicom_gateway.commands`` group (a callable taking the command registry, under
        its own entry-point name, from the same distribution) is represented by it
        alone; its module, and whatever that module imports for its services, is not
        imported. Any other plugin is imported as :meth:`load` does. Nothing else is
        collected (no services, backends or drivers)."""
        registrars = {ep.name: ep for ep in _entry_points(COMMANDS_GROUP)}
        for ep in _entry_points():
            registrar = registrars.get(ep.name)
            if registrar is not None and _dist_name(registrar) != _dist_name(ep):
                # Only a plugin's own distribution speaks for its commands.
                log.warning("commands entry point of another distribution ignored",
                            extra={"plugin": ep.name, "entry_point": registrar.value})
                registrar = None
            self._load_entry_point(ep, registrar)
        return self

    def _load_entry_point(self, ep: metadata.EntryPoint, registrar: metadata.EntryPoint | None = None) -> None:
        if ep.name in self.disabled:
            log.info("plugin disabled by config", extra={"plugin": ep.name})
            return
        source = registrar or ep
        try:
            loaded = source.load()
            plugin = _CommandsOnly(loaded, source.value) if registrar is not None else loaded
        except Exception as exc:  # a broken plugin is left out, named, never fatal
            log.error("plugin failed to load; leaving it out", exc_info=exc, extra={"plugin": ep.name})
            METRICS.inc("gateway_plugin_errors_total", hook="load", plugin=ep.name)
            self.failed[ep.name] = f"import {source.value}: {type(exc).__name__}: {exc}"
            return
        dist = ep.dist
        self._register(ep.name, plugin, dist.name if dist else "?", dist.version if dist else "?")

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
        wrappers = [i.function.__name__ for i in self._impls_of(plugin) if i.hookwrapper or i.wrapper]
        if wrappers:
            # The host calls implementations one by one (budgets, blame): a
            # wrapper around the others has no place in that.
            self.pm.unregister(plugin)
            log.error("plugin uses hook wrappers, which the gateway does not support; leaving it out",
                      extra={"plugin": name, "hooks": wrappers})
            self.failed[name] = f"hook wrappers are not supported: {', '.join(wrappers)}"
            return
        hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(plugin) or ()))
        module = getattr(plugin, "__name__", type(plugin).__module__)
        self.infos[name] = PluginInfo(name, module, dist, version, hooks)

    def _collect_registrations(self, only: str | None = None) -> None:
        for hook, registry in (
            ("gateway_register_services", self.services),
            ("gateway_register_storage_backends", self.storage_backends),
            ("gateway_register_print_drivers", self.print_drivers),
            ("gateway_register_media_drivers", self.media_drivers),
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

    def _impls_of(self, plugin: Any) -> list[Any]:
        return [i for caller in self.pm.get_hookcallers(plugin) or () for i in caller.get_hookimpls()
                if i.plugin is plugin]

    def list(self) -> list[PluginInfo]:
        return [self.infos[n] for n in sorted(self.infos)]

    # -- calling -----------------------------------------------------------
    def call(self, hook: str, *, on_timeout: str = "skip", **kwargs: Any) -> Any:
        """Call a hook as pluggy would (a list of the non-None answers, or the
        first one for a firstresult hook); a raising implementation becomes a
        :class:`HookError`. An implementation abandoned past the budget gives no
        answer (``on_timeout="skip"``: the operation goes on without it) or ends
        the call with its :class:`HookTimeout` (``"raise"``: a policy hook fails closed)."""
        caller = getattr(self.pm.hook, hook)
        first = bool(caller.spec and caller.spec.opts.get("firstresult"))
        answers = []
        for impl in reversed(caller.get_hookimpls()):  # pluggy's order: last registered first
            try:
                answer = self._invoke(hook, impl, kwargs)
            except HookTimeout:
                if on_timeout == "raise":
                    raise
                continue
            except Exception as exc:
                METRICS.inc("gateway_plugin_errors_total", hook=hook, plugin=impl.plugin_name)
                log.error("plugin hook failed", exc_info=exc, extra={"hook": hook, "plugin": impl.plugin_name})
                raise HookError(hook, impl.plugin_name, exc) from exc
            if answer is not None:
                if first:
                    return answer
                answers.append(answer)
        return None if first else answers

    def call_each(self, hook: str, **kwargs: Any) -> tuple[list[tuple[str, Any]], list[tuple[str, BaseException]]]:
        """Call every implementation on its own, so one that raises or overruns
        costs only its own answer: ([(plugin, result)], [(plugin, error)]);
        errors logged and counted."""
        results: list[tuple[str, Any]] = []
        failures: list[tuple[str, BaseException]] = []
        for impl in reversed(getattr(self.pm.hook, hook).get_hookimpls()):
            try:
                results.append((impl.plugin_name, self._invoke(hook, impl, kwargs)))
            except HookTimeout as exc:
                failures.append((impl.plugin_name, exc))
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

    def _invoke(self, hook: str, impl: Any, kwargs: dict[str, Any]) -> Any:
        args = {a: kwargs[a] for a in impl.argnames}
        budget = self.hook_budget
        name = impl.plugin_name
        if not budget or getattr(self.infos.get(name), "distribution", None) == BUILTIN_DIST:
            return impl.function(**args)
        with self._lock:
            stuck = self._stuck.get(name, 0)
        if stuck:
            raise self._abandoned(hook, name, budget, still_running=True)
        future = _HOOK_THREADS.submit(impl.function, **args)
        try:
            return future.result(timeout=budget)
        except FutureTimeout:
            with self._lock:
                self._stuck[name] = self._stuck.get(name, 0) + 1
            future.add_done_callback(lambda _f: self._unstick(name))
            raise self._abandoned(hook, name, budget) from None

    def _unstick(self, name: str) -> None:
        with self._lock:
            self._stuck[name] -= 1

    def _abandoned(self, hook: str, plugin: str, budget: float, still_running: bool = False) -> HookTimeout:
        METRICS.inc("gateway_hook_timeouts_total", hook=hook, plugin=plugin)
        log.error("plugin hook abandoned", extra={"hook": hook, "plugin": plugin, "budget_s": budget,
                                                  "still_running": still_running})
        return HookTimeout(hook, plugin, budget, still_running)


def _dist_name(ep: metadata.EntryPoint) -> str | None:
    return ep.dist.name if ep.dist else None


def load_host(disabled: Iterable[str] = (), extra_modules: Iterable[str] = ()) -> PluginHost:
    return PluginHost(frozenset(disabled), tuple(extra_modules)).load()
