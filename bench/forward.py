#!/usr/bin/env python3
"""Forward benchmark (export issue), measured side by side in one run:

  end to end   DCMTK storescu -> gateway (serve: fsync, index, queue) -> route -> DCMTK storescp;
               time from the first byte sent until the last object is a file at the destination
  baseline     DCMTK storescu -> DCMTK storescp directly, same files
  send path    `dicom-gateway send` of the objects the gateway stored -> DCMTK storescp,
               versus DCMTK storescu sending those same stored files
  backlog      everything queued while the destination is down; time from the moment
               storescp starts until the last object is there

    python bench/forward.py [--corpus DIR]

Everything runs on loopback with TCP_NODELAY=1 for DCMTK. The GENIE private
objects are left out for every path alike (storescu does not know their SOP class).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import free_port, full_corpus, wait_port, write_gateway_toml  # noqa: E402

ENV = dict(os.environ, TCP_NODELAY="1")


def storescp(out: Path, port: int | None = None) -> tuple[subprocess.Popen, int]:
    port = port or free_port()
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(["/usr/bin/storescp", "-aet", "DEST", "--output-directory", str(out), str(port)],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def storescu(port: int, files: list[str], aec: str) -> float:
    started = time.perf_counter()
    out = subprocess.run(["/usr/bin/storescu", "-aec", aec, "-R", "-nh", "127.0.0.1", str(port), *files],
                         env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if out.returncode != 0:
        raise RuntimeError(f"storescu failed: {out.stderr.decode()[-500:]}")
    return time.perf_counter() - started


def count(directory: Path) -> int:
    return sum(1 for p in directory.iterdir() if p.is_file())


def wait_files(directory: Path, n: int) -> None:
    deadline = time.monotonic() + 1800
    while count(directory) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count(directory)} of {n} objects arrived")
        time.sleep(0.02)


def gateway(cfg: Path, dest_port: int, forwarding: str = "") -> tuple[subprocess.Popen, int, Path]:
    """`dicom-gateway serve` (2 workers) with one route: everything to DEST on ``dest_port``."""
    port = free_port()
    (cfg / "remotes").mkdir(parents=True)
    (cfg / "routes").mkdir()
    write_gateway_toml(cfg, port, "[forwarding]\npoll_interval = 0.05\n" + forwarding)
    (cfg / "remotes" / "dest.toml").write_text(f'ae_title = "DEST"\nhost = "127.0.0.1"\nport = {dest_port}\n')
    (cfg / "routes" / "all.toml").write_text('[[rule]]\nname = "everything"\nforward = ["dest"]\n')
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    time.sleep(1.0)
    return proc, port, cfg


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="a full explicit-LE corpus (generated when missing)")
    args = ap.parse_args()
    files, total = full_corpus(args.corpus)
    rows: list[tuple[str, float]] = []

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # -- baseline: storescu straight to storescp
        dest, dport = storescp(tmp / "direct")
        try:
            direct = storescu(dport, files, "DEST")
        finally:
            stop(dest)
        rows.append(("storescu -> storescp (direct)", direct))
        print(f"  direct: {direct:.2f} s", file=sys.stderr)

        # -- end to end through the gateway
        dest, dport = storescp(tmp / "routed")
        gw, gport, cfg = gateway(tmp / "gw", dport)
        try:
            started = time.perf_counter()
            ingest = storescu(gport, files, "BENCH")
            wait_files(tmp / "routed", len(files))
            end_to_end = time.perf_counter() - started
        finally:
            stop(gw)
            stop(dest)
        rows.append(("storescu -> gateway -> storescp", end_to_end))
        print(f"  end to end: {end_to_end:.2f} s (ingest part {ingest:.2f} s)", file=sys.stderr)

        # -- the send path alone, over the gateway's stored files
        archive = cfg / "data" / "archive"
        stored = sorted(str(p) for p in archive.rglob("*.dcm"))
        dest, dport = storescp(tmp / "sent-gw")
        try:
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "gateway.cli", "send", f"DEST@127.0.0.1:{dport}",
                                  str(archive), "--config", str(cfg)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            send_gw = time.perf_counter() - started
            if out.returncode != 0:
                raise RuntimeError(f"dicom-gateway send failed: {out.stderr.decode()[-500:]}")
        finally:
            stop(dest)
        dest, dport = storescp(tmp / "sent-dcmtk")
        try:
            send_dcmtk = storescu(dport, stored, "DEST")
        finally:
            stop(dest)
        rows.append(("dicom-gateway send (stored files)", send_gw))
        rows.append(("storescu (same stored files)", send_dcmtk))

        # -- a backlog: the destination is down while everything arrives, then comes up
        dport = free_port()
        gw, gport, _ = gateway(tmp / "gw-backlog", dport, "breaker_cooldown = 0.2\nbackoff_max = 0.2\n")
        try:
            storescu(gport, files, "BENCH")  # every job is committed before its C-STORE-RSP
            time.sleep(1.0)
            started = time.perf_counter()
            dest, _ = storescp(tmp / "backlog", dport)
            try:
                wait_files(tmp / "backlog", len(files))
                backlog = time.perf_counter() - started
            finally:
                stop(dest)
        finally:
            stop(gw)
        rows.append(("queued backlog -> storescp (came up)", backlog))

    print(f"\n{len(files)} objects, {total / 1e6:.1f} MB (full corpus, explicit LE, GENIE private objects excluded)\n")
    print(f"{'path':<38}{'seconds':>9}{'MB/s':>9}{'images/s':>10}")
    for name, t in rows:
        print(f"{name:<38}{t:>9.2f}{total / t / 1e6:>9.1f}{len(files) / t:>10.1f}")
    print(f"\nend to end / direct:                 {end_to_end / direct:.2f}x the time")
    print(f"dicom-gateway send / storescu:       {send_gw / send_dcmtk:.2f}x the time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
