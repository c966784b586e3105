"""The ``print`` routing rule action (issue 14 item 5): matching instances are printed,
one job per series.

A rule in ``routes/*.toml``::

    [[rule]]
    name = "nm-sc-film"
    match = { calling_ae = "GENIE_WS", sop_class = "1.2.840.10008.5.1.4.1.1.7", modality = "NM" }
    action = "print"
    [rule.print]
    printer = "drystar"          # a printers/<name>.toml
    priority = "HIGH"            # default: the printer's
    copies = 2                   # default: the printer's
    format = 'STANDARD\\2,2'     # default: the printer's display_format
    film = "14INX17IN"           # default: the printer's film_size
    orientation = "PORTRAIT"     # default: the printer's

The unit is the series: each matching instance is added — inside the storage
transaction, so an acknowledged object is never left out — to its series'
``collecting`` job for (rule, printer); when the series is complete
(``gateway_series_complete``: quiet for ``[forwarding] series_quiet_time`` or its
association ended) the job joins the print queue with every instance it collected,
ordered by Instance Number. An instance arriving after that starts a new job.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ACTION = "print"


class PrintAction(BaseModel):
    """``[rule.print]``: which printer, and what to override of its defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    printer: str = Field(min_length=1)
    priority: Literal["HIGH", "MED", "LOW"] | None = None
    copies: int | None = Field(None, ge=1, le=99)
    format: str | None = None
    film: str | None = None
    orientation: Literal["PORTRAIT", "LANDSCAPE"] | None = None

    @field_validator("format")
    @classmethod
    def _format(cls, v: str | None) -> str | None:
        from gateway_plugins.print_config import PrinterSettings

        return v if v is None else PrinterSettings._format(v)

    @field_validator("film")
    @classmethod
    def _film(cls, v: str | None) -> str | None:
        from gateway_plugins.print_config import PrinterSettings

        return v if v is None else PrinterSettings._film(v)

    def job_options(self) -> dict[str, Any]:
        return {k: v for k, v in (("format", self.format), ("film", self.film), ("orientation", self.orientation),
                                  ("copies", self.copies)) if v is not None}


def validate_rule(rule: Any, file: str, line: int | None, key_lines: dict, config: Any) -> list[str]:
    """``file:line: key 'rule.print.x': …`` problems of one rule's ``[rule.print]``."""
    from gateway_plugins.print_config import PrinterConfigError, printer_settings

    def at(loc: tuple) -> str:
        for n in range(len(loc), 0, -1):  # the nearest enclosing key that has a line
            if loc[:n] in key_lines:
                return f"{file}:{key_lines[loc[:n]]}"
        return f"{file}:{line}" if line else file

    try:
        action = PrintAction.model_validate(rule.action_settings)
    except ValidationError as exc:
        out = []
        for e in exc.errors():
            loc = (ACTION, *e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = f"unknown key; expected one of: {', '.join(PrintAction.model_fields)}"
            elif e["type"] == "missing":
                msg = "required key is missing"
            out.append(f"{at(loc)}: key 'rule.{'.'.join(map(str, loc))}': {msg} (rule {rule.name!r})")
        return out
    try:
        printer_settings(config, action.printer)
    except PrinterConfigError as exc:
        return [f"{at((ACTION, 'printer'))}: key 'rule.{ACTION}.printer': {exc.problems[0]} (rule {rule.name!r})"]
    return []


def record(conn: Any, instance: Any, rule: Any, config: Any) -> int:
    """Inside the store's transaction: the instance joins its series' print job (made by the first)."""
    from gateway_plugins.print_config import printer_settings
    from gateway_plugins.print_queue import collect_instance

    action = PrintAction.model_validate(rule.action_settings)
    name, settings = printer_settings(config, action.printer)
    collect_instance(conn, rule=rule.name, printer=name, priority=action.priority or settings.priority,
                     options=action.job_options(), series=instance.series_instance_uid,
                     sop_instance_uid=instance.sop_instance_uid)
    return 1
