#!/usr/bin/env python3
"""Media benchmark (issue 15): the full corpus (explicit LE) stored in a gateway
index (``dicom-gateway import`` into a temp data dir), then

  export: ``dicom-gateway media export OUT --study …`` (every study)
          vs DCMTK: ``dcmconv +te`` per file into IMAGES/Dnnnnn/Innnnnnn + ``dcmmkdir``
  import: ``dicom-gateway media import OUT`` into a fresh gateway
          vs ``dcmsend --read-from-dicomdir`` into a running ``dicom-gateway serve``
          (fresh data dir, free loopback port; network ingest)

measured in one run; prints times and ratios.

    python bench/media.py [--corpus DIR]

DCMTK runs with TCP_NODELAY=1; the GENIE private objects are left out (as in
bench/ingest.py: DCMTK does not know their SOP class).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import free_port, full_corpus, wait_port, write_gateway_toml  # noqa: E402

ENV = dict(os.environ, TCP_NODELAY="1")
GW = [sys.executable, "-m", "gateway.cli"]


def run(cmd: list[str], ok: tuple[int, ...] = (0,), **kw) -> float:
    started = time.perf_counter()
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, **kw)
    elapsed = time.perf_counter() - started
    for line in (p.stdout + p.stderr).splitlines():
        if "not written" in line or "FAILED" in line or "MISSING" in line:
            print(f"  ({cmd[3] if len(cmd) > 3 else cmd[0]}) {line.strip()[:200]}", file=sys.stderr)
    if p.returncode not in ok:
        raise RuntimeError(f"{' '.join(cmd[:4])} … failed ({p.returncode}): {(p.stdout + p.stderr)[-800:]}")
    return elapsed


def stored_count(cfg: Path) -> int:
    with sqlite3.connect(cfg / "data" / "index.db") as db:
        return db.execute("select count(*) from instances").fetchone()[0]


def dcmtk_export(files: list[str], out: Path) -> float:
    started = time.perf_counter()
    for n, f in enumerate(files):
        dst = out / "IMAGES" / f"D{n // 1000:05d}" / f"I{n:07d}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["/usr/bin/dcmconv", "+te", f, str(dst)], env=ENV, check=True, capture_output=True)
    mk = subprocess.run(["/usr/bin/dcmmkdir", "-Pgp", "+r", "+id", str(out), "+I", "--output-file",
                         str(out / "DICOMDIR"), "IMAGES"], env=ENV, capture_output=True, text=True)
    if mk.returncode != 0:
        raise RuntimeError(f"dcmmkdir failed: {mk.stderr[-800:]}")
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="a full explicit-LE corpus (generated when missing)")
    args = ap.parse_args()
    files, total = full_corpus(args.corpus)
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        tmp = Path(tmp)
        src = tmp / "source"
        write_gateway_toml(src, free_port())
        t_seed = run([*GW, "import", *files, "--config", str(src)], timeout=3600)
        with sqlite3.connect(src / "data" / "index.db") as db:
            studies = [r[0] for r in db.execute("select distinct study_instance_uid from studies")]
        print(f"  seeded: {stored_count(src)} instances, {len(studies)} studies in {t_seed:.1f} s", file=sys.stderr)

        ours = tmp / "ours"
        sel = [a for s in studies for a in ("--study", s)]
        t_exp = run([*GW, "media", "export", str(ours), *sel, "--config", str(src)], ok=(0, 1),
                    timeout=3600)  # 1: an object not written is named above; the rest is timed
        print(f"  media export: {t_exp:.2f} s", file=sys.stderr)
        theirs = tmp / "dcmtk"
        t_dexp = dcmtk_export(files, theirs)
        print(f"  dcmconv + dcmmkdir: {t_dexp:.2f} s", file=sys.stderr)

        imp = tmp / "import"
        write_gateway_toml(imp, free_port())
        t_imp = run([*GW, "media", "import", str(ours), "--config", str(imp)], timeout=3600)
        n_imp = stored_count(imp)
        print(f"  media import: {t_imp:.2f} s ({n_imp} stored)", file=sys.stderr)

        net = tmp / "net"
        port = free_port()
        write_gateway_toml(net, port)
        proc = subprocess.Popen([*GW, "serve", "--config", str(net)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
            time.sleep(0.5)
            t_send = run(["/usr/bin/dcmsend", "-aec", "BENCH", "--read-from-dicomdir", "127.0.0.1", str(port),
                          str(ours / "DICOMDIR")], timeout=3600)
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        n_net = stored_count(net)
        print(f"  dcmsend -> serve: {t_send:.2f} s ({n_net} stored)", file=sys.stderr)

    mb = total / 1e6
    print(f"\n{len(files)} files, {mb:.1f} MB (full corpus, explicit LE, GENIE private objects excluded), "
          f"{len(studies)} studies\n")
    print("| job | gateway | s | MB/s | DCMTK / peer | s | MB/s | gateway speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| export to file-set | media export | {t_exp:.2f} | {mb / t_exp:.1f} | dcmconv +te + dcmmkdir | "
          f"{t_dexp:.2f} | {mb / t_dexp:.1f} | {t_dexp / t_exp:.2f}x |")
    print(f"| import file-set | media import ({n_imp} stored) | {t_imp:.2f} | {mb / t_imp:.1f} | "
          f"dcmsend --read-from-dicomdir -> serve ({n_net} stored) | {t_send:.2f} | {mb / t_send:.1f} | "
          f"{t_send / t_imp:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
