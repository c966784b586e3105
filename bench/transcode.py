#!/usr/bin/env python3
"""Transfer-syntax conversion: our Rust engine vs pydicom vs DCMTK dcmconv.

The CT series of the full corpus (300 x 512x512 int16) in Explicit VR LE and
Explicit VR BE is converted LE->BE and BE->LE by

  (a) gateway.transcode in-process (bytes in, bytes out; file read excluded),
  (b) pydicom: dcmread, change the syntax, byte-swap pixel data with numpy, write
      to memory (what a pure-Python gateway would do),
  (c) /usr/bin/dcmconv, one process per file, file to file;

then the byte-swap kernel alone (Rust swap_copy vs numpy.byteswap vs memcpy)
on one 64 MiB buffer. MB/s are input megabytes (10^6) per second; ratio is
our engine's speed over the other's.

Build first with a release extension (``maturin develop --release``), then:

    python bench/transcode.py [--corpus DIR] [--files N]

DIR defaults to a fresh corpus in a temp dir (make_corpus.py --only CT).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

from gateway import _rust
from gateway.transcode import transcode

REPO = Path(__file__).resolve().parents[1]
GENERATOR = REPO.parent / "shared" / "corpus" / "make_corpus.py"
DCMCONV = "/usr/bin/dcmconv"


def make_corpus(root: Path) -> None:
    for syntax in ("explicit-le", "explicit-be"):
        out = root / syntax
        if not (out / "CT").exists():
            subprocess.run([sys.executable, str(GENERATOR), "--out", str(out), "--only", "CT",
                            "--syntax", syntax], check=True, capture_output=True)


def files_of(root: Path, syntax: str, n: int | None) -> list[Path]:
    files = sorted((root / syntax / "CT").glob("*.dcm"))
    return files[:n] if n else files


def run_ours(blobs: list[bytes], dst: str) -> float:
    t = time.perf_counter()
    for b in blobs:
        transcode(b, dst)
    return time.perf_counter() - t


def run_ours_files(files: list[Path], dst: str, tmp: Path) -> float:
    t = time.perf_counter()
    for i, f in enumerate(files):
        transcode(f, dst, out=tmp / f"{i}.dcm")  # read, convert, write tmp + fsync + rename
    return time.perf_counter() - t


def run_pydicom(blobs: list[bytes], dst: str, check: list[bytes] | None = None) -> float:
    big = dst == "explicit-be"
    t = time.perf_counter()
    for b in blobs:
        ds = pydicom.dcmread(io.BytesIO(b))
        arr = np.frombuffer(ds.PixelData, dtype=">u2" if not big else "<u2")
        ds.PixelData = arr.byteswap().tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian if big else ExplicitVRLittleEndian
        out = io.BytesIO()
        pydicom.dcmwrite(out, ds, little_endian=not big, implicit_vr=False, enforce_file_format=True)
        if check is not None:
            check.append(out.getvalue())
    return time.perf_counter() - t


def run_dcmconv(files: list[Path], dst: str, tmp: Path) -> float:
    flag = "+tb" if dst == "explicit-be" else "+te"
    t = time.perf_counter()
    for i, f in enumerate(files):
        subprocess.run([DCMCONV, flag, str(f), str(tmp / f"{i}.dcm")], check=True)
    return time.perf_counter() - t


def best(fn, repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="directory with explicit-le/CT and explicit-be/CT")
    ap.add_argument("--files", type=int, default=None, help="use only the first N files")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    tmpdir = Path(tempfile.mkdtemp(prefix="bench-transcode-"))
    root = a.corpus or tmpdir / "corpus"
    make_corpus(root)
    print(f"engine: gateway._rust ({_rust.__file__}), pydicom {pydicom.__version__}, numpy {np.__version__}")
    rows = []
    for src, dst in (("explicit-le", "explicit-be"), ("explicit-be", "explicit-le")):
        files = files_of(root, src, a.files)
        blobs = [f.read_bytes() for f in files]
        mb = sum(map(len, blobs)) / 1e6
        # correctness first: both engines give the corpus file of the other syntax
        got: list[bytes] = []
        run_pydicom(blobs[:2], dst, got)
        for f, g in zip(files[:2], got):
            expected = (root / dst / "CT" / f.name).read_bytes()
            meta = pydicom.dcmread(f, stop_before_pixels=True).file_meta
            ours = transcode(f, dst, implementation_class_uid=meta.ImplementationClassUID,
                             implementation_version_name=meta.ImplementationVersionName)
            assert ours == expected, f"our engine differs for {f.name}"
            assert g[-1000:] == expected[-1000:], f"pydicom path differs for {f.name}"
        t_ours = best(lambda: run_ours(blobs, dst), a.repeat)
        t_py = best(lambda: run_pydicom(blobs, dst), max(1, a.repeat - 1))
        out = tmpdir / "ours"
        out.mkdir(exist_ok=True)
        t_files = run_ours_files(files, dst, out)
        shutil.rmtree(out)
        t_dcm = None
        if os.path.exists(DCMCONV):
            out = tmpdir / "dcmconv"
            out.mkdir(exist_ok=True)
            t_dcm = run_dcmconv(files, dst, out)
            shutil.rmtree(out)
        rows.append((f"{src} -> {dst}", len(files), mb, t_ours, t_files, t_py, t_dcm))

    print()
    print("ours: bytes -> bytes in-process; ours files: path -> path (fsync each); pydicom: in memory;")
    print("dcmconv: one process per file, file -> file. x = ours (bytes) over the other; x files = ours files over dcmconv")
    print(f"{'direction':<28} {'files':>5} {'MB':>7} {'ours MB/s':>10} {'ours files':>11} {'pydicom':>8} "
          f"{'dcmconv':>8} {'x pydicom':>10} {'x dcmconv':>10} {'x files':>8}")
    for name, n, mb, t_o, t_f, t_p, t_d in rows:
        d = f"{mb / t_d:8.0f}" if t_d else f"{'n/a':>8}"
        xd = f"{t_d / t_o:10.1f}" if t_d else f"{'n/a':>10}"
        xf = f"{t_d / t_f:8.1f}" if t_d else f"{'n/a':>8}"
        print(f"{name:<28} {n:>5} {mb:7.1f} {mb / t_o:10.0f} {mb / t_f:11.0f} {mb / t_p:8.0f} {d} "
              f"{t_p / t_o:10.1f} {xd} {xf}")

    # The kernel alone: 64 MiB, width 2 (16-bit pixels), 4 and 8.
    size = 64 * 2**20
    buf = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    print()
    print(f"{'kernel (64 MiB)':<34} {'GB/s':>6} {'x numpy':>8} {'x memcpy':>9}")
    src_arr = np.frombuffer(buf, dtype=np.uint8)
    dst_arr = np.empty_like(src_arr)
    t_memcpy = min(_time(lambda: np.copyto(dst_arr, src_arr)) for _ in range(7))
    for width in (2, 4, 8):
        arr = np.frombuffer(buf, dtype=f"<u{width}")
        out = np.empty(arr.shape, dtype=f">u{width}")
        # fair pair: both write into a preallocated buffer
        t_rust = _rust.swap_bytes_timed(buf, width, 10)
        t_np = min(_time(lambda: np.copyto(out, arr, casting="equiv")) for _ in range(7))
        # and both allocating their result
        t_rust_alloc = min(_time(lambda: _rust.swap_bytes(buf, width)) for _ in range(5))
        t_np_alloc = min(_time(lambda: arr.byteswap()) for _ in range(5))
        u = f"u{8 * width}"
        print(f"{'rust swap_copy ' + u + ' (prealloc)':<34} {size / t_rust / 1e9:6.2f} {t_np / t_rust:8.2f} "
              f"{t_memcpy / t_rust:9.2f}")
        print(f"{'numpy copyto swap ' + u + ' (prealloc)':<34} {size / t_np / 1e9:6.2f}")
        print(f"{'rust swap_bytes() ' + u + ' (alloc)':<34} {size / t_rust_alloc / 1e9:6.2f} "
              f"{t_np_alloc / t_rust_alloc:8.2f}")
        print(f"{'numpy byteswap() ' + u + ' (alloc)':<34} {size / t_np_alloc / 1e9:6.2f}")
    print(f"{'memcpy (numpy copyto)':<34} {size / t_memcpy / 1e9:6.2f}")
    shutil.rmtree(tmpdir, ignore_errors=True)
    return 0


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())
