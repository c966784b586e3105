#!/usr/bin/env python3
"""Print renderer (issue 14): one 4x5 film of 512x512 CT slices on a 14x17 in sheet at 300 dpi
(4200 x 5100 pixels), grayscale and colour, with each magnification method, rendered by

rust:  what the print plugin does (``gateway_plugins.print_render``): ``gateway._rust.render_frame``
       for each frame (rescale -> VOI window -> 8 bits -> MONOCHROME1/polarity), then
       ``plan_films`` (``layout_boxes`` + ``compose_sheet``: fit each image into its box with
       REPLICATE / BILINEAR / CUBIC / NONE, borders and empty-image density, one sheet as bytes);
numpy: the same pipeline written with numpy (rescale, PS3.3 C.11.2.1.2 window, 8 bits, in
       float32 on the whole frame) and Pillow for the resampling (NEAREST / BILINEAR / BICUBIC,
       which is Keys' a = -0.5 like ours), composed into a numpy sheet, ``tobytes()`` at the end
       (both pipelines hand over the sheet as ``bytes``, as the N-SET needs it).

Input: 20 int16 CT slices made with numpy (seeded, so every run is the same): an elliptical body
with lungs, spine and noise, stored = (HU - intercept) / slope with slope 1, intercept -1024,
window 40/400 (the object's window, as ``window = "object"`` takes it). Colour: 20 RGB
512x512 frames (a hot-iron pseudo-colour of the same slices), rendered on a colour (RGB) sheet.
Sheet: STANDARD\\4,5, border 0.05 in (15 px, BLACK), empty-image density WHITE (so the letterbox
and the layout are part of the comparison), polarity NORMAL.

Before timing, both pipelines' sheets are compared per method (max and mean absolute difference,
pixels that differ; for colour, per pixel over the channels); NONE must be identical, and
REPLICATE identical except on the "tie lines" (``tie_lines``: 2 rows and 2 columns of each image,
where a pixel centre falls exactly on a source pixel boundary and either neighbour is right).
BILINEAR differs by at most 1 (rounding: Pillow is fixed point); CUBIC by more near sharp edges
because Pillow rounds and clips the horizontal pass to 8 bits before the vertical one (Catmull-Rom
overshoot is cut in between), while ours keeps the intermediate in f32 (checked by hand against
a float64 matrix model of both: ours equal to the unclipped model, Pillow within 1 of the clipped one). Timing: median over ``--runs`` of the
wall time per sheet, the two pipelines alternating, after one warm-up sheet each. Then a
per-stage breakdown: rescale/VOI of the 20 frames, the resampling of the 20 images into their
boxes, and the composition of the sheet, each timed on its own.

Pillow is not a dependency of the gateway (the preview PNG encoder is zlib-only); for this
benchmark only: ``pip install pillow`` (13.0.0 was used).

    python bench/render.py [--runs 9] [--stage-runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from PIL import Image

from gateway._rust import compose_sheet, layout_boxes, render_frame
from gateway_plugins.print_config import PrinterSettings
from gateway_plugins.print_render import Picture, density_value, plan_films, sheet_size

ROWS = COLS = 512
FRAMES = 20
FORMAT = "STANDARD\\4,5"
FILM, ORIENTATION, DPI = "14INX17IN", "PORTRAIT", 300
SLOPE, INTERCEPT, CENTER, WIDTH = 1.0, -1024.0, 40.0, 400.0
METHODS = ["REPLICATE", "BILINEAR", "CUBIC", "NONE"]
PIL_FILTER = {"REPLICATE": Image.Resampling.NEAREST, "BILINEAR": Image.Resampling.BILINEAR,
              "CUBIC": Image.Resampling.BICUBIC}
GOAL_MS, GOAL_RATIO = 100.0, 5.0


# ---- input -----------------------------------------------------------------------------------

def ct_slices() -> list[bytes]:
    """20 deterministic 512x512 int16 CT slices (little-endian stored values)."""
    rng = np.random.default_rng(14)
    yy, xx = np.mgrid[0:ROWS, 0:COLS].astype(np.float32)
    xx, yy = (xx - COLS / 2) / (COLS / 2), (yy - ROWS / 2) / (ROWS / 2)
    out = []
    for z in range(FRAMES):
        s = 1.0 + 0.1 * np.sin(z / 3)
        hu = np.full((ROWS, COLS), -1000.0, np.float32)                         # air
        hu[(xx / (0.85 * s)) ** 2 + (yy / (0.62 * s)) ** 2 <= 1] = 40.0          # soft tissue
        m = (xx / 0.8) ** 2 + (yy / 0.57) ** 2 <= 1
        hu[m] -= 60 * (xx[m] ** 2 + yy[m] ** 2)                                   # fat gradient
        for cx in (-0.38, 0.38):                                                  # lungs
            hu[((xx - cx) / (0.27 * s)) ** 2 + ((yy + 0.05) / (0.38 * s)) ** 2 <= 1] = -820.0
        hu[(xx / 0.1) ** 2 + ((yy - 0.42) / 0.09) ** 2 <= 1] = 900.0 + 20 * z    # vertebra
        hu[((xx + 0.1) / 0.16) ** 2 + ((yy + 0.1) / 0.13) ** 2 <= 1] = 55.0       # heart
        hu += rng.normal(0, 12, hu.shape).astype(np.float32)
        stored = np.clip(np.rint((hu - INTERCEPT) / SLOPE), -32768, 32767).astype("<i2")
        out.append(stored.tobytes())
    return out


def rgb_frames(slices: list[bytes]) -> list[bytes]:
    """20 deterministic 512x512 RGB frames: a hot-iron pseudo-colour of the slices (window 0/2000)."""
    out = []
    for raw in slices:
        hu = np.frombuffer(raw, "<i2").astype(np.float32) * SLOPE + INTERCEPT
        g = np.clip((hu + 1000) * (765 / 2000), 0, 765)
        rgb = np.stack([np.clip(g, 0, 255), np.clip(g - 255, 0, 255), np.clip(g - 510, 0, 255)], axis=-1)
        out.append(rgb.astype(np.uint8).reshape(ROWS, COLS, 3).tobytes())
    return out


def settings(method: str, color: bool) -> PrinterSettings:
    return PrinterSettings(ae_title="BENCH", host="127.0.0.1", port=104, color=color, resolution=DPI,
                           compose="sheet", display_format=FORMAT, film_size=FILM, orientation=ORIENTATION,
                           magnification=method, border_density="BLACK", empty_image_density="WHITE",
                           polarity="NORMAL", border=0.05, window="object")


# ---- rust: the print plugin's path -------------------------------------------------------------

def rust_render(frames: list[bytes], color: bool) -> list[Picture]:
    """As ``print_render._frames_of`` calls the renderer, without the pydicom file read."""
    if color:
        return [Picture(COLS, ROWS, 3, render_frame(f, ROWS, COLS, samples="rgb8"), "bench") for f in frames]
    return [Picture(COLS, ROWS, 1, render_frame(f, ROWS, COLS, samples="i16", bits_stored=16,
                                                rescale_slope=SLOPE, rescale_intercept=INTERCEPT,
                                                window_center=CENTER, window_width=WIDTH,
                                                monochrome1=False, reverse=False), "bench")
            for f in frames]


def rust_compose(pictures: list[Picture], s: PrinterSettings) -> bytes:
    (film,) = plan_films(pictures, s, display_format=FORMAT, film_size=FILM, orientation=ORIENTATION)
    return film.sheet.pixels


def rust_sheet(frames: list[bytes], s: PrinterSettings) -> bytes:
    return rust_compose(rust_render(frames, s.color), s)


# ---- numpy + Pillow: the same pipeline -----------------------------------------------------------

def np_display(raw: bytes) -> np.ndarray:
    """Rescale, VOI window (PS3.3 C.11.2.1.2), 8 bits; MONOCHROME2, polarity NORMAL: no inversion."""
    x = np.frombuffer(raw, "<i2").reshape(ROWS, COLS).astype(np.float32)
    x *= SLOPE
    x += INTERCEPT - (CENTER - 0.5)
    x *= 255.0 / (WIDTH - 1.0)
    x += 127.5
    np.clip(x, 0, 255, out=x)
    return np.rint(x).astype(np.uint8)


def np_render(frames: list[bytes], color: bool) -> list[np.ndarray]:
    if color:  # RGB stays RGB; polarity NORMAL
        return [np.frombuffer(f, np.uint8).reshape(ROWS, COLS, 3) for f in frames]
    return [np_display(f) for f in frames]


def _split(total: int, n: int, border: int) -> list[tuple[int, int]]:
    free = total - border * (n + 1)
    cell = free // n
    offset = (free - cell * n) // 2
    return [(offset + border + i * (cell + border), cell) for i in range(n)]


def np_layout(width: int, height: int, border: int) -> list[tuple[int, int, int, int]]:
    cols, rows = (int(v) for v in FORMAT.split("\\")[1].split(","))
    return [(x, y, w, h) for y, h in _split(height, rows, border) for x, w in _split(width, cols, border)]


def fitted(w: int, h: int, bw: int, bh: int) -> tuple[int, int]:
    if bw * h <= bh * w:
        return bw, min(max((2 * h * bw + w) // (2 * w), 1), bh)
    return min(max((2 * w * bh + h) // (2 * h), 1), bw), bh


def pil_resample(img: np.ndarray, bw: int, bh: int, method: str) -> np.ndarray:
    if method == "NONE":
        return img
    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize(fitted(w, h, bw, bh), PIL_FILTER[method]))


def np_compose(images: list[np.ndarray], rects, size: tuple[int, int], channels: int,
               border_value: int, empty_value: int) -> bytes:
    width, height = size
    sheet = np.full((height, width, channels) if channels == 3 else (height, width), border_value, np.uint8)
    for img, (x, y, bw, bh) in zip(images, rects):
        sheet[y:y + bh, x:x + bw] = empty_value
        h, w = img.shape[:2]
        cw, ch = min(w, bw), min(h, bh)
        sx, sy, dx, dy = (w - cw) // 2, (h - ch) // 2, x + (bw - cw) // 2, y + (bh - ch) // 2
        sheet[dy:dy + ch, dx:dx + cw] = img[sy:sy + ch, sx:sx + cw]
    return sheet.tobytes()


class NumpyPipeline:
    def __init__(self, s: PrinterSettings):
        self.s = s
        self.size = sheet_size(s, FILM, ORIENTATION)
        self.rects = np_layout(*self.size, round(s.border * s.resolution))
        self.border_value = density_value(s.border_density, s)
        self.empty_value = density_value(s.empty_image_density, s)
        self.channels = 3 if s.color else 1

    def resample(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [pil_resample(img, bw, bh, self.s.magnification) for img, (_, _, bw, bh) in zip(images, self.rects)]

    def compose(self, images: list[np.ndarray]) -> bytes:
        return np_compose(images, self.rects, self.size, self.channels, self.border_value, self.empty_value)

    def sheet(self, frames: list[bytes]) -> bytes:
        return self.compose(self.resample(np_render(frames, self.s.color)))


# ---- measuring ------------------------------------------------------------------------------------

def ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def alternating(fa, fb, runs: int) -> tuple[float, float]:
    """Median ms of fa and fb, run alternately (the shared machine's load hits both alike)."""
    fa(), fb()
    ta, tb = [], []
    for _ in range(runs):
        for fn, acc in ((fa, ta), (fb, tb)):
            t = time.perf_counter()
            fn()
            acc.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ta), statistics.median(tb)


def tie_lines(src: int, dst: int) -> list[int]:
    """Output pixels whose centre maps exactly onto a source pixel boundary, (d + 0.5) * src / dst an
    integer: nearest neighbour may take either pixel, and Pillow (an accumulated float step) and we
    ((d + 0.5) * scale) round those the opposite ways. 512 -> 1002: d = 250 and 751."""
    return [d for d in range(dst) if ((2 * d + 1) * src) % (2 * dst) == 0]


def tie_mask(npp: NumpyPipeline) -> np.ndarray:
    mask = np.zeros((npp.size[1], npp.size[0]), bool)
    if npp.s.magnification != "REPLICATE":
        return mask
    for x, y, bw, bh in npp.rects:
        dw, dh = fitted(COLS, ROWS, bw, bh)
        dx, dy = x + (bw - dw) // 2, y + (bh - dh) // 2
        for c in tie_lines(COLS, dw):
            mask[dy:dy + dh, dx + c] = True
        for r in tie_lines(ROWS, dh):
            mask[dy + r, dx:dx + dw] = True
    return mask


def check(frames_gray: list[bytes], frames_rgb: list[bytes]) -> list[tuple]:
    """Both pipelines' outputs side by side, before anything is timed."""
    rows = []
    # The display step alone (no resampling): rescale/VOI/8-bit must agree.
    d = max(int(np.abs(np.frombuffer(render_frame(f, ROWS, COLS, samples="i16", bits_stored=16,
                                                  rescale_slope=SLOPE, rescale_intercept=INTERCEPT,
                                                  window_center=CENTER, window_width=WIDTH),
                                     np.uint8).astype(int) - np_display(f).reshape(-1).astype(int)).max())
            for f in frames_gray)
    assert d <= 1, f"rescale/VOI differ by {d}"
    for color, frames in ((False, frames_gray), (True, frames_rgb)):
        for method in METHODS:
            s = settings(method, color)
            npp = NumpyPipeline(s)
            assert npp.rects == [tuple(r) for r in layout_boxes(FORMAT, *npp.size, round(s.border * s.resolution))]
            a = np.frombuffer(rust_sheet(frames, s), np.uint8)
            b = np.frombuffer(npp.sheet(frames), np.uint8)
            assert a.size == b.size == npp.size[0] * npp.size[1] * npp.channels
            diff = np.abs(a.astype(np.int16) - b.astype(np.int16)).reshape(npp.size[1], npp.size[0], -1).max(axis=2)
            off_ties = int(diff[~tie_mask(npp)].max())
            rows.append(("colour" if color else "grayscale", method, int(diff.max()), off_ties, float(diff.mean()),
                         float((diff > 0).mean() * 100), int((diff > 1).sum())))
            if method in ("REPLICATE", "NONE"):
                assert off_ties == 0, f"{method} {'colour' if color else 'gray'}: sheets differ by {off_ties}"
    return rows


def stages(frames: list[bytes], s: PrinterSettings, runs: int) -> dict[str, tuple[float, float]]:
    """ms per sheet of each stage, (rust, numpy/Pillow), each timed alone."""
    npp = NumpyPipeline(s)
    ch, border = npp.channels, round(s.border * s.resolution)
    pics = rust_render(frames, s.color)
    arrays = np_render(frames, s.color)
    fitted_arrays = npp.resample(arrays)

    # The same images already at their fitted size (1002 x 1002): compose_sheet then copies them
    # into their boxes without resampling (fit() returns a clone when the size is right).
    prefitted = [(a.shape[1], a.shape[0], ch, np.ascontiguousarray(a).tobytes()) for a in fitted_arrays]
    sheet_args = dict(width=npp.size[0], height=npp.size[1], channels=ch, format=FORMAT, border=border,
                      border_value=npp.border_value, empty_value=npp.empty_value, magnification=s.magnification)

    out = {}
    out["rescale/VOI/8-bit, 20 frames"] = (ms(lambda: rust_render(frames, s.color), runs),
                                           ms(lambda: np_render(frames, s.color), runs))
    total = ms(lambda: rust_compose(pics, s), runs)
    compose = ms(lambda: compose_sheet(prefitted, **sheet_args), runs)
    out["resample 20 images (rust: whole compose minus compose of pre-fitted images)"] = (
        max(total - compose, 0.0), ms(lambda: npp.resample(arrays), runs))
    out["compose: sheet + box fill, paste, to bytes (pre-fitted images)"] = (
        compose, ms(lambda: npp.compose(fitted_arrays), runs))
    out["  of which an empty sheet (compose_sheet of 20 empty boxes)"] = (
        ms(lambda: compose_sheet([None] * FRAMES, **sheet_args), runs), float("nan"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=9, help="timed sheets per pipeline and case (median)")
    ap.add_argument("--stage-runs", type=int, default=5, help="timed runs per stage in the breakdown")
    ap.add_argument("--no-stages", action="store_true", help="skip the per-stage breakdown")
    args = ap.parse_args()

    gray = ct_slices()
    rgb = rgb_frames(gray)
    w, h = sheet_size(settings("CUBIC", False), FILM, ORIENTATION)
    print(f"4x5 film ({FORMAT}) of {FRAMES} 512x512 frames on {FILM} at {DPI} dpi: {w} x {h} px sheet, "
          f"box {NumpyPipeline(settings('CUBIC', False)).rects[0][2:]} px, image fitted to "
          f"{fitted(COLS, ROWS, *NumpyPipeline(settings('CUBIC', False)).rects[0][2:])}\n")

    print("output check, rust sheet vs numpy/Pillow sheet (rescale/VOI alone: identical within 1):\n")
    print("| sheet | magnification | max abs diff | max abs diff off tie lines | mean abs diff | "
          "pixels differing % | pixels differing by > 1 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for kind, method, dmax, dties, dmean, pct, big in check(gray, rgb):
        print(f"| {kind} | {method} | {dmax} | {dties} | {dmean:.4f} | {pct:.3f} | {big} |")

    print(f"\nms per sheet, median of {args.runs} (pipelines alternating):\n")
    print("| sheet | magnification | rust ms | numpy/Pillow ms | numpy/Pillow ÷ rust | < 100 ms | ≥ 5x |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    results = {}
    for color, frames in ((False, gray), (True, rgb)):
        for method in METHODS:
            s = settings(method, color)
            npp = NumpyPipeline(s)
            t_rust, t_np = alternating(lambda: rust_sheet(frames, s), lambda: npp.sheet(frames), args.runs)
            results[(color, method)] = (t_rust, t_np)
            kind = "colour" if color else "grayscale"
            ms_goal = ("yes" if t_rust < GOAL_MS else "**no**") if not color else "(gray only)"
            print(f"| {kind} | {method} | {t_rust:.1f} | {t_np:.1f} | {t_np / t_rust:.2f}x | {ms_goal} | "
                  f"{'yes' if t_np / t_rust >= GOAL_RATIO else '**no**'} |", flush=True)

    if args.no_stages:
        return
    print(f"\nper-stage breakdown, ms per sheet (median of {args.stage_runs}; each stage timed alone; rust "
          "resampling = compose_sheet of the 512x512 frames minus compose_sheet of the same frames pre-fitted "
          "to 1002x1002):\n")
    print("| sheet | magnification | stage | rust ms | numpy/Pillow ms |")
    print("| --- | --- | --- | --- | --- |")
    for color, frames in ((False, gray), (True, rgb)):
        for method in METHODS:
            for stage, (a, b) in stages(frames, settings(method, color), args.stage_runs).items():
                print(f"| {'colour' if color else 'grayscale'} | {method} | {stage} | {a:.1f} | "
                      f"{'' if b != b else f'{b:.1f}'} |", flush=True)


if __name__ == "__main__":
    main()
