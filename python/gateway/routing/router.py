"""The router: rules from routes/*.toml plus `gateway_route` hooks -> forward plans.

Built once per config generation (a hot reload builds a new one). The
storage service asks it for a plan *before* its index transaction (hooks
and header parsing stay outside the database lock) and records the plan
*inside* it with :meth:`Router.record`, so the jobs commit with the
instance row (DESIGN §2 transactional outbox).

Rules are evaluated in order (files by name, rules in file order); every
matching rule contributes. A matching ``drop`` rule vetoes all forwarding of
the instance, hook destinations included. A destination chosen twice is
queued once, with the highest priority and the first rule's options.

A rule whose action a plugin provides (``ServiceRegistry.rule_actions``, e.g.
``prefetch``) is carried out by that plugin's ``record`` inside the same
transaction, on a savepoint of its own (a failing action is rolled back alone;
the instance is stored). A ``drop`` rule vetoes forwarding only, not those.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from gateway.index.queue import ON_ASSOCIATION_END, ForwardPlan, enqueue, touch_series
from gateway.messages import RoutedInstance
from gateway.routing.rules import CompiledRule, RouteRule, compile_rule

log = logging.getLogger("gateway.routing")


@dataclass(frozen=True)
class RuleVerdict:
    """How one rule judged an instance (``dicom-gateway route test``)."""

    rule: str
    file: str
    line: int | None
    matched: bool
    reasons: tuple[str, ...]  # why not, one per failed condition; empty when matched
    action: str
    destinations: tuple[str, ...]


@dataclass
class RoutingDecision:
    plans: list[ForwardPlan] = field(default_factory=list)
    verdicts: list[RuleVerdict] = field(default_factory=list)
    dropped_by: str | None = None
    hook_destinations: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: matched rules whose action a plugin carries out (recorded with the instance)
    actions: list[CompiledRule] = field(default_factory=list)


def load_rules(config: Any) -> list[CompiledRule]:
    """The config's rules, compiled (the loader already validated them)."""
    out = []
    for doc in config.routes:
        rule = RouteRule.model_validate(doc.body)
        if rule.enabled:
            out.append(compile_rule(rule, doc.file, doc.line))
    return out


class Router:
    """Route instances for one config generation."""

    def __init__(self, config: Any, hooks: Any = None) -> None:
        self.config = config
        self.hooks = hooks  # a PluginHost (gateway_route), or None
        self.rules = load_rules(config)
        self.needs_dataset = any(r.needs_dataset for r in self.rules)
        services = getattr(hooks, "services", None)
        self.rule_actions: dict[str, Any] = dict(getattr(services, "rule_actions", None) or {})

    @property
    def active(self) -> bool:
        """Whether routing can produce anything (rules, or a plugin implementing gateway_route)."""
        return bool(self.rules) or self._hook_implemented()

    def _hook_implemented(self) -> bool:
        if self.hooks is None:
            return False
        try:
            return bool(self.hooks.pm.hook.gateway_route.get_hookimpls())
        except AttributeError:
            return False

    def decide(self, instance: RoutedInstance) -> RoutingDecision:
        decision = RoutingDecision()
        chosen: dict[str, ForwardPlan] = {}
        values_cache: dict[str, list[str]] = {}
        for compiled in self.rules:
            rule = compiled.rule
            reasons = []
            for key, tag, cond in compiled.conditions:
                if key not in values_cache:
                    try:
                        values_cache[key] = _values(instance, key, tag)
                    except Exception as exc:  # an unreadable header matches nothing
                        values_cache[key] = []
                        decision.errors.append(f"{key}: cannot read the header: {exc}")
                why = cond(values_cache[key])
                if why is not None:
                    reasons.append(f"{key}: {why}")
            matched = not reasons
            decision.verdicts.append(RuleVerdict(rule.name, compiled.file, compiled.line, matched,
                                                 tuple(reasons), rule.action, tuple(rule.forward)))
            if not matched:
                continue
            if rule.action == "drop":
                decision.dropped_by = decision.dropped_by or rule.name
                continue
            if rule.plugin_action:
                if rule.action in self.rule_actions:
                    decision.actions.append(compiled)
                else:  # refused at load when the config came through build_runtime
                    decision.errors.append(f"rule {rule.name!r}: no plugin provides action {rule.action!r}")
                continue
            for dest in rule.forward:
                plan = _plan(rule, dest, self.config)
                prior = chosen.get(dest)
                if prior is None:
                    chosen[dest] = plan
                elif plan.priority > prior.priority:
                    chosen[dest] = dataclasses.replace(prior, priority=plan.priority)
        instance.destinations = tuple(chosen)
        if self.hooks is not None and self._hook_implemented():
            for dest in self._hook_destinations(instance, decision):
                decision.hook_destinations.append(dest)
                chosen.setdefault(dest, ForwardPlan(destination=dest, rule="plugin"))
        if decision.dropped_by is None:
            decision.plans = list(chosen.values())
        return decision

    def _hook_destinations(self, instance: RoutedInstance, decision: RoutingDecision) -> list[str]:
        from gateway.plugins import HookError

        try:
            answers = self.hooks.call("gateway_route", instance=instance, config=self.config)
        except HookError as exc:
            # A broken plugin must not stop storing; its destinations are lost for
            # this instance, which is logged and counted by the host.
            decision.errors.append(f"gateway_route: {exc}")
            log.error("gateway_route failed; rule destinations only",
                      extra={"sop_instance_uid": instance.sop_instance_uid, "error": str(exc)})
            return []
        out: list[str] = []
        for answer in answers or ():
            for dest in answer or ():
                if isinstance(dest, str) and dest and dest not in out:
                    out.append(dest)
        return out

    def record(self, tx: Any, decision: RoutingDecision | None, instance: RoutedInstance) -> int:
        """Inside the store's transaction: the jobs, and the series' arrival (completeness)."""
        touch_series(tx.conn, series_instance_uid=instance.series_instance_uid,
                     study_instance_uid=instance.study_instance_uid, association=association_key(instance.association),
                     cursor=getattr(tx, "cursor", None))
        if decision is None:
            return 0
        for compiled in decision.actions:
            self._record_action(tx, compiled, instance)
        if not decision.plans:
            return 0
        return enqueue(tx.conn, decision.plans, sop_instance_uid=instance.sop_instance_uid,
                       sop_class_uid=instance.sop_class_uid,
                       series_instance_uid=instance.series_instance_uid,
                       study_instance_uid=instance.study_instance_uid)


    def _record_action(self, tx: Any, compiled: CompiledRule, instance: RoutedInstance) -> None:
        """A plugin's rule action, on a savepoint: its rows commit with the instance,
        or (it raised) are rolled back alone and the instance is stored anyway."""
        action = self.rule_actions[compiled.rule.action]
        try:
            with tx.conn.begin_nested():
                action.record(tx.conn, instance, compiled.rule, self.config)
        except Exception as exc:
            from gateway.metrics import METRICS

            if type(exc).__name__ == "IndexUnavailable" or _db_unavailable(exc):
                raise  # the whole store fails (STO-8), as the instance's own row would
            METRICS.inc("gateway_plugin_errors_total", plugin=action.plugin or "?", hook=f"rule_action:{action.name}")
            log.error("rule action failed; the instance is stored without it", exc_info=exc,
                      extra={"rule": compiled.rule.name, "action": action.name,
                             "sop_instance_uid": instance.sop_instance_uid})


def _db_unavailable(exc: BaseException) -> bool:
    from sqlalchemy import exc as sa_exc

    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError))


def check_rule_actions(config: Any, services: Any) -> list[str]:
    """``file:line: key`` problems of rules whose action no loaded plugin provides,
    and what each providing plugin says about its rules' settings."""
    actions = getattr(services, "rule_actions", None) or {}
    problems: list[str] = []
    for doc in config.routes:
        rule = RouteRule.model_validate(doc.body)
        if not rule.plugin_action:
            continue
        where = f"{doc.file}:{doc.key_lines.get(('action',), doc.line)}" if doc.line else doc.file
        action = actions.get(rule.action)
        if action is None:
            known = ", ".join(["forward", "hold", "drop", *sorted(actions)])
            problems.append(f"{where}: key 'rule.action': unknown action {rule.action!r} (rule {rule.name!r}): "
                            f"one of {known} (a plugin action needs its plugin loaded)")
            continue
        if action.validate is not None:
            problems += action.validate(rule, doc.file, doc.line, doc.key_lines, config) or []
    return problems


def association_key(info: Any) -> str:
    """Identifies an association across the worker processes of this host."""
    import os

    return f"{os.getpid()}:{info.id}"


def _plan(rule: RouteRule, dest: str, config: Any) -> ForwardPlan:
    options: dict[str, Any] = {}
    if rule.syntax:
        options["syntax"] = rule.syntax
    if rule.action == "hold":
        return ForwardPlan(dest, rule.name, rule.priority, "held", None, options)
    if rule.after_series_complete == "association":
        return ForwardPlan(dest, rule.name, rule.priority, "waiting", ON_ASSOCIATION_END, options)
    if rule.after_series_complete == "quiet":
        quiet = rule.quiet_time if rule.quiet_time is not None else config.forwarding.series_quiet_time
        return ForwardPlan(dest, rule.name, rule.priority, "waiting", quiet, options)
    return ForwardPlan(dest, rule.name, rule.priority, "pending", None, options)


def _values(instance: RoutedInstance, key: str, tag: int | None) -> list[str]:
    a = instance.association
    if tag is None:
        fixed = {"calling_ae": a.calling_ae, "called_ae": a.called_ae, "source": a.peer_host,
                 "sop_class": instance.sop_class_uid, "modality": instance.modality}[key]
        return [fixed] if fixed else []
    ds = instance.dataset()
    if ds is None or tag not in ds:
        return []
    value = ds[tag].value
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    if isinstance(value, bytes):
        return [value.decode("latin-1").rstrip("\x00 ")]
    return [str(value)]


def header_loader(source: Any, transfer_syntax: str) -> Callable[[], Any]:
    """A loader of the header (everything before Pixel Data) of raw dataset bytes or a file."""

    def load() -> Any:
        import io

        from pydicom.filereader import read_dataset

        implicit = transfer_syntax == "1.2.840.10008.1.2"
        little = transfer_syntax != "1.2.840.10008.1.2.2"
        fh = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else open(source, "rb")
        with fh:
            ds = read_dataset(fh, implicit, little, stop_when=lambda tag, vr, length: tag == 0x7FE00010,
                              defer_size=1024)
        return ds
    return load
