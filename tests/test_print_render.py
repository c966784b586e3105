"""The print renderer's inputs beyond MONOCHROME/RGB (issue 14; seed 003 Appendix B: the
formatter applies the viewing transformations and overlays before sending): PALETTE COLOR
(PS3.3 C.7.6.3.1.5/6), YBR_FULL / YBR_FULL_422 (C.7.6.3.1.2), overlay planes (C.9.2) and the
printer's ``rotate``, through ``print_render.load_pictures`` (pydicom read → Rust renderer).

Each is checked against an independent numpy reference computed here: pydicom's
``apply_color_lut`` and ``convert_color_space``, and overlays drawn by hand with numpy.
Palette pixels and overlays must be exact; YBR → RGB may differ by 1 (ours rounds float32,
pydicom float64)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydantic import ValidationError
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, convert_color_space
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from gateway_plugins.print_config import PrinterSettings
from gateway_plugins.print_render import RenderError, load_pictures, plan_films

YBR_TOLERANCE = 1  # float32 vs pydicom's float64 matrix: a rounding step at most


def _settings(**kw) -> PrinterSettings:
    base = dict(ae_title="T", host="127.0.0.1", port=104)
    return PrinterSettings(**{**base, **kw})


def _write(tmp_path: Path, name: str, pixels: np.ndarray, photometric: str, **attrs) -> Path:
    """An uncompressed Secondary Capture file with ``pixels`` (rows, cols[, 3]) as Pixel Data."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes() if "PixelData" not in attrs else attrs["PixelData"]
    path = tmp_path / f"{name}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _one(path: Path, **kw):
    (pic,) = load_pictures([path], _settings(**kw), sort=False)
    return pic


def _as_array(pic) -> np.ndarray:
    a = np.frombuffer(pic.pixels, np.uint8)
    return a.reshape(pic.height, pic.width, 3) if pic.channels == 3 else a.reshape(pic.height, pic.width)


def _palette_attrs(entries: int, first: int, bits: int, tables: list[np.ndarray]) -> dict:
    out = {}
    for colour, t in zip(("Red", "Green", "Blue"), tables):
        out[f"{colour}PaletteColorLookupTableDescriptor"] = [entries % 65536, first, bits]
        out[f"{colour}PaletteColorLookupTableData"] = t.astype("<u2" if bits == 16 else "u1").tobytes()
    return out


# ---- PALETTE COLOR (PS3.3 C.7.6.3.1.5/6) ------------------------------------------------------

def test_palette_8bit_equals_apply_color_lut(tmp_path):
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 256, (17, 23), dtype=np.uint8)
    tables = [rng.integers(0, 256, 256, dtype=np.uint8) for _ in range(3)]
    path = _write(tmp_path, "pal8", idx, "PALETTE COLOR", **_palette_attrs(256, 0, 8, tables))
    pic = _one(path, color=True)
    ref = apply_color_lut(idx, pydicom.dcmread(path))
    assert ref.dtype == np.uint8 and (pic.width, pic.height, pic.channels) == (23, 17, 3)
    np.testing.assert_array_equal(_as_array(pic), ref)  # exact


def test_palette_16bit_entries_first_mapped_and_clamping(tmp_path):
    """16-bit pixels, a 300-entry 16-bit table starting at 1000: values below take the first
    entry, above the last (PS3.3 C.7.6.3.1.5); entries scaled to 8 bits as round(v / 257)."""
    rng = np.random.default_rng(2)
    idx = rng.integers(900, 1400, (20, 16), dtype=np.uint16)
    tables = [rng.integers(0, 65536, 300, dtype=np.uint16) for _ in range(3)]
    path = _write(tmp_path, "pal16", idx, "PALETTE COLOR", **_palette_attrs(300, 1000, 16, tables))
    ref16 = apply_color_lut(idx, pydicom.dcmread(path))
    assert ref16.dtype == np.uint16
    ref = np.rint(ref16 / 257.0).astype(np.uint8)
    got = _as_array(_one(path, color=True))
    np.testing.assert_array_equal(got, ref)  # exact: v / 257 is never half-way for integer v
    assert (idx < 1000).any() and (idx >= 1300).any()  # both clamps exercised


def test_palette_on_grayscale_printer_is_bt601_luma(tmp_path):
    """A grayscale printer gets luma of the palette's RGB: Y = (299 R + 587 G + 114 B) / 1000, rounded."""
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    tables = [rng.integers(0, 256, 256, dtype=np.uint8) for _ in range(3)]
    path = _write(tmp_path, "palgray", idx, "PALETTE COLOR", **_palette_attrs(256, 0, 8, tables))
    rgb = apply_color_lut(idx, pydicom.dcmread(path)).astype(np.int64)
    luma = ((299 * rgb[..., 0] + 587 * rgb[..., 1] + 114 * rgb[..., 2] + 500) // 1000).astype(np.uint8)
    s = _settings(color=False, magnification="NONE", border=0, resolution=10, film_size="8INX10IN",
                  empty_image_density="WHITE")
    pics = load_pictures([path], s, sort=False)
    (film,) = plan_films(pics, s, display_format="STANDARD\\1,1", film_size="8INX10IN", orientation="PORTRAIT")
    sheet = np.frombuffer(film.sheet.pixels, np.uint8).reshape(film.sheet.height, film.sheet.width)
    x, y = (film.sheet.width - 8) // 2, (film.sheet.height - 8) // 2  # NONE: centred, not resampled
    np.testing.assert_array_equal(sheet[y:y + 8, x:x + 8], luma)
    assert (sheet[:y] == 255).all()  # the rest is the empty-image value


def test_palette_errors(tmp_path):
    idx = np.zeros((2, 2), np.uint8)
    t = [np.zeros(10, np.uint8)] * 3
    short = _write(tmp_path, "short", idx, "PALETTE COLOR", **_palette_attrs(256, 0, 8, t))
    with pytest.raises(RenderError, match="red palette data holds 10 bytes, a 256-entry table"):
        _one(short, color=True)
    attrs = _palette_attrs(10, 0, 8, t)
    del attrs["BluePaletteColorLookupTableData"]
    missing = _write(tmp_path, "missing", idx, "PALETTE COLOR", **attrs)
    with pytest.raises(RenderError, match="without a complete Blue Palette"):
        _one(missing, color=True)
    bits = _write(tmp_path, "bits", idx, "PALETTE COLOR", **_palette_attrs(10, 0, 8, t) | {
        "RedPaletteColorLookupTableDescriptor": [10, 0, 12]})
    with pytest.raises(RenderError, match="12 bits per entry, expected 8 or 16"):
        _one(bits, color=True)
    seg = {k.replace("PaletteColorLookupTableData", "PaletteColorLookupTableDescriptor"): v
           for k, v in _palette_attrs(10, 0, 8, t).items() if "Descriptor" in k}
    seg |= {f"Segmented{c}PaletteColorLookupTableData": b"\x00\x00\x01\x00" for c in ("Red", "Green", "Blue")}
    segmented = _write(tmp_path, "seg", idx, "PALETTE COLOR", **seg)
    with pytest.raises(RenderError, match="segmented palette colour LUTs"):
        _one(segmented, color=True)


# ---- YBR_FULL / YBR_FULL_422 (PS3.3 C.7.6.3.1.2) -----------------------------------------------

def _rgb_image(rows: int = 24, cols: int = 32) -> np.ndarray:
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8)
    img[0, :8] = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0], [255, 255, 255], [128, 128, 128],
                  [255, 255, 0], [0, 255, 255]]
    return img


@pytest.mark.parametrize("planar", [0, 1])
def test_ybr_full_equals_convert_color_space(tmp_path, planar):
    ybr = convert_color_space(_rgb_image(), "RGB", "YBR_FULL")
    data = ybr.transpose(2, 0, 1).tobytes() if planar else ybr.tobytes()
    path = _write(tmp_path, f"ybr{planar}", ybr, "YBR_FULL", PlanarConfiguration=planar, PixelData=data)
    ref = convert_color_space(ybr, "YBR_FULL", "RGB").astype(int)
    got = _as_array(_one(path, color=True)).astype(int)
    assert np.abs(got - ref).max() <= YBR_TOLERANCE
    # neutral colours must come back exactly (Cb = Cr = 128 leaves Y untouched)
    np.testing.assert_array_equal(got[0, 3:6], [[0, 0, 0], [255, 255, 255], [128, 128, 128]])


def test_ybr_full_422_expands_chroma_pairs(tmp_path):
    """YBR_FULL_422: Y1 Y2 Cb Cr per horizontal pair; the reference repeats each pair's chroma
    (numpy) and converts the full-resolution YBR with pydicom."""
    ybr = convert_color_space(_rgb_image(), "RGB", "YBR_FULL")
    rows, cols = ybr.shape[:2]
    cb = ybr[:, 0::2, 1]  # the first pixel's chroma for each pair, as a writer may choose
    cr = ybr[:, 0::2, 2]
    packed = np.stack([ybr[:, 0::2, 0], ybr[:, 1::2, 0], cb, cr], axis=-1)  # (rows, cols/2, 4)
    full = ybr.copy()
    full[..., 1], full[..., 2] = np.repeat(cb, 2, axis=1), np.repeat(cr, 2, axis=1)
    path = _write(tmp_path, "ybr422", ybr, "YBR_FULL_422", PixelData=packed.tobytes())
    ref = convert_color_space(full, "YBR_FULL", "RGB").astype(int)
    got = _as_array(_one(path, color=True)).astype(int)
    assert got.shape == (rows, cols, 3)
    assert np.abs(got - ref).max() <= YBR_TOLERANCE


def test_ybr_errors(tmp_path):
    odd = np.zeros((2, 3, 3), np.uint8)
    path = _write(tmp_path, "odd", odd, "YBR_FULL_422", PixelData=bytes(2 * 3 * 2))
    with pytest.raises(RenderError, match="even number of columns"):
        _one(path, color=True)
    path = _write(tmp_path, "p422", np.zeros((2, 2, 3), np.uint8), "YBR_FULL_422", PlanarConfiguration=1,
                  PixelData=bytes(8))
    with pytest.raises(RenderError, match="Planar Configuration 1"):
        _one(path, color=True)
    path = _write(tmp_path, "partial", np.zeros((2, 2, 3), np.uint8), "YBR_PARTIAL_420")
    with pytest.raises(RenderError, match="YBR_PARTIAL_420 with 3 samples of 8 bits is not rendered yet"):
        _one(path, color=True)


# ---- overlays (PS3.3 C.9.2) and rotation --------------------------------------------------------

def _ct(rows: int = 20, cols: int = 30) -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(0, 4096, (rows, cols), dtype=np.uint16)


def _overlay_attrs(mask: np.ndarray, origin: tuple[int, int], group: int = 0x6000) -> dict:
    """A hand-made overlay plane: ``mask`` packed LSB first (PS3.5 8.1.2)."""
    ds = Dataset()
    ds.add_new((group, 0x0010), "US", mask.shape[0])
    ds.add_new((group, 0x0011), "US", mask.shape[1])
    ds.add_new((group, 0x0040), "CS", "G")
    ds.add_new((group, 0x0050), "SS", list(origin))
    ds.add_new((group, 0x0100), "US", 1)
    ds.add_new((group, 0x0102), "US", 0)
    ds.add_new((group, 0x3000), "OW", np.packbits(mask.reshape(-1).astype(np.uint8), bitorder="little").tobytes())
    return {"_overlay": ds}


def _write_with(tmp_path, name, pixels, extra: list[Dataset], **attrs) -> Path:
    path = _write(tmp_path, name, pixels, "MONOCHROME2", WindowCenter=2048, WindowWidth=4096, **attrs)
    ds = pydicom.dcmread(path)
    for e in extra:
        for elem in e:
            ds.add(elem)
    ds.save_as(path)
    return path


def _mask(rows: int, cols: int) -> np.ndarray:
    m = np.zeros((rows, cols), bool)
    m[0, :] = m[-1, :] = m[:, 0] = m[:, -1] = True  # a frame …
    m[rows // 2, :] = True                              # … with a bar
    return m


def test_overlay_burned_in_white_at_its_origin(tmp_path):
    ct = _ct()
    mask = _mask(6, 9)
    path = _write_with(tmp_path, "ov", ct, [_overlay_attrs(mask, (4, 7))["_overlay"]])
    plain = _as_array(_one(path, overlays=False))
    ref = plain.copy()
    ref[3:3 + 6, 6:6 + 9][mask] = 255  # origin 4\7 is 1-based (PS3.3 C.9.2.1.1)
    got = _as_array(_one(path))
    np.testing.assert_array_equal(got, ref)
    assert (got != plain).any()
    # pydicom reads our hand-made plane back as the same mask
    np.testing.assert_array_equal(pydicom.dcmread(path).overlay_array(0x6000), mask.astype(np.uint8))


def test_overlay_clipped_two_planes_and_reverse(tmp_path):
    ct = _ct()
    a, b = _mask(5, 5), np.ones((3, 4), bool)
    path = _write_with(tmp_path, "ov2", ct, [_overlay_attrs(a, (-1, 28))["_overlay"],
                                             _overlay_attrs(b, (19, 1), group=0x6002)["_overlay"]])
    plain = _as_array(_one(path, overlays=False))
    ref = plain.copy()
    ref[0:3, 27:30][a[2:, :3]] = 255   # rows -2..2 and columns 27..31 of a 20×30 image: clipped
    ref[18:20, 0:4][b[:2]] = 255
    np.testing.assert_array_equal(_as_array(_one(path)), ref)
    # REVERSE inverts the film after the overlays: they print black
    np.testing.assert_array_equal(_as_array(_one(path, polarity="REVERSE")), 255 - ref)


def test_overlay_in_pixel_data_high_bits(tmp_path):
    """The retired form: Overlay Bits Allocated 16, Bit Position 15, no Overlay Data (C.9.2.1.3)."""
    ct = _ct() & 0x0FFF
    mask = np.zeros(ct.shape, bool)
    mask[5:8, 10:20] = True
    stored = ct | (mask.astype(np.uint16) << 15)
    ov = Dataset()
    for elem, vr, v in ((0x0010, "US", 20), (0x0011, "US", 30), (0x0040, "CS", "G"), (0x0050, "SS", [1, 1]),
                        (0x0100, "US", 16), (0x0102, "US", 15)):
        ov.add_new((0x6000, elem), vr, v)
    path = _write_with(tmp_path, "hb", stored, [ov], BitsStored=12, HighBit=11)
    plain = _as_array(_one(path, overlays=False))
    ref = plain.copy()
    ref[mask] = 255
    np.testing.assert_array_equal(_as_array(_one(path)), ref)
    # bits above Bits Stored are not image: the plain rendering equals the overlay-free CT's
    clean = _write_with(tmp_path, "clean", ct, [], BitsStored=12, HighBit=11)
    np.testing.assert_array_equal(plain, _as_array(_one(clean, overlays=False)))


def test_overlay_without_data_is_an_error(tmp_path):
    ov = _overlay_attrs(_mask(3, 3), (1, 1))["_overlay"]
    del ov[(0x6000, 0x3000)]
    path = _write_with(tmp_path, "nodata", _ct(), [ov])
    with pytest.raises(RenderError, match="overlay 6000 has Overlay Rows but no Overlay Data"):
        _one(path)
    _one(path, overlays=False)  # not looked at when overlays are off


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotation_after_overlay(tmp_path, degrees):
    """rotate = N: each image turned N° clockwise (np.rot90 with k = -N/90), after its overlays."""
    ct = _ct()
    path = _write_with(tmp_path, "rot", ct, [_overlay_attrs(_mask(4, 4), (2, 3))["_overlay"]])
    upright = _as_array(_one(path))
    pic = _one(path, rotate=degrees)
    assert (pic.width, pic.height) == ((20, 30) if degrees != 180 else (30, 20))
    np.testing.assert_array_equal(_as_array(pic), np.rot90(upright, k=-degrees // 90))


def test_rotation_of_colour(tmp_path):
    ybr = convert_color_space(_rgb_image(6, 8), "RGB", "YBR_FULL")
    path = _write(tmp_path, "crot", ybr, "YBR_FULL")
    upright = _as_array(_one(path, color=True))
    np.testing.assert_array_equal(_as_array(_one(path, color=True, rotate=90)), np.rot90(upright, k=-1))


def test_printer_options_validated():
    assert _settings().overlays is True and _settings().rotate == 0
    assert _settings(rotate=270, overlays=False).rotate == 270
    with pytest.raises(ValidationError, match="rotate"):
        _settings(rotate=45)
