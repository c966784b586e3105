"""From stored objects to the films a printer gets (PRN-5, PRN-6): frames read
with pydicom (no pixel decoding in Python), rendered and composed by the Rust
renderer (``gateway._rust.render_frame`` / ``compose_sheet``, GIL released),
and written as PNG for ``--preview`` with a zlib-only encoder."""

from __future__ import annotations

import array
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from gateway_plugins.print_config import FILM_SIZES, PrinterSettings

__all__ = ["Picture", "Film", "RenderError", "load_pictures", "plan_films", "write_png", "read_png",
           "density_value", "sheet_size"]


class RenderError(ValueError):
    """An object that cannot be printed (compressed, unsupported photometric…), or a film that cannot be laid out."""


@dataclass(frozen=True)
class Picture:
    """One frame rendered to 8-bit display pixels at its own size."""

    width: int
    height: int
    channels: int
    pixels: bytes
    source: str  # file and frame, for messages

    def as_tuple(self) -> tuple[int, int, int, bytes]:
        return (self.width, self.height, self.channels, self.pixels)


@dataclass
class ImageBoxContent:
    """What one image box gets (PRN-5): position (1-based) and 8-bit pixels."""

    position: int
    width: int
    height: int
    channels: int
    pixels: bytes


@dataclass
class Film:
    """One film box: its display format and image boxes, and the whole sheet as previewed."""

    display_format: str
    boxes: list[ImageBoxContent]
    sheet: ImageBoxContent = field(repr=False)


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, (str, bytes)) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _frames_of(path: Path, settings: PrinterSettings) -> list[Picture]:
    import pydicom
    from gateway._rust import ImagingError, render_frame

    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception as exc:
        raise RenderError(f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    if "PixelData" not in ds:
        raise RenderError(f"{path}: has no pixel data")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_compressed:
        raise RenderError(f"{path}: compressed pixel data ({syntax.name}) is not rendered yet")
    rows, cols = int(ds.Rows), int(ds.Columns)
    spp = int(ds.get("SamplesPerPixel", 1))
    bits = int(ds.get("BitsAllocated", 16))
    stored = int(ds.get("BitsStored", bits))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    data = bytes(ds.PixelData)
    little = syntax.is_little_endian if syntax is not None else True
    if spp == 1 and photometric in ("MONOCHROME1", "MONOCHROME2") and bits in (8, 16):
        kind = "u8" if bits == 8 else ("i16" if signed else "u16")
    elif spp == 3 and photometric == "RGB" and bits == 8:
        kind = "rgb8"
    else:
        raise RenderError(f"{path}: {photometric} with {spp} samples of {bits} bits is not rendered yet "
                          "(MONOCHROME1/2 8 or 16 bits and RGB 8 bits are)")
    frame_len = rows * cols * spp * (bits // 8)
    if len(data) < frame_len * frames:
        raise RenderError(f"{path}: pixel data holds {len(data)} bytes, {frames} frame(s) need {frame_len * frames}")
    slope = _first(ds.get("RescaleSlope")) or 1.0
    intercept = _first(ds.get("RescaleIntercept")) or 0.0
    center = width = None
    if settings.window == "object":
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        if center is None or width is None or width < 1:
            center = width = None
    out = []
    for n in range(frames):
        chunk = data[n * frame_len:(n + 1) * frame_len]
        if bits == 16 and not little:
            words = array.array("H", chunk)
            words.byteswap()
            chunk = words.tobytes()
        if kind == "rgb8" and int(ds.get("PlanarConfiguration", 0)) == 1:
            planes = rows * cols
            inter = bytearray(frame_len)
            for c in range(3):
                inter[c::3] = chunk[c * planes:(c + 1) * planes]
            chunk = bytes(inter)
        try:
            pixels = render_frame(chunk, rows, cols, samples=kind, bits_stored=stored if bits == 16 else None,
                                  rescale_slope=slope, rescale_intercept=intercept,
                                  window_center=center, window_width=width,
                                  monochrome1=photometric == "MONOCHROME1",
                                  reverse=settings.polarity == "REVERSE")
        except ImagingError as exc:
            raise RenderError(f"{path}: {exc}") from None
        out.append(Picture(cols, rows, 3 if kind == "rgb8" else 1, pixels,
                           f"{path.name}" + (f" frame {n + 1}" if frames > 1 else "")))
    return out


def _sort_key(path: Path) -> tuple:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        return (str(ds.get("SeriesInstanceUID", "")), int(ds.get("InstanceNumber", 0) or 0), str(path))
    except Exception:
        return ("", 0, str(path))


def load_pictures(paths: Sequence[Path], settings: PrinterSettings, *, sort: bool) -> list[Picture]:
    """Every frame of ``paths`` (one box each), in the order given or (``sort``) by series and Instance Number."""
    ordered = sorted(paths, key=_sort_key) if sort else list(paths)
    out: list[Picture] = []
    for p in ordered:
        out.extend(_frames_of(Path(p), settings))
    return out


def density_value(density: str, settings: PrinterSettings) -> int:
    """A Border/Empty Image Density as an 8-bit MONOCHROME2 pixel value: BLACK 0, WHITE 255,
    a number (hundredths of OD) linear between Max Density (0) and Min Density (255)."""
    if density == "BLACK":
        return 0
    if density == "WHITE":
        return 255
    dmin = settings.min_density if settings.min_density is not None else 20
    dmax = settings.max_density if settings.max_density is not None else 300
    if dmax <= dmin:
        return 0
    return max(0, min(255, round(255 * (dmax - int(density)) / (dmax - dmin))))


def sheet_size(settings: PrinterSettings, film_size: str | None = None, orientation: str | None = None) -> tuple[int, int]:
    """Pixels of a whole film at the printer's resolution."""
    w, h = FILM_SIZES[(film_size or settings.film_size).upper()]
    if (orientation or settings.orientation) == "LANDSCAPE":
        w, h = h, w
    return round(w * settings.resolution), round(h * settings.resolution)


def plan_films(pictures: Sequence[Picture], settings: PrinterSettings, *, display_format: str,
               film_size: str, orientation: str) -> list[Film]:
    """The films of a print job: pictures in order, as many per film as the format has boxes.
    ``compose = "sheet"``: each film is one pre-composed STANDARD\\1,1 image;
    ``"boxes"``: one image per box, fitted to the box (the sheet is the printer's layout of them)."""
    from gateway._rust import ImagingError, compose_sheet, layout_boxes

    if not pictures:
        raise RenderError("nothing to print")
    width, height = sheet_size(settings, film_size, orientation)
    channels = 3 if settings.color else 1
    border = round(settings.border * settings.resolution)
    border_value = density_value(settings.border_density, settings)
    empty_value = density_value(settings.empty_image_density, settings)
    try:
        rects = layout_boxes(display_format, width, height, border)
    except ImagingError as exc:
        raise RenderError(str(exc)) from None
    films = []
    for start in range(0, len(pictures), len(rects)):
        batch = pictures[start:start + len(rects)]
        try:
            sheet = compose_sheet([p.as_tuple() for p in batch], width=width, height=height, channels=channels,
                                  format=display_format, border=border, border_value=border_value,
                                  empty_value=empty_value, magnification=settings.magnification)
        except ImagingError as exc:
            raise RenderError(str(exc)) from None
        whole = ImageBoxContent(1, width, height, channels, sheet)
        if settings.compose == "sheet":
            films.append(Film("STANDARD\\1,1", [whole], whole))
            continue
        boxes = []
        view = memoryview(sheet)
        stride = width * channels
        for pos, (_pic, (x, y, bw, bh)) in enumerate(zip(batch, rects), start=1):
            # the box as drawn on the sheet (the same pixels as composing it alone)
            row = bw * channels
            start_at = y * stride + x * channels
            cell = b"".join(view[start_at + r * stride:start_at + r * stride + row] for r in range(bh))
            boxes.append(ImageBoxContent(pos, bw, bh, channels, cell))
        films.append(Film(display_format, boxes, whole))
    return films


def write_png(path: Path, width: int, height: int, channels: int, pixels: bytes) -> None:
    """8-bit grayscale (colour type 0) or RGB (2) PNG, filter 0 on every row, zlib only."""
    stride = width * channels
    raw = b"".join(b"\x00" + pixels[y * stride:(y + 1) * stride] for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0 if channels == 1 else 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def read_png(path: Path) -> tuple[int, int, int, bytes]:
    """(width, height, channels, pixels) of an 8-bit PNG as :func:`write_png` writes (filters 0..4 decoded)."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
    if ihdr is None or ihdr[2] != 8 or ihdr[3] not in (0, 2) or ihdr[6] != 0:
        raise ValueError(f"{path}: only 8-bit non-interlaced grayscale/RGB PNGs are read")
    width, height, ch = ihdr[0], ihdr[1], 1 if ihdr[3] == 0 else 3
    raw, stride = zlib.decompress(idat), ihdr[0] * (1 if ihdr[3] == 0 else 3)
    out, prev = bytearray(), bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b, c = prev[i], prev[i - ch] if i >= ch else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out += line
        prev = line
    return width, height, ch, bytes(out)


def preview_paths(out: Path, n: int) -> list[Path]:
    """``out.png`` for one film; ``out-1.png``, ``out-2.png``… for several."""
    if n == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix or '.png'}") for i in range(1, n + 1)]
