#!/usr/bin/env python3
"""C-STORE hot path: the per-object header work of the storage service, old vs new.

old: pydicom header parse for the index attributes (``extract_attributes``)
     + a second pydicom pass for Pixel Data (``_has_pixel_data``, as storage.py
     had it) + a separate SHA-256 read of the payload (``_digest``);
new: one Rust pass (``scan_instance``): attributes, Pixel Data, SHA-256.

On a 0.5 MB CT (512x512 int16, Explicit VR LE) and on every object of the
small test corpus (all three syntaxes), each as a bytes payload and as a file
payload (a spooled dataset). Prints microseconds per object (median of the
repetitions) and the speed-up.

    python bench/header_scan.py [--repeat N] [--corpus DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom.filereader import read_dataset

from gateway.index.attrs import extract_attributes, scan_instance

SHARED = Path(__file__).resolve().parents[2] / "shared"
EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"


# ---- the old path, as plugins/gateway_plugins/storage.py had it -------------------------

def _open(payload: bytes | Path):
    return io.BytesIO(payload) if isinstance(payload, bytes) else open(payload, "rb")


def _has_pixel_data(payload: bytes | Path, syntax: str) -> bool:
    implicit, little = syntax == IMPLICIT_LE, syntax != EXPLICIT_BE
    with _open(payload) as fh:
        read_dataset(fh, implicit, little, stop_when=lambda tag, vr, length: tag == 0x7FE00010, defer_size=256)
        tag = fh.read(4)
    if len(tag) < 4:
        return False
    return tag == (b"\xe0\x7f\x10\x00" if little else b"\x7f\xe0\x00\x10")


def _digest(payload: bytes | Path) -> str:
    h = hashlib.sha256()
    if isinstance(payload, bytes):
        h.update(payload)
    else:
        with open(payload, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def old(payload: bytes | Path, syntax: str) -> tuple:
    attrs = extract_attributes(payload, syntax)
    return attrs, _has_pixel_data(payload, syntax), _digest(payload)


def new(payload: bytes | Path, syntax: str) -> tuple:
    s = scan_instance(payload, syntax)
    return s.attrs, s.has_pixel_data, s.sha256


# ---- data ----------------------------------------------------------------------------------

def split_part10(data: bytes) -> tuple[bytes, str]:
    group_length = struct.unpack("<I", data[140:144])[0]
    meta = data[144:144 + group_length]
    ts = meta.split(b"\x10\x00UI", 1)[1]
    n = struct.unpack("<H", ts[:2])[0]
    return data[144 + group_length:], ts[2:2 + n].rstrip(b"\x00 ").decode()


def corpus(path: Path | None) -> Path:
    out = path or Path(tempfile.gettempdir()) / "dicom-gateway-corpus-small-bench"
    if not (out / "manifest.json").exists():
        subprocess.run([sys.executable, str(SHARED / "corpus" / "make_corpus.py"), "--out", str(out),
                        "--profile", "small", "--syntax", "all"], check=True, capture_output=True)
    return out


def ct_half_mb(small: list[tuple[bytes, str]]) -> tuple[bytes, str]:
    """A CT header from the corpus with 512x512 int16 pixel data (0.5 MB)."""
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    raw = next(r for r, s in small if s == EXPLICIT_LE and b"1.2.840.10008.5.1.4.1.1.2\x00" in r[:2000])
    ds = read_dataset(io.BytesIO(raw), False, True)
    ds.Rows = ds.Columns = 512
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 1
    ds.PixelData = bytes(range(256)) * (512 * 512 * 2 // 256)
    ds["PixelData"].VR = "OW"
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, Dataset(ds))
    return fp.getvalue(), EXPLICIT_LE


def per_object(fn, items: list[tuple[bytes | Path, str]], repeat: int) -> float:
    """Median over `repeat` passes of the mean microseconds per object."""
    for payload, syntax in items:  # warm up (imports, page cache)
        fn(payload, syntax)
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        for payload, syntax in items:
            fn(payload, syntax)
        runs.append((time.perf_counter() - t) / len(items) * 1e6)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--corpus", type=Path)
    args = ap.parse_args()

    root = corpus(args.corpus)
    manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    small = [split_part10((root / f["path"]).read_bytes()) for f in manifest["files"]]
    ct = ct_half_mb(small)
    with tempfile.TemporaryDirectory() as tmp:
        def files(items):
            out = []
            for i, (raw, syntax) in enumerate(items):
                p = Path(tmp) / f"{len(out)}-{i}-{abs(hash(raw))}.raw"
                p.write_bytes(raw)
                out.append((p, syntax))
            return out

        # Both paths must agree before they are timed.
        for raw, syntax in [ct, *small]:
            a, b = old(raw, syntax), new(raw, syntax)
            assert a == b, (a, b)
        cases = [
            ("CT 0.5 MB", "bytes", [ct]),
            ("CT 0.5 MB", "file", files([ct])),
            (f"small corpus ({len(small)} objects)", "bytes", small),
            (f"small corpus ({len(small)} objects)", "file", files(small)),
        ]
        mean_size = sum(len(r) for r, _ in small) / len(small)
        print(f"per-object header work of C-STORE, µs (median of {args.repeat} passes); "
              f"CT {len(ct[0]) / 1e6:.2f} MB, small corpus mean {mean_size / 1e3:.0f} kB\n")
        print(f"| {'data':<26} | {'payload':<7} | {'old µs':>9} | {'new µs':>9} | {'speed-up':>8} |")
        print(f"|{'-' * 28}|{'-' * 9}|{'-' * 11}|{'-' * 11}|{'-' * 10}|")
        for name, kind, items in cases:
            t_old = per_object(old, items, args.repeat)
            t_new = per_object(new, items, args.repeat)
            print(f"| {name:<26} | {kind:<7} | {t_old:9.1f} | {t_new:9.1f} | {t_old / t_new:7.1f}x |")


if __name__ == "__main__":
    main()
