"""``printers/<name>.toml`` (CFG-4): the printer's address and its film defaults,
validated with :class:`PrinterSettings`; problems as ``printers/x.toml:LINE: key 'k': message``."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["PrinterSettings", "PrinterConfigError", "printer_problems", "printer_settings",
           "OPTIONAL_ATTRIBUTES", "FILM_SIZES", "PRIORITIES", "RESERVED_NAMES"]

#: Print Priority (2000,0020) values, most urgent first: the queue's order (PRN-7).
PRIORITIES = ("HIGH", "MED", "LOW")

#: ``dicom-gateway print ls|cancel`` take the place of a printer's name, so no printer may be called so.
RESERVED_NAMES = ("ls", "cancel")

#: Film Size ID (2010,0050) → (width, height) in inches, portrait.
FILM_SIZES: dict[str, tuple[float, float]] = {
    "8INX10IN": (8, 10), "8_5INX11IN": (8.5, 11), "10INX12IN": (10, 12), "10INX14IN": (10, 14),
    "11INX14IN": (11, 14), "11INX17IN": (11, 17), "14INX14IN": (14, 14), "14INX17IN": (14, 17),
    "24CMX24CM": (24 / 2.54, 24 / 2.54), "24CMX30CM": (24 / 2.54, 30 / 2.54),
    "A4": (210 / 25.4, 297 / 25.4), "A3": (297 / 25.4, 420 / 25.4),
}

#: The optional Film Session / Film Box / Image Box attributes we may send, by
#: their config key; ``send_attributes`` restricts them to what a printer accepts.
OPTIONAL_ATTRIBUTES: dict[str, str] = {
    "copies": "NumberOfCopies (2000,0010)",
    "priority": "PrintPriority (2000,0020)",
    "medium_type": "MediumType (2000,0030)",
    "film_destination": "FilmDestination (2000,0040)",
    "label": "FilmSessionLabel (2000,0050)",
    "memory_allocation": "MemoryAllocation (2000,0060)",
    "orientation": "FilmOrientation (2010,0040)",
    "film_size": "FilmSizeID (2010,0050)",
    "magnification": "MagnificationType (2010,0060)",
    "smoothing": "SmoothingType (2010,0080)",
    "border_density": "BorderDensity (2010,0100)",
    "empty_image_density": "EmptyImageDensity (2010,0110)",
    "min_density": "MinDensity (2010,0120)",
    "max_density": "MaxDensity (2010,0130)",
    "trim": "Trim (2010,0140)",
    "configuration_information": "ConfigurationInformation (2010,0150)",
    "polarity": "Polarity (2020,0020)",
}

_DENSITY = re.compile(r"^(BLACK|WHITE|\d{1,4})$")


class PrinterSettings(BaseModel):
    """One printer: its driver (a DICOM Basic Grayscale / Color Print Management SCP by default),
    its queue behaviour and its film defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: str = Field("dicom", min_length=1, description="a registered print driver: dicom, png, or a plugin's")
    options: dict[str, Any] = Field(default_factory=dict, description="settings of a plugin's driver, its own")
    output: str | None = Field(None, min_length=1,
                               description="png driver: the folder for the films (default: DATA_DIR/films/NAME)")
    # None only for drivers that are not DICOM: the dicom driver requires them (printer_problems).
    ae_title: str | None = Field(None, min_length=1, max_length=16, description="the printer's AE title")
    host: str | None = Field(None, min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    # The print queue (PRN-7).
    idle_release: float = Field(30.0, ge=0, description="seconds an idle association is kept open for the next job")
    retries: int = Field(0, ge=0, le=100, description="tries after a failed one, with backoff")
    retry_backoff: float = Field(10.0, gt=0, description="seconds before the first retry; doubled each time, ≤ 300")
    calling_ae_title: str | None = Field(None, min_length=1, max_length=16,
                                         description="our AE title towards it (default: node.ae_title)")
    description: str = ""
    color: bool = Field(False, description="Basic Color Print Management: RGB films")
    resolution: int = Field(150, ge=10, le=1200, description="dots per inch of the rendered sheet")
    compose: Literal["sheet", "boxes"] = Field(
        "sheet", description="sheet: one pre-composed film per STANDARD\\1,1 box; boxes: one image per box")
    strict: bool = Field(False, description="a warning status (Bxxx) fails the job")
    send_attributes: list[str] | None = Field(
        None, description="the optional attributes this printer accepts (default: every configured one)")
    association_timeout: float = Field(30.0, gt=0)
    dimse_timeout: float = Field(120.0, gt=0)
    max_pdu: int = Field(16384, ge=0)
    # CFG-4 film defaults (PRN-3, PRN-4, PRN-5).
    copies: int = Field(1, ge=1, le=99)
    priority: Literal["HIGH", "MED", "LOW"] = Field("MED", description="Print Priority; the queue's default")
    medium_type: str | None = Field("BLUE FILM", description="PAPER, CLEAR FILM, BLUE FILM, …")
    film_destination: str | None = Field("MAGAZINE", description="MAGAZINE, PROCESSOR, BIN_i")
    label: str | None = None
    memory_allocation: int | None = Field(None, ge=0)
    display_format: str = "STANDARD\\1,1"
    orientation: Literal["PORTRAIT", "LANDSCAPE"] = "PORTRAIT"
    film_size: str = "14INX17IN"
    magnification: Literal["REPLICATE", "BILINEAR", "CUBIC", "NONE"] = "CUBIC"
    smoothing: str | None = None
    border_density: str = "BLACK"
    empty_image_density: str = "BLACK"
    min_density: int | None = Field(None, ge=0)
    max_density: int | None = Field(None, ge=0)
    trim: Literal["YES", "NO"] = "NO"
    configuration_information: str | None = None
    polarity: Literal["NORMAL", "REVERSE"] = "NORMAL"
    border: float = Field(0.05, ge=0, le=2, description="inches around and between images on a composed sheet")
    window: Literal["object", "auto"] = Field(
        "object", description="VOI: the object's window (first one) when it has one, else min/max; auto: min/max")
    overlays: bool = Field(True, description="burn overlay planes (60xx,3000) into the images (PS3.3 C.9.2)")
    rotate: Literal[0, 90, 180, 270] = Field(
        0, description="degrees each image is turned clockwise before it is fitted; the film orientation stays")

    @field_validator("ae_title", "calling_ae_title")
    @classmethod
    def _ae(cls, v: str | None) -> str | None:
        if v is not None and (v != v.strip() or "\\" in v or not v.isprintable()):
            raise ValueError("an AE title is up to 16 printable characters without backslash or "
                             "leading/trailing spaces")
        return v

    @field_validator("film_size")
    @classmethod
    def _film(cls, v: str) -> str:
        if v.upper() not in FILM_SIZES:
            raise ValueError(f"unknown film size {v!r}; known: {', '.join(FILM_SIZES)}")
        return v.upper()

    @field_validator("border_density", "empty_image_density")
    @classmethod
    def _density(cls, v: str) -> str:
        v = str(v).upper()
        if not _DENSITY.match(v):
            raise ValueError("BLACK, WHITE or a density in hundredths of optical density (e.g. 150)")
        return v

    @field_validator("display_format")
    @classmethod
    def _format(cls, v: str) -> str:
        from gateway._rust import ImagingError, layout_boxes

        try:
            layout_boxes(v, 1000, 1000, 0)
        except ImagingError as exc:
            raise ValueError(str(exc)) from None
        return v

    @field_validator("send_attributes")
    @classmethod
    def _send(cls, v: list[str] | None) -> list[str] | None:
        for name in v or ():
            if name not in OPTIONAL_ATTRIBUTES:
                raise ValueError(f"unknown attribute {name!r}; known: {', '.join(OPTIONAL_ATTRIBUTES)}")
        return v

    def sends(self, key: str) -> bool:
        """Whether the optional attribute ``key`` goes to this printer (and has a value)."""
        if getattr(self, key, None) is None:
            return False
        return self.send_attributes is None or key in self.send_attributes


class PrinterConfigError(ValueError):
    """A printer file does not validate, or the printer is not configured."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _validate(doc: Any) -> tuple[PrinterSettings | None, list[str]]:
    from gateway.config import PluginSettingsError, validate_document

    try:
        return validate_document(doc.body, PrinterSettings, doc), []
    except PluginSettingsError as exc:
        return None, exc.problems


def _at(doc: Any, key: str) -> str:
    line = doc.key_lines.get((key,))
    return f"{doc.file}:{line}" if line else doc.file


def _driver_problems(name: str, doc: Any, settings: PrinterSettings, drivers: Any) -> list[str]:
    """What validating each file alone cannot see: the driver's name against the
    registered ones, and the address the dicom driver needs."""
    out = []
    if name.lower() in RESERVED_NAMES:
        out.append(f"{doc.file}: a printer cannot be called {name!r}: `dicom-gateway print {name.lower()}` is a "
                   "command; rename the file")
    if drivers is not None and settings.driver not in drivers.factories:
        known = ", ".join(sorted(drivers.factories)) or "none"
        out.append(f"{_at(doc, 'driver')}: key 'driver': no print driver named {settings.driver!r} "
                   f"(registered: {known}; a plugin adds one with gateway_register_print_drivers)")
    if settings.driver == "dicom":
        for key in ("ae_title", "host", "port"):
            if getattr(settings, key) is None:
                out.append(f"{doc.file}:1: key '{key}': required key is missing (driver \"dicom\" prints to a DICOM "
                           "Print SCP at ae_title, host, port)")
    return out


def printer_problems(config: Any, drivers: Any = None) -> list[str]:
    """``file:line: key`` problems of every ``printers/*.toml`` (for ``gateway_config_loaded``);
    with ``drivers`` (the host's print driver registry) an unknown ``driver`` is one."""
    problems: list[str] = []
    for name, doc in sorted(getattr(config, "printers", {}).items()):
        settings, found = _validate(doc)
        problems.extend(found)
        if settings is not None:
            problems.extend(_driver_problems(name, doc, settings, drivers))
    return problems


def printer_settings(config: Any, name: str) -> tuple[str, PrinterSettings]:
    """The printer called ``name`` (case-insensitive) and its validated settings;
    PrinterConfigError says which printers there are, or what is wrong with the file."""
    printers = getattr(config, "printers", {}) or {}
    found = next((n for n in printers if n.lower() == name.strip().lower()), None)
    if found is None:
        known = ", ".join(sorted(printers)) or "none configured"
        raise PrinterConfigError([f"unknown printer {name!r}: add printers/{name}.toml (known: {known})"])
    settings, problems = _validate(printers[found])
    if settings is not None:
        problems = _driver_problems(found, printers[found], settings, None)
    if problems:
        raise PrinterConfigError(problems)
    return found, settings
