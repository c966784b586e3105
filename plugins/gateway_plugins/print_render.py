"""From stored objects to the films a printer gets (PRN-5, PRN-6): frames read
with pydicom (no pixel decoding in Python), rendered and composed by the Rust
renderer (``gateway._rust.render_frame`` / ``compose_sheet``, GIL released),
and written as PNG for ``--preview`` with a zlib-only encoder. As a print
formatter does before sending (seed 003 Appendix B), ``render_frame`` applies
the viewing transformations: grayscale rescale/VOI, PALETTE COLOR and YBR to
RGB, overlay planes (60xx) burned in (printer option ``overlays``), polarity,
and the printer's ``rotate``."""

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


def _swap16(chunk: bytes) -> bytes:
    words = array.array("H", chunk[:len(chunk) // 2 * 2])
    words.byteswap()
    return words.tobytes()


def _interleave(chunk: bytes, planes: int) -> bytes:
    """Planar Configuration 1 (RRR…GGG…BBB…) to 0 (RGBRGB…), PS3.3 C.7.6.3.1.3."""
    inter = bytearray(planes * 3)
    for c in range(3):
        inter[c::3] = chunk[c * planes:(c + 1) * planes]
    return bytes(inter)


def _palette(ds: Any, path: Path, signed: bool, little: bool) -> list[tuple[int, int, int, bytes]]:
    """The red, green, blue Palette Color Lookup Tables (PS3.3 C.7.6.3.1.5/6) for the renderer:
    (entries, first value mapped, bits per entry, little-endian data)."""
    if "SegmentedRedPaletteColorLookupTableData" in ds and "RedPaletteColorLookupTableData" not in ds:
        raise RenderError(f"{path}: segmented palette colour LUTs (0028,1221-1223) are not rendered yet")
    tables = []
    for colour in ("Red", "Green", "Blue"):
        desc, data = ds.get(f"{colour}PaletteColorLookupTableDescriptor"), ds.get(f"{colour}PaletteColorLookupTableData")
        if desc is None or data is None or not hasattr(desc, "__len__") or len(desc) != 3:
            raise RenderError(f"{path}: PALETTE COLOR without a complete {colour} Palette Color Lookup Table "
                              f"Descriptor (0028,110x) and Data (0028,120x) (PS3.3 C.7.6.3.1.5)")
        entries, first, bits = (int(v) for v in desc)
        # The descriptor's VR is US or SS by Pixel Representation; the number of entries is
        # always unsigned (0 = 65536), the first value mapped is signed for signed pixels.
        entries &= 0xFFFF
        first = first - 0x10000 if signed and first > 0x7FFF else (first & 0xFFFF if not signed else first)
        raw = bytes(data)
        tables.append((entries, first, bits, raw if little else _swap16(raw)))
    return tables


def _overlays(ds: Any, path: Path, pixel_bits: int) -> list[dict[str, Any]]:
    """Overlay planes (60xx, PS3.3 C.9.2) of ``ds``: groups 6000..601E with Overlay Rows."""
    out = []
    for group in range(0x6000, 0x6020, 2):
        if (group, 0x0010) not in ds:
            continue
        name = f"overlay {group:04X}"

        def value(elem: int, default: Any = None, n: int = 1) -> Any:
            e = ds.get((group, elem))
            if e is None or e.value in (None, b"", ""):
                return default
            v = e.value
            if isinstance(v, (bytes, bytearray)):  # read as UN/OB: little-endian US/SS words
                v = list(struct.unpack(f"<{len(v) // 2}h" if elem == 0x0050 else f"<{len(v) // 2}H", v))
            vals = list(v) if hasattr(v, "__len__") and not isinstance(v, str) else [v]
            if len(vals) < n:
                raise RenderError(f"{path}: {name}: ({group:04X},{elem:04X}) has {len(vals)} value(s), needs {n}")
            return [int(x) for x in vals[:n]] if n > 1 else int(vals[0])

        try:
            rows, cols = value(0x0010), value(0x0011)
            origin = value(0x0050, [1, 1], 2)
            bits, position = value(0x0100, 1), value(0x0102, 0)
            frames, frame_origin = value(0x0015, 1), value(0x0051, 1)
        except (TypeError, ValueError) as exc:
            raise RenderError(f"{path}: {name}: unreadable attribute ({exc})") from None
        data = ds.get((group, 0x3000))
        if data is None and bits == 1:
            raise RenderError(f"{path}: {name} has Overlay Rows but no Overlay Data (60xx,3000) (PS3.3 C.9.2)")
        if data is None and bits != pixel_bits:
            raise RenderError(f"{path}: {name} without Overlay Data must be in the Pixel Data's unused bits: "
                              f"Overlay Bits Allocated {bits} ≠ Bits Allocated {pixel_bits} (PS3.3 C.9.2.1.3)")
        out.append(dict(name=name, rows=rows, cols=cols, origin=origin, bits=bits, position=position,
                        frames=max(frames, 1), frame_origin=frame_origin,
                        data=None if data is None else bytes(data.value)))
    return out


def _frame_overlays(overlays: list[dict[str, Any]], n: int, chunk: bytes, little: bool) -> list[tuple]:
    """The renderer's overlay tuples for frame ``n`` (0-based): a plane applies to frames
    Image Frame Origin … + Number of Frames in Overlay − 1 (60xx,0051 / 0015, both 1 when absent),
    its frame k starting at overlay pixel k × rows × columns; a plane without Overlay Data is
    the frame's own samples (the retired overlay in unused high bits of Pixel Data)."""
    out = []
    for o in overlays:
        k = n - (o["frame_origin"] - 1)
        if not 0 <= k < o["frames"]:
            continue
        if o["data"] is None:
            data, first = chunk, 0
        else:
            data, first = o["data"], k * o["rows"] * o["cols"]
            # OW overlay data in big endian: words swapped back to the little-endian bit order.
            if not little and o["bits"] in (1, 16):
                data = _swap16(data)
        out.append((o["rows"], o["cols"], o["origin"][0], o["origin"][1], o["bits"], o["position"], data, first))
    return out


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
    planar = int(ds.get("PlanarConfiguration", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    data = bytes(ds.PixelData)
    little = syntax.is_little_endian if syntax is not None else True
    palette = None
    index = "u8" if bits == 8 else ("i16" if signed else "u16")
    if spp == 1 and photometric in ("MONOCHROME1", "MONOCHROME2") and bits in (8, 16):
        kind = index
    elif spp == 1 and photometric == "PALETTE COLOR" and bits in (8, 16):
        kind, palette = index, _palette(ds, path, signed, little)
    elif spp == 3 and photometric == "RGB" and bits == 8:
        kind = "rgb8"
    elif spp == 3 and photometric == "YBR_FULL" and bits == 8:
        kind = "ybr_full"
    elif spp == 3 and photometric == "YBR_FULL_422" and bits == 8:
        if planar != 0:  # PS3.3 C.7.6.3.1.3: YBR_FULL_422 is always colour-by-pixel
            raise RenderError(f"{path}: YBR_FULL_422 with Planar Configuration {planar} (must be 0)")
        kind = "ybr_full_422"
    else:
        raise RenderError(f"{path}: {photometric} with {spp} samples of {bits} bits is not rendered yet "
                          "(MONOCHROME1/2 and PALETTE COLOR 8 or 16 bits, RGB, YBR_FULL and YBR_FULL_422 "
                          "8 bits are)")
    # YBR_FULL_422 holds two samples per pixel: Y for each, Cb and Cr shared by a pair.
    frame_len = rows * cols * (2 if kind == "ybr_full_422" else spp) * (bits // 8)
    if len(data) < frame_len * frames:
        raise RenderError(f"{path}: pixel data holds {len(data)} bytes, {frames} frame(s) need {frame_len * frames}")
    overlays = _overlays(ds, path, bits) if settings.overlays else []
    slope = _first(ds.get("RescaleSlope")) or 1.0
    intercept = _first(ds.get("RescaleIntercept")) or 0.0
    center = width = None
    if settings.window == "object" and palette is None:
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
        if center is None or width is None or width < 1:
            center = width = None
    # Colour sources give RGB; a grayscale printer gets their luma when the sheet is composed
    # (compose_sheet: ITU-R BT.601, Y = 0.299 R + 0.587 G + 0.114 B).
    channels = 3 if (spp == 3 or palette is not None) else 1
    out_w, out_h = (rows, cols) if settings.rotate in (90, 270) else (cols, rows)
    out = []
    for n in range(frames):
        chunk = data[n * frame_len:(n + 1) * frame_len]
        if bits == 16 and not little:
            chunk = _swap16(chunk)
        if kind in ("rgb8", "ybr_full") and planar == 1:
            chunk = _interleave(chunk, rows * cols)
        try:
            pixels = render_frame(chunk, rows, cols, samples=kind, bits_stored=stored if bits == 16 else None,
                                  rescale_slope=slope, rescale_intercept=intercept,
                                  window_center=center, window_width=width,
                                  monochrome1=photometric == "MONOCHROME1",
                                  reverse=settings.polarity == "REVERSE", palette=palette,
                                  overlays=_frame_overlays(overlays, n, chunk, little), rotate=settings.rotate)
        except ImagingError as exc:
            raise RenderError(f"{path}: {exc}") from None
        out.append(Picture(out_w, out_h, channels, pixels,
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
