"""Prefetch of prior studies (issue 13 item 3): a routing rule action and its durable queue.

A rule in ``routes/*.toml``::

    [[rule]]
    name = "pet-priors"
    match = { modality = ["PT", "CT"] }
    action = "prefetch"
    [rule.prefetch]
    archives = ["pacs"]              # remotes to ask (names or AET@host:port)
    modalities = ["CT", "PT"]        # a prior has a series of one of these (Modalities in Study)
    body_parts = ["CHEST"]           # … and one with Body Part Examined among these
    max_age_years = 5                # or max_age_days; by Study Date, from today
    max_studies = 3                  # the most recent ones that pass the filters
    forward_to = ["workstation"]     # send the priors on once they are here
    # retrieve = "move" | "get"      # default: the remote's `retrieve` (C-MOVE to our AE)
    # destination = "OTHER_AE"       # C-MOVE destination, default our own storage AE

When the first instance of a study the index did not have is stored and matches
the rule, one ``query`` job per archive is written **in the same index
transaction** (the core calls the action's ``record`` inside the storage
service's transaction, on a savepoint). The worker — a thread of this plugin in
the sender process, started and fed by ``gateway_sender_poll`` — asks each
archive for the patient's studies, filters them, and queues one ``pull`` job per
prior to fetch (:mod:`gateway_plugins.prefetch_worker`). Jobs are leased,
retried with exponential backoff and jitter, dead-lettered after
``max_attempts``, and a (remote, study) is never queried or pulled twice at
once (:mod:`gateway_plugins.prefetch_queue`). ``dicom-gateway prefetch ls``
shows them (:mod:`gateway_plugins.prefetch_command`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.hookspecs import hookimpl
from gateway.services import RuleAction

log = logging.getLogger("gateway.prefetch")

GATEWAY_PLUGIN_API = 1
ACTION = "prefetch"


class PrefetchAction(BaseModel):
    """``[rule.prefetch]``: where to look for priors, which to pull, where to send them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    archives: list[str] = Field(min_length=1)
    modalities: list[str] = Field(default_factory=list)
    body_parts: list[str] = Field(default_factory=list)
    max_age_days: int | None = Field(None, ge=1)
    max_age_years: int | None = Field(None, ge=1)
    max_studies: int | None = Field(None, ge=1)
    forward_to: list[str] = Field(default_factory=list)
    retrieve: Literal["move", "get"] | None = None
    destination: str | None = Field(None, min_length=1, max_length=16)

    @model_validator(mode="after")
    def _one_age(self) -> "PrefetchAction":
        if self.max_age_days is not None and self.max_age_years is not None:
            raise ValueError("give max_age_days or max_age_years, not both")
        return self

    @property
    def max_age(self) -> int | None:
        """The age limit in days."""
        if self.max_age_years is not None:
            return int(self.max_age_years * 365.25)
        return self.max_age_days


class PrefetchSettings(BaseModel):
    """``plugins/prefetch.toml``: the worker in the sender process."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(10, ge=1)
    backoff_initial: float = Field(5.0, gt=0)
    backoff_max: float = Field(600.0, gt=0)
    lease: float = Field(900.0, ge=10)
    poll_interval: float = Field(1.0, gt=0)


def settings_of(config: Any) -> PrefetchSettings:
    try:
        return config.plugin_settings_as(ACTION, PrefetchSettings)
    except Exception:
        return PrefetchSettings()


# ---- the rule action: validation at load, record inside the store's transaction ------------------


def validate_rule(rule: Any, file: str, line: int | None, key_lines: dict, config: Any) -> list[str]:
    """``file:line: key 'rule.prefetch.x': …`` problems of one rule's ``[rule.prefetch]``."""
    from gateway.config.models import DESTINATION_SPEC

    def at(loc: tuple) -> str:
        probe, found = loc, None
        while probe and found is None:
            found, probe = key_lines.get(probe), probe[:-1]
        return f"{file}:{found or line}" if (found or line) else file

    try:
        settings = PrefetchAction.model_validate(rule.action_settings)
    except ValidationError as exc:
        out = []
        for e in exc.errors():
            loc = (ACTION, *e["loc"])
            key = ".".join(str(p) for p in ("rule", *loc))
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = f"unknown key; expected one of: {', '.join(PrefetchAction.model_fields)}"
            elif e["type"] == "missing":
                msg = "required key is missing"
            out.append(f"{at(loc)}: key '{key}': {msg} (rule {rule.name!r})")
        return out
    out = []
    for field in ("archives", "forward_to"):
        for j, name in enumerate(getattr(settings, field)):
            if config.remote(name) is None and not DESTINATION_SPEC.match(name):
                known = ", ".join(sorted(config.remotes)) or "none configured"
                out.append(f"{at((ACTION, field, j))}: key 'rule.{ACTION}.{field}[{j}]': unknown remote {name!r}: "
                           f"name a remote (remotes/<name>.toml; known: {known}) or write AET@host:port "
                           f"(rule {rule.name!r})")
    return out


def record(conn: Any, instance: Any, rule: Any, config: Any) -> int:
    """Inside the store's transaction, after the instance's row: the first instance of a
    study the index did not have queues one query job per archive (none for a study we
    pulled ourselves, or one already asked about). Returns the jobs queued."""
    import sqlalchemy as sa

    from gateway.index import schema as S
    from gateway_plugins.prefetch_queue import J, ensure_table, insert_job

    study = instance.study_instance_uid
    ensure_table(conn)
    seen = conn.execute(sa.select(J.c.id).where(
        sa.or_(J.c.trigger_study_uid == study, J.c.study_instance_uid == study)).limit(1)).first()
    if seen is not None:
        return 0  # asked about already (a later instance, a resend), or a prior we pulled
    st, se, i, p = S.studies, S.series, S.instances, S.patients
    other = conn.execute(sa.select(i.c.id).join(se, se.c.id == i.c.series_fk).join(st, st.c.id == se.c.study_fk)
                         .where(st.c.study_instance_uid == study, i.c.sop_instance_uid != instance.sop_instance_uid)
                         .limit(1)).first()
    if other is not None:
        return 0  # the index had this study before: not a new study
    patient_id = conn.execute(sa.select(p.c.patient_id).join(st, st.c.patient_fk == p.c.id)
                              .where(st.c.study_instance_uid == study)).scalar()
    if not patient_id:
        return 0
    settings = PrefetchAction.model_validate(rule.action_settings)
    options = {"settings": settings.model_dump(mode="json")}
    queued = 0
    for archive in settings.archives:
        queued += insert_job(conn, kind="query", rule=rule.name, remote=archive, patient_id=patient_id,
                             study_uid=study, trigger_study_uid=study, options=options)
    if queued:
        log.info("prefetch queued", extra={"rule": rule.name, "study_instance_uid": study, "patient_id": patient_id,
                                            "archives": settings.archives})
    return queued


# ---- hooks ----------------------------------------------------------------------------------------

_worker_lock = threading.Lock()
_worker: Any = None
_checked_table: set[str] = set()


def _wanted(config: Any, index: Any) -> bool:
    """Run the worker when a rule prefetches, or jobs may be left from an earlier config."""
    if any(doc.body.get("action") == ACTION and doc.body.get("enabled", True) for doc in config.routes):
        return True
    key = str(index.engine.url)
    if key not in _checked_table:
        _checked_table.add(key)
        from gateway_plugins.prefetch_queue import table_exists

        try:
            return table_exists(index.engine)
        except Exception:
            return False
    return False


@hookimpl
def gateway_register_services(registry: Any) -> None:
    registry.add_rule_action(RuleAction(
        name=ACTION, record=record, validate=validate_rule,
        description="query archives for a new study's priors and pull them (durable jobs)"))


@hookimpl
def gateway_config_loaded(config: Any) -> list[str]:
    from gateway.config import PluginSettingsError

    try:
        config.plugin_settings_as(ACTION, PrefetchSettings)
    except PluginSettingsError as exc:
        return exc.problems
    return []


@hookimpl
def gateway_sender_poll(config: Any, index: Any, stopping: Any) -> None:
    """The worker is a daemon thread of the sender process (one per node): started on the
    first round that has prefetch rules (or jobs), then handed each new config."""
    global _worker
    with _worker_lock:
        if _worker is not None and _worker.is_alive():
            _worker.update(config)
            return
        if stopping.is_set() or not _wanted(config, index):
            return
        from gateway_plugins.prefetch_worker import PrefetchWorker

        _worker = PrefetchWorker(config, index, stopping)
        _worker.start()


@hookimpl
def gateway_register_commands(commands: Any) -> None:
    """``prefetch ls|retry|drop``."""
    from gateway_plugins.prefetch_command import add_prefetch_parser

    add_prefetch_parser(commands)
