"""Print Management SCU (PS3.4 Annex H; PRN-1..PRN-5, PRN-8) as the registered
service ``print-scu``: Basic Grayscale (and Color) Print Management Meta SOP
classes, Implicit VR LE, one film session per print job:

N-GET Printer → N-CREATE Film Session → per film: N-CREATE Film Box → N-SET
Image Box per position → N-ACTION Print → N-DELETE Film Box; then N-DELETE
Film Session. Films are rendered by :mod:`gateway_plugins.print_render`.

Printers come from ``printers/*.toml`` (:mod:`gateway_plugins.print_config`);
where films go is a print driver (:mod:`gateway_plugins.print_drivers`: ``dicom``
is this SCU, ``png`` writes files); jobs wait in a persistent queue
(:mod:`gateway_plugins.print_queue`) worked off by one thread per printer in the
sender process (:mod:`gateway_plugins.print_worker`), from the command line and
from ``print`` routing rules (:mod:`gateway_plugins.print_rules`); the ``print``,
``print ls|cancel`` and ``printer status`` commands are in
:mod:`gateway_plugins.print_command`."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from gateway.hookspecs import hookimpl
from gateway.services import Service

log = logging.getLogger("gateway.print")

NAME = "print-scu"
IMPLICIT_LE = "1.2.840.10008.1.2"
GRAYSCALE_META = "1.2.840.10008.5.1.1.9"
COLOR_META = "1.2.840.10008.5.1.1.18"
PRINTER = "1.2.840.10008.5.1.1.16"
PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"
FILM_SESSION = "1.2.840.10008.5.1.1.1"
FILM_BOX = "1.2.840.10008.5.1.1.2"
GRAYSCALE_IMAGE_BOX = "1.2.840.10008.5.1.1.4"
COLOR_IMAGE_BOX = "1.2.840.10008.5.1.1.4.1"

BEHAVIOUR = (
    "Proposes Basic Grayscale Print Management Meta (1.2.840.10008.5.1.1.9), and Basic Color Print "
    "Management Meta (1.2.840.10008.5.1.1.18) for a printer configured color = true, each with "
    "Implicit VR LE only (PRN-1); no SCP/SCU role selection",
    "One association per print job: N-GET Printer (refuses to print when the status is FAILURE), "
    "N-CREATE Film Session, then per film N-CREATE Film Box, N-SET of each Image Box (preformatted "
    "8-bit MONOCHROME2 or RGB), N-ACTION Print and N-DELETE Film Box; N-DELETE Film Session (PRN-2)",
    "Any failure status aborts the association and fails the job (PRN-8); warnings (Bxxx) are logged "
    "and accepted unless the printer is strict; optional attributes limited to the printer's send_attributes",
)

_STATUS_TEXT = {
    0x0105: "no such attribute", 0x0106: "invalid attribute value", 0x0107: "attribute list error",
    0x0110: "processing failure", 0x0111: "duplicate SOP instance", 0x0112: "no such SOP instance",
    0x0116: "attribute value out of range", 0x0117: "invalid object instance", 0x0118: "no such SOP class",
    0x0119: "class-instance conflict", 0x0120: "missing attribute", 0x0121: "missing attribute value",
    0x0122: "SOP class not supported", 0x0124: "not authorized", 0x0210: "duplicate invocation",
    0x0211: "unrecognized operation", 0x0213: "resource limitation",
    0xB600: "memory allocation not supported", 0xB601: "film session printing not supported",
    0xB602: "film session contains empty pages", 0xB603: "film box contains empty pages",
    0xB604: "image size larger than the image box (demagnified)", 0xB605: "requested min/max density "
    "outside the printer's range", 0xB609: "image size larger than the image box (cropped)",
    0xB60A: "image size larger than the image box (decimated)",
    0xC600: "film session has no film box", 0xC601: "film session has no printable image",
    0xC602: "film box has no printable image", 0xC603: "image larger than the image box",
    0xC605: "insufficient memory in the printer", 0xC613: "combined print image larger than the "
    "image box", 0xC616: "too many image boxes", 0xC651: "color image box not supported",
}


def describe_status(code: int) -> str:
    kind = "warning" if 0xB000 <= code <= 0xBFFF else "failure"
    return f"0x{code:04X} ({_STATUS_TEXT.get(code, kind)})"


class PrintError(Exception):
    """A print job failed; the message says at which step and why (PRN-8)."""


class PrintCancelled(Exception):
    """A job was cancelled on request while it was printing (PRN-2): before the step named,
    with ``printed`` films already printed. The film session was deleted."""

    def __init__(self, printed: int, total: int, step: str) -> None:
        super().__init__(f"cancelled before {step}: {printed} of {total} film(s) printed")
        self.printed, self.total, self.step = printed, total, step


@dataclass
class PrinterStatus:
    status: str
    info: str
    name: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class PrintResult:
    films: int
    images: int
    warnings: list[str]
    printer: PrinterStatus | None
    #: what the driver wants said about it (files written, …), for `print ls`
    note: str = ""


def _optional(ds: Any, settings: Any, key: str, keyword: str, value: Any = None) -> None:
    if settings.sends(key):
        setattr(ds, keyword, getattr(settings, key) if value is None else value)


def film_session_dataset(settings: Any, copies: int | None = None) -> Any:
    """N-CREATE Film Session attributes (PRN-3)."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    _optional(ds, settings, "copies", "NumberOfCopies", copies or settings.copies)
    _optional(ds, settings, "priority", "PrintPriority")
    _optional(ds, settings, "medium_type", "MediumType")
    _optional(ds, settings, "film_destination", "FilmDestination")
    _optional(ds, settings, "label", "FilmSessionLabel")
    _optional(ds, settings, "memory_allocation", "MemoryAllocation")
    return ds


def film_box_dataset(settings: Any, session_uid: str, display_format: str, film_size: str, orientation: str) -> Any:
    """N-CREATE Film Box attributes (PRN-4)."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.ImageDisplayFormat = display_format
    ref = Dataset()
    ref.ReferencedSOPClassUID = FILM_SESSION
    ref.ReferencedSOPInstanceUID = session_uid
    ds.ReferencedFilmSessionSequence = [ref]
    _optional(ds, settings, "orientation", "FilmOrientation", orientation)
    _optional(ds, settings, "film_size", "FilmSizeID", film_size)
    _optional(ds, settings, "magnification", "MagnificationType")
    _optional(ds, settings, "smoothing", "SmoothingType")
    _optional(ds, settings, "border_density", "BorderDensity")
    _optional(ds, settings, "empty_image_density", "EmptyImageDensity")
    _optional(ds, settings, "min_density", "MinDensity")
    _optional(ds, settings, "max_density", "MaxDensity")
    _optional(ds, settings, "trim", "Trim")
    _optional(ds, settings, "configuration_information", "ConfigurationInformation")
    return ds


def image_box_dataset(settings: Any, box: Any) -> Any:
    """N-SET Image Box attributes (PRN-5): preformatted 8-bit MONOCHROME2, or RGB colour-by-plane.
    Polarity is rendered into the pixels, so NORMAL is what the printer is told."""
    from pydicom.dataset import Dataset

    img = Dataset()
    img.SamplesPerPixel = box.channels
    img.PhotometricInterpretation = "MONOCHROME2" if box.channels == 1 else "RGB"
    if box.channels == 3:
        img.PlanarConfiguration = 1  # PS3.3 C.13.5.1: colour-by-plane in the Basic Color Image Box
    img.Rows, img.Columns = box.height, box.width
    img.PixelAspectRatio = [1, 1]
    img.BitsAllocated, img.BitsStored, img.HighBit, img.PixelRepresentation = 8, 8, 7, 0
    pixels = box.pixels
    if box.channels == 3:
        pixels = pixels[0::3] + pixels[1::3] + pixels[2::3]
    if len(pixels) % 2:
        pixels += b"\x00"
    img.PixelData = pixels
    img["PixelData"].VR = "OB"
    ds = Dataset()
    ds.ImageBoxPosition = box.position
    if settings.sends("polarity"):
        ds.Polarity = "NORMAL"
    if box.channels == 1:
        ds.BasicGrayscaleImageSequence = [img]
    else:
        ds.BasicColorImageSequence = [img]
    return ds


class PrintSession:
    """One association with one printer (context manager)."""

    def __init__(self, name: str, settings: Any, config: Any) -> None:
        self.name, self.settings, self.config = name, settings, config
        self.meta = COLOR_META if settings.color else GRAYSCALE_META
        self.assoc: Any = None
        self.warnings: list[str] = []
        self._created: list[str | None] = []
        self._lock = threading.Lock()

    def __str__(self) -> str:
        s = self.settings
        return f"{self.name} ({s.ae_title}@{s.host}:{s.port})"

    # -- association -------------------------------------------------------
    def open(self) -> "PrintSession":
        from pynetdicom import AE, evt

        from gateway.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

        s, node = self.settings, getattr(self.config, "node", None)
        ae = AE(ae_title=s.calling_ae_title or getattr(node, "ae_title", "DICOM_GATEWAY"))
        ae.implementation_class_uid = getattr(node, "implementation_class_uid", IMPLEMENTATION_CLASS_UID)
        ae.implementation_version_name = getattr(node, "implementation_version_name", IMPLEMENTATION_VERSION_NAME)
        ae.connection_timeout = ae.acse_timeout = s.association_timeout
        ae.dimse_timeout = s.dimse_timeout
        ae.network_timeout = None
        ae.maximum_pdu_size = s.max_pdu
        ae.add_requested_context(GRAYSCALE_META, [IMPLICIT_LE])
        if s.color:
            ae.add_requested_context(COLOR_META, [IMPLICIT_LE])
        try:
            assoc = ae.associate(s.host, s.port, ae_title=s.ae_title, max_pdu=s.max_pdu,
                                 evt_handlers=[(evt.EVT_DIMSE_RECV, self._on_dimse)])
        except (OSError, ValueError) as exc:
            raise PrintError(f"printer {self}: cannot open an association: {exc}") from exc
        if not assoc.is_established:
            why = "rejected" if assoc.is_rejected else "refused or aborted (is it running?)"
            raise PrintError(f"printer {self}: association {why}")
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        if self.meta not in accepted:
            assoc.release()
            kind = "Basic Color" if s.color else "Basic Grayscale"
            raise PrintError(f"printer {self} does not accept the {kind} Print Management Meta SOP class "
                             f"({self.meta})")
        self.assoc = assoc
        return self

    def _on_dimse(self, event: Any) -> None:
        # pynetdicom returns no Affected SOP Instance UID from send_n_create: keep the response's.
        cs = getattr(event.message, "command_set", None)
        if cs is not None and int(cs.get("CommandField", 0)) == 0x8140:
            with self._lock:
                self._created.append(str(cs.get("AffectedSOPInstanceUID", "")) or None)

    def close(self, abort: bool = False) -> None:
        if self.assoc is None:
            return
        if abort or not self.assoc.is_established:
            self.assoc.abort()
        else:
            self.assoc.release()
        self.assoc = None

    def __enter__(self) -> "PrintSession":
        return self.open()

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self.close(abort=kind is not None)

    # -- DIMSE ---------------------------------------------------------------
    def _check(self, step: str, status: Any, sent: Sequence[str] = ()) -> int:
        """PRN-8: a failure (or no answer) raises PrintError; a warning is logged (strict: raises)."""
        if not status or "Status" not in status:
            raise PrintError(f"printer {self}: no {step} response (DIMSE timeout or association aborted)")
        code = int(status.Status)
        comment = str(status.get("ErrorComment", "") or "").strip()
        detail = f"{describe_status(code)}" + (f": {comment}" if comment else "")
        if code == 0:
            return code
        if 0xB000 <= code <= 0xBFFF:
            msg = f"{step}: warning {detail}"
            self.warnings.append(msg)
            log.warning("print: %s", msg, extra={"printer": self.name, "status": f"0x{code:04X}"})
            if self.settings.strict:
                raise PrintError(f"printer {self}: {msg} (the printer is configured strict)")
            return code
        hint = ""
        if code in (0x0105, 0x0106, 0x0116) and sent:
            from gateway_plugins.print_config import OPTIONAL_ATTRIBUTES

            named = ", ".join(f"{k} = {OPTIONAL_ATTRIBUTES[k]}" for k in sent)
            hint = (f"; the printer refuses one of the optional attributes sent ({named}): list only "
                    f"those it accepts in send_attributes of printers/{self.name}.toml")
        raise PrintError(f"printer {self}: {step} failed with {detail}{hint}")

    def printer_status(self) -> PrinterStatus:
        """N-GET Printer (PRN-2): status NORMAL/WARNING/FAILURE and Printer Status Info."""
        # No attribute identifier list: all of them (an SCP may refuse ones it lacks, as dcmprscp does).
        status, attrs = self.assoc.send_n_get([], PRINTER, PRINTER_INSTANCE, meta_uid=self.meta)
        self._check("N-GET Printer", status)
        attrs = attrs or {}
        values = {}
        for kw in ("PrinterStatus", "PrinterStatusInfo", "PrinterName", "Manufacturer", "ManufacturerModelName",
                   "DeviceSerialNumber", "SoftwareVersions"):
            v = attrs.get(kw) if hasattr(attrs, "get") else None
            if v not in (None, ""):
                values[kw] = "\\".join(map(str, v)) if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else str(v)
        return PrinterStatus(values.get("PrinterStatus", "").upper() or "UNKNOWN",
                             values.get("PrinterStatusInfo", ""), values.get("PrinterName", ""), values)

    def _create(self, step: str, ds: Any, class_uid: str) -> tuple[str, Any]:
        with self._lock:
            self._created.clear()
        status, attrs = self.assoc.send_n_create(ds, class_uid, None, meta_uid=self.meta)
        sent = [k for k in OPTIONAL_KEYS_BY_KEYWORD if k in ds]
        self._check(step, status, [OPTIONAL_KEYS_BY_KEYWORD[k] for k in sent])
        with self._lock:
            uid = self._created[-1] if self._created else None
        if not uid:
            raise PrintError(f"printer {self}: the {step} response has no Affected SOP Instance UID")
        return uid, attrs

    def print_films(self, films: Sequence[Any], *, copies: int | None = None, film_size: str, orientation: str,
                    on_film: Callable[[int], None] | None = None,
                    cancelled: Callable[[], bool] | None = None) -> int:
        """The Film Session with ``films`` (:class:`gateway_plugins.print_render.Film`); returns films printed.
        ``cancelled()`` is asked before each film box and each N-ACTION Print: when it says so, the
        film box and session are deleted and :class:`PrintCancelled` raised (PRN-2 "cancel on request")."""
        session_uid, _ = self._create("N-CREATE Film Session", film_session_dataset(self.settings, copies),
                                      FILM_SESSION)
        printed = 0

        def stop_if_cancelled(step: str, box_uid: str | None) -> None:
            if cancelled is None or not cancelled():
                return
            if box_uid is not None:
                self._check(f"N-DELETE Film Box {n}", self.assoc.send_n_delete(FILM_BOX, box_uid, meta_uid=self.meta))
            self._check("N-DELETE Film Session",
                        self.assoc.send_n_delete(FILM_SESSION, session_uid, meta_uid=self.meta))
            raise PrintCancelled(printed, len(films), step)

        for n, film in enumerate(films, start=1):
            stop_if_cancelled(f"film {n}", None)
            box_uid, attrs = self._create(f"N-CREATE Film Box {n}",
                                          film_box_dataset(self.settings, session_uid, film.display_format,
                                                           film_size, orientation), FILM_BOX)
            refs = list(getattr(attrs, "ReferencedImageBoxSequence", []) or []) if attrs is not None else []
            if len(refs) < len(film.boxes):
                raise PrintError(f"printer {self}: film box {n} has {len(refs)} image boxes, "
                                 f"{len(film.boxes)} are needed for {film.display_format}")
            for box in film.boxes:
                ref = refs[box.position - 1]
                status, _ = self.assoc.send_n_set(image_box_dataset(self.settings, box),
                                                  str(ref.ReferencedSOPClassUID), str(ref.ReferencedSOPInstanceUID),
                                                  meta_uid=self.meta)
                self._check(f"N-SET Image Box {box.position} of film {n}", status,
                            ["polarity"] if self.settings.sends("polarity") else [])
            stop_if_cancelled(f"N-ACTION Print of film {n}", box_uid)
            status, _ = self.assoc.send_n_action(None, 1, FILM_BOX, box_uid, meta_uid=self.meta)
            self._check(f"N-ACTION Print of film {n}", status)
            printed += 1
            if on_film:
                on_film(n)
            status = self.assoc.send_n_delete(FILM_BOX, box_uid, meta_uid=self.meta)
            self._check(f"N-DELETE Film Box {n}", status)
        status = self.assoc.send_n_delete(FILM_SESSION, session_uid, meta_uid=self.meta)
        self._check("N-DELETE Film Session", status)
        return printed


OPTIONAL_KEYS_BY_KEYWORD = {
    "NumberOfCopies": "copies", "PrintPriority": "priority", "MediumType": "medium_type",
    "FilmDestination": "film_destination", "FilmSessionLabel": "label", "MemoryAllocation": "memory_allocation",
    "FilmOrientation": "orientation", "FilmSizeID": "film_size", "MagnificationType": "magnification",
    "SmoothingType": "smoothing", "BorderDensity": "border_density", "EmptyImageDensity": "empty_image_density",
    "MinDensity": "min_density", "MaxDensity": "max_density", "Trim": "trim",
    "ConfigurationInformation": "configuration_information",
}


class PrintSCU:
    """What other code calls to print (the ``print-scu`` service's client)."""

    def printer(self, config: Any, name: str) -> tuple[str, Any]:
        from gateway_plugins.print_config import printer_settings

        return printer_settings(config, name)

    def status(self, config: Any, name: str) -> PrinterStatus:
        found, settings = self.printer(config, name)
        with PrintSession(found, settings, config) as session:
            return session.printer_status()

    def print_films(self, config: Any, name: str, films: Sequence[Any], *, copies: int | None = None,
                    film_size: str | None = None, orientation: str | None = None) -> PrintResult:
        """A whole print session (PRN-2) on an association of its own; PrintError on any
        failure (the association is aborted, PRN-8)."""
        found, settings = self.printer(config, name)
        with PrintSession(found, settings, config) as session:
            return run_session(session, films, copies=copies, film_size=film_size or settings.film_size,
                               orientation=orientation or settings.orientation)


def run_session(session: PrintSession, films: Sequence[Any], *, copies: int | None, film_size: str,
                orientation: str, cancelled: Callable[[], bool] | None = None) -> PrintResult:
    """One print job on an open session: N-GET Printer (FAILURE refuses, WARNING is said),
    then the Film Session with ``films``. The session may have printed jobs before (PRN-7:
    the association is kept between jobs), so its warnings start afresh."""
    session.warnings = []
    state = session.printer_status()
    if state.status == "FAILURE":
        raise PrintError(f"printer {session} reports FAILURE"
                         + (f": {state.info}" if state.info else "") + "; not printing")
    if state.status == "WARNING":
        msg = "printer status WARNING" + (f": {state.info}" if state.info else "")
        session.warnings.append(msg)
        log.warning("print: %s", msg, extra={"printer": session.name})
    n = session.print_films(films, copies=copies, film_size=film_size, orientation=orientation, cancelled=cancelled)
    return PrintResult(n, sum(len(f.boxes) for f in films), session.warnings, state)


def service() -> Service:
    return Service(
        name=NAME,
        sop_classes=(GRAYSCALE_META, COLOR_META),
        handler=None,
        transfer_syntaxes=(IMPLICIT_LE,),
        role="scu",
        client=PrintSCU(),
        scu_behaviour=BEHAVIOUR,
        scu_transfer_syntaxes=(IMPLICIT_LE,),
        description="Print Management SCU: films to DICOM printers, `dicom-gateway print` (PRN-1..PRN-6, PRN-8)",
    )


@hookimpl
def gateway_register_services(registry: Any) -> None:
    from gateway.services import RuleAction
    from gateway_plugins.print_rules import ACTION, record, validate_rule

    registry.add(service())
    registry.add_rule_action(RuleAction(
        name=ACTION, record=record, validate=validate_rule,
        description="print each matching series on a printer (a durable print job per series)"))


@hookimpl
def gateway_register_print_drivers(registry: Any) -> None:
    """The built-in drivers: ``dicom`` (this Print SCU) and ``png`` (films as PNG files)."""
    from gateway_plugins.print_drivers import register

    register(registry)


@hookimpl
def gateway_config_loaded(config: Any) -> list[str]:
    from gateway_plugins.print_config import printer_problems
    from gateway_plugins.print_drivers import registered

    return printer_problems(config, registered())


@hookimpl
def gateway_sender_poll(config: Any, index: Any, stopping: Any) -> None:
    """The print workers run in the sender process (one per node): started on the first
    round that has printers, then handed each new config."""
    from gateway_plugins.print_worker import poll

    poll(config, index, stopping)


@hookimpl
def gateway_series_complete(series: Any, config: Any) -> None:
    """A series a print rule collected is complete: its job joins the queue."""
    from gateway_plugins.print_worker import series_complete

    series_complete(series.series_instance_uid, config)


@hookimpl
def gateway_register_commands(commands: Any) -> None:
    """``print``, ``print ls|cancel`` and ``printer status``."""
    from gateway_plugins.print_command import add_print_parsers

    add_print_parsers(commands)
