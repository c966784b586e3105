"""The ``media`` routing rule action (issue 15 item 4): a study written to media once it is quiet.

A rule in ``routes/*.toml``::

    [[rule]]
    name = "nm-to-usb"
    match = { modality = "NM" }
    action = "media"
    [rule.media]
    target = "/mnt/usb/{patient_id}/{date}-{study_uid}"   # or a folder: one file-set per study below it
    driver = "folder"                                      # default; "iso" or a site's driver
    capacity = "cd700"                                     # default: no limit (one volume)
    quiet = 120                                            # default: [forwarding] series_quiet_time

Each stored instance the rule matches reschedules its study's export job with
one UPSERT inside the store's transaction (:func:`gateway_plugins.media_jobs.record_arrival`);
the job runs once no instance of the study arrived for ``quiet`` seconds.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["ACTION", "MediaAction", "record", "rule_problems", "resolve_target", "PLACEHOLDERS"]

ACTION = "media"

#: What a target pattern may name: the study's UID, Patient ID, Study Date
#: (YYYYMMDD, "undated" when it has none) and Accession Number.
PLACEHOLDERS = ("study_uid", "patient_id", "date", "accession")


def placeholders(pattern: str) -> list[str]:
    """The ``{names}`` a target pattern uses; ValueError for a malformed one or an unknown name."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(pattern) if name is not None]
    except ValueError as exc:  # a lone brace
        raise ValueError(f"malformed pattern {pattern!r}: {exc}") from None
    names = []
    for name, spec, conv in fields:
        if name not in PLACEHOLDERS or spec or conv:
            raise ValueError(f"unknown placeholder {{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}}"
                             f"; known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
        names.append(name)
    return names


class MediaAction(BaseModel):
    """``[rule.media]``: where the study goes, through which driver, on media of which size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = Field(min_length=1)
    driver: str = Field("folder", min_length=1)
    capacity: str | int | None = None
    quiet: float | None = Field(None, ge=0)

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        placeholders(value)
        if not Path(value).is_absolute():
            # The sender's working directory is nobody's business: say where.
            raise ValueError(f"must be an absolute path, got {value!r}")
        return value

    @field_validator("capacity")
    @classmethod
    def _capacity(cls, value: str | int | None) -> str | int | None:
        from gateway_plugins.media_volumes import parse_capacity

        if value is not None:
            parse_capacity(str(value))
        return value


def job_options(settings: dict[str, Any]) -> dict[str, Any]:
    """What a job keeps of a (validated) ``[rule.media]`` table: a rule's job writes every
    volume the study needs (``split``)."""
    capacity = settings.get("capacity")
    return {"driver": settings.get("driver", "folder"), "capacity": None if capacity is None else str(capacity),
            "split": True}


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _component(value: str | None, empty: str) -> str:
    """A value as one path component: no separators, no '..', nothing a shell or a disc dislikes."""
    text = _UNSAFE.sub("_", (value or "").strip())
    return empty if text in ("", ".", "..") else text


def resolve_target(pattern: str, *, study_uid: str, patient_id: str | None, study_date: str | None,
                   accession: str | None) -> Path:
    """The folder a study's file-set goes to. A pattern without placeholders is a folder
    holding one file-set per study, named by its Study Instance UID."""
    values = {"study_uid": _component(study_uid, "_"), "patient_id": _component(patient_id, "no-patient-id"),
              "date": _component((study_date or "")[:8], "undated"), "accession": _component(accession, "none")}
    if not placeholders(pattern):
        return Path(pattern) / values["study_uid"]
    return Path(pattern.format(**values))


def record(conn: Any, instance: Any, rule: Any, config: Any) -> None:
    """Inside the store's transaction (after the instance's row): reschedule the study's
    export. One UPSERT; the settings were validated when the config was taken up."""
    from gateway_plugins.media_jobs import ensure_table, record_arrival

    settings = rule.action_settings
    quiet = settings.get("quiet")
    ensure_table(conn)
    record_arrival(conn, rule=rule.name, study_uid=instance.study_instance_uid, target=settings["target"],
                   options=job_options(settings),
                   quiet=float(config.forwarding.series_quiet_time if quiet is None else quiet))


def _at(doc: Any, loc: tuple) -> str:
    """``file:line`` of the nearest key of ``loc`` that has a line (else the rule's)."""
    probe, found = loc, None
    while probe and found is None:
        found, probe = doc.key_lines.get(probe), probe[:-1]
    line = found or doc.line
    return f"{doc.file}:{line}" if line else doc.file


def rule_problems(config: Any) -> list[str]:
    """``file:line: key 'rule.media.x': …`` for every rule with ``action = "media"``:
    its ``[rule.media]`` table, and a driver no loaded plugin registered."""
    from gateway_plugins.media_drivers import driver_registry

    docs = [d for d in config.routes if d.body.get("action") == ACTION]
    problems: list[str] = []
    drivers = None
    for doc in docs:
        name = doc.body.get("name", "?")
        body = doc.body.get(ACTION, {})
        if not isinstance(body, dict):
            problems.append(f"{_at(doc, (ACTION,))}: key 'rule.{ACTION}': must be a table ([rule.{ACTION}]) "
                            f"(rule {name!r})")
            continue
        try:
            settings = MediaAction.model_validate(body)
        except ValidationError as exc:
            for e in exc.errors():
                loc = (ACTION, *e["loc"][:1])
                msg = e["msg"].removeprefix("Value error, ")
                if e["type"] == "extra_forbidden":
                    msg = f"unknown key; expected one of: {', '.join(MediaAction.model_fields)}"
                elif e["type"] == "missing":
                    msg = "required key is missing (the folder or path pattern the study is written to)" \
                        if loc[-1] == "target" else "required key is missing"
                problems.append(f"{_at(doc, loc)}: key 'rule.{'.'.join(map(str, loc))}': {msg} (rule {name!r})")
            continue
        drivers = drivers if drivers is not None else driver_registry(config)
        if settings.driver not in drivers.factories:
            known = ", ".join(sorted(drivers.factories)) or "none"
            problems.append(f"{_at(doc, (ACTION, 'driver'))}: key 'rule.{ACTION}.driver': unknown media driver "
                            f"{settings.driver!r}; registered: {known} (rule {name!r})")
    return problems
