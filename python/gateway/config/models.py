"""The configuration schema: every operator-facing key, its default and its check.

Keys are a user interface (DESIGN §4): extend, don't rename. Every model
forbids unknown keys so a typo is an error, not a silently ignored setting.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def _ae_title(value: str) -> str:
    # PS3.5 6.2 AE: 1-16 characters of the default repertoire, no backslash or
    # control characters, not all spaces.
    if not 1 <= len(value) <= 16:
        raise ValueError(f"an AE title has 1 to 16 characters, got {len(value)}")
    if value.strip() == "":
        raise ValueError("an AE title cannot be all spaces")
    if "\\" in value or any(ord(c) < 0x20 or ord(c) > 0x7E for c in value):
        raise ValueError("an AE title has printable ASCII characters only, no backslash")
    return value.strip()


def _uid(value: str) -> str:
    if len(value) > 64 or not _UID.match(value):
        raise ValueError("a UID is up to 64 digits and dots, like 1.2.826.0.1.3680043.10.1472.1")
    return value


AETitle = Annotated[str, AfterValidator(_ae_title)]
UID = Annotated[str, AfterValidator(_uid)]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(ge=0)]


#: A destination written inline instead of a remote's name: ``AET@host:port``.
DESTINATION_SPEC = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>\d{1,5})$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Node(_Model):
    ae_title: AETitle = "DICOM_GATEWAY"
    data_dir: str = "./gateway-data"
    database_url: str = ""
    workers: int = Field(0, ge=0, le=256, description="0 = one per CPU")
    implementation_class_uid: UID = IMPLEMENTATION_CLASS_UID  # STO-11
    implementation_version_name: str = Field(IMPLEMENTATION_VERSION_NAME, min_length=1, max_length=16)
    max_associations: int = Field(0, ge=0, description="STO-9: 0 = unlimited")
    max_pdu: int = Field(65536, ge=0, description="STO-10: largest PDU we receive, 0 = unlimited")
    max_message: int = Field(0, ge=0, description="largest dataset accepted, 0 = unlimited")
    spool_threshold: int = Field(1 << 20, ge=0)
    acse_timeout: Seconds = 30.0
    dimse_timeout: Seconds = 60.0
    network_timeout: Seconds = 600.0
    plugin_timeout: Seconds = Field(60.0, description="a service call longer than this is answered with a failure; 0 = no bound")
    hook_timeout: Seconds = Field(5.0, description="a third-party plugin's hook call longer than this is abandoned for that operation and counted; 0 = no bound")
    shutdown_grace: Seconds = 30.0
    receive_path: Literal["rust", "pynetdicom"] = "rust"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("max_pdu")
    @classmethod
    def _pdu(cls, value: int) -> int:
        if value and value < 1024:
            raise ValueError("max_pdu is 0 (unlimited) or at least 1024 bytes")
        return value


class Listener(_Model):
    port: Port = 11112
    bind: str = "0.0.0.0"
    ae_titles: list[AETitle] = Field(default_factory=list, description="called AE titles accepted (STO-4); default [node.ae_title]")
    max_associations: int = Field(0, ge=0)


class Http(_Model):
    enabled: bool = True
    bind: str = "127.0.0.1"
    port: Port = 8104


class PluginsSection(_Model):
    disable: list[str] = Field(default_factory=list)
    modules: list[str] = Field(default_factory=list, description="extra importable modules loaded as plugins")


class Forwarding(_Model):
    """[forwarding]: the durable forward queue and its sender workers (DESIGN §2)."""

    enabled: bool = Field(True, description="run sender workers (jobs are queued either way)")
    series_quiet_time: Seconds = Field(60.0, description="a series with no arrival for this long is complete")
    max_attempts: int = Field(10, ge=1, description="tries before a job is dead-lettered")
    backoff_initial: Seconds = Field(2.0, description="first retry delay; doubles per try, with jitter")
    backoff_max: Seconds = 600.0
    lease: Seconds = Field(300.0, gt=0, description="a claimed job returns to the queue after this long")
    breaker_threshold: int = Field(5, ge=1, description="consecutive association failures that open the circuit")
    breaker_cooldown: Seconds = Field(30.0, description="how long an open circuit waits before one probe")
    idle_close: Seconds = Field(5.0, description="an idle association to a destination is released after this long")
    batch: int = Field(64, ge=1, description="jobs claimed at once per association")
    poll_interval: Seconds = Field(0.5, gt=0)


class Remote(_Model):
    """remotes/<name>.toml (CFG-2, SND-6, SND-7, SND-8)."""

    ae_title: AETitle
    host: str
    port: Port
    calling_ae_title: AETitle | None = None
    max_pdu: int = Field(16384, ge=0)
    association_timeout: Seconds = 30.0
    dimse_timeout: Seconds = 60.0
    session_timeout: Seconds = 0.0
    request_storage_commitment: bool = False
    commitment_ae_title: AETitle | None = None
    commitment_host: str | None = None
    commitment_port: Port | None = None
    treat_as_archive: bool = False
    multiframe_sc_to_single: bool = False
    color_sc: Literal["color", "grayscale", "both"] = "color"
    transfer_syntaxes: list[UID] | None = None
    allow_query: bool = True
    allow_move: bool = True
    allow_store: bool = True
    move_destination: bool = Field(True, description="a C-MOVE may name its AE title as the Move Destination (QRS-5)")
    associations: int = Field(1, ge=1, le=64, description="parallel associations the sender opens while work is queued")
    max_attempts: int | None = Field(None, ge=1, description="overrides [forwarding] max_attempts")
    retrieve: Literal["move", "get"] = Field(
        "move", description="how prefetch rules pull from it: C-MOVE to our AE, or C-GET on our association")


class Document(_Model):
    """A free-form table (a route rule, a printer, a plugin's settings) and where it came from."""

    file: str
    line: int | None
    name: str
    body: dict[str, Any]
    #: key path (as in ``body``) -> 1-based line in ``file``, for messages
    key_lines: dict[tuple, int] = Field(default_factory=dict, repr=False)


RouteRuleDoc = Document  # a [[rule]] table from routes/*.toml; its body is validated by the routing issue
PrinterDoc = Document     # printers/<name>.toml
PluginDoc = Document      # plugins/<name>.toml


class GatewayConfig(_Model):
    """The whole validated, immutable config directory. Built by
    :func:`gateway.config.load_config`; an association holds the instance it
    started with, a reload swaps in a new one."""

    node: Node = Field(default_factory=Node)
    listeners: list[Listener] = Field(default_factory=list)
    http: Http = Field(default_factory=Http)
    plugins: PluginsSection = Field(default_factory=PluginsSection)
    forwarding: Forwarding = Field(default_factory=Forwarding)
    remotes: dict[str, Remote] = Field(default_factory=dict)
    routes: list[Document] = Field(default_factory=list)
    printers: dict[str, Document] = Field(default_factory=dict)
    plugin_files: dict[str, Document] = Field(default_factory=dict)
    source_dir: Path | None = None
    digest: str = ""

    @model_validator(mode="after")
    def _default_listener_ae_titles(self) -> "GatewayConfig":
        if not self.listeners:
            object.__setattr__(self, "listeners", [Listener(ae_titles=[self.node.ae_title])])
        else:
            filled = [l if l.ae_titles else l.model_copy(update={"ae_titles": [self.node.ae_title]})
                      for l in self.listeners]
            object.__setattr__(self, "listeners", filled)
        return self

    def all_ae_titles(self) -> set[str]:
        return {self.node.ae_title} | {ae for l in self.listeners for ae in l.ae_titles}

    def listener_for_port(self, port: int) -> Listener | None:
        return next((l for l in self.listeners if l.port == port), None)

    def effective_database_url(self) -> str:
        if self.node.database_url:
            return self.node.database_url
        return "sqlite:///" + str((Path(self.node.data_dir) / "index.db").resolve())

    def remote(self, name: str) -> tuple[str, Remote] | None:
        """The remote ``name`` refers to, and its configured name; names ignore case
        (the loader refuses two remotes that differ only in case)."""
        wanted = name.strip().lower()
        return next(((n, r) for n, r in self.remotes.items() if n.lower() == wanted), None)

    def calling_ae_title_for(self, remote: str) -> str:
        """The calling AE title we use towards ``remote`` (its own setting, else the node's)."""
        return self.remotes[remote].calling_ae_title or self.node.ae_title

    def effective_workers(self) -> int:
        return self.node.workers or os.cpu_count() or 1

    @property
    def disabled_plugins(self) -> frozenset[str]:
        off = {name for name, doc in self.plugin_files.items() if doc.body.get("enabled") is False}
        return frozenset(self.plugins.disable) | off

    def plugin_settings(self, name: str) -> dict[str, Any]:
        """The plugin's own settings from plugins/<name>.toml (without `enabled`)."""
        doc = self.plugin_files.get(name)
        if doc is None:
            return {}
        return {k: v for k, v in doc.body.items() if k != "enabled"}

    def plugin_settings_as(self, name: str, model: type[BaseModel]) -> Any:
        """plugins/<name>.toml validated by the plugin's own pydantic ``model``.
        :class:`PluginSettingsError` carries one ``file:line: key 'k': message``
        per problem, what ``gateway_config_loaded`` returns to refuse the config."""
        doc = self.plugin_files.get(name)
        return validate_document(self.plugin_settings(name), model, doc, f"plugins/{name}.toml")


class PluginSettingsError(ValueError):
    """A plugin's settings file does not validate; ``problems`` are file:line: key lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def validate_document(body: dict[str, Any], model: type[BaseModel], doc: Any = None, where: str = "") -> Any:
    """``body`` (a loaded TOML file's table, e.g. ``doc.body`` of a ``plugins/`` or
    ``printers/`` file) validated by ``model``; :class:`PluginSettingsError` with one
    ``file:line: key 'k': message`` per problem, the line found through the
    document's ``key_lines`` (the nearest enclosing key that has one), an unknown
    key with the closest known one suggested."""
    import difflib

    from pydantic import ValidationError

    try:
        return model.model_validate(body)
    except ValidationError as exc:
        where = doc.file if doc is not None else where
        problems = []
        for e in exc.errors():
            loc = tuple(e["loc"])
            line, probe = None, loc
            while doc is not None and probe and line is None:
                line, probe = doc.key_lines.get(probe), probe[:-1]
            at = f"{where}:{line}" if line else where
            key = ".".join(str(p) for p in loc)
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden" and len(loc) == 1:
                known = list(model.model_fields)
                close = difflib.get_close_matches(str(loc[-1]), known, n=1)
                msg = f"unknown key; did you mean '{close[0]}'?" if close else f"unknown key; known: {', '.join(known)}"
            problems.append(f"{at}: key '{key}': {msg}" if key else f"{at}: {msg}")
        raise PluginSettingsError(problems) from None
