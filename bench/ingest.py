#!/usr/bin/env python3
"""Ingest benchmark (import-server issue): the full corpus (explicit LE) sent by
DCMTK storescu with 1 and 4 concurrent associations into

  the gateway (serve, 2 workers: fsync + index) | DCMTK storescp, single and --fork
  pynetdicom storescp (writes files)             | Orthanc (its own temp config)

measured side by side in one run; prints MB/s, images/s and gateway/each.

    python bench/ingest.py [--corpus DIR] [--runs 1]

storescu runs with TCP_NODELAY=1 and -R (only the needed contexts); it skips
the GENIE private objects, which it does not know, for every target alike.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import free_port, full_corpus, wait_port, write_gateway_toml  # noqa: E402
ENV = dict(os.environ, TCP_NODELAY="1")


PYNETDICOM_SCP = textwrap.dedent("""
    import sys, os
    from pynetdicom import AE, evt, AllStoragePresentationContexts
    out = sys.argv[2]
    def store(event):
        with open(os.path.join(out, event.request.AffectedSOPInstanceUID + ".dcm"), "wb") as fh:
            fh.write(event.encoded_dataset())
        return 0
    ae = AE(ae_title="BENCH")
    ae.supported_contexts = AllStoragePresentationContexts
    ae.maximum_associations = 16
    ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True, evt_handlers=[(evt.EVT_C_STORE, store)])
""")


def start(name: str, tmp: Path):
    port = free_port()
    d = tmp / name.split()[0]  # one target per temporary directory
    d.mkdir()
    if name == "gateway":
        write_gateway_toml(d, port)
        cmd = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(d)]
    elif name == "DCMTK storescp":
        cmd = ["/usr/bin/storescp", "-aet", "BENCH", "--output-directory", str(d), str(port)]
    elif name == "DCMTK storescp --fork":  # one process per association, as a busy site runs it
        cmd = ["/usr/bin/storescp", "--fork", "-aet", "BENCH", "--output-directory", str(d), str(port)]
    elif name == "pynetdicom storescp":
        cmd = [sys.executable, "-c", PYNETDICOM_SCP, str(port), str(d)]
    else:  # Orthanc
        http = free_port()
        (d / "orthanc.json").write_text(json.dumps({
            "Name": "bench", "StorageDirectory": str(d / "storage"), "IndexDirectory": str(d / "index"),
            "DicomAet": "BENCH", "DicomPort": port, "HttpPort": http, "RemoteAccessAllowed": False,
            "DicomCheckCalledAet": False, "DicomModalities": {}, "Plugins": [], "ConcurrentJobs": 2,
        }))
        cmd = ["/usr/sbin/Orthanc", str(d / "orthanc.json")]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    time.sleep(0.5)
    return proc, port


def send(port: int, files: list[str], streams: int) -> float:
    chunks = [files[i::streams] for i in range(streams)]
    started = time.perf_counter()
    procs = [subprocess.Popen(["/usr/bin/storescu", "-aec", "BENCH", "-R", "-nh", "127.0.0.1", str(port), *chunk],
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for chunk in chunks]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"storescu failed: {err.decode()[-500:]}")
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="a full explicit-LE corpus (generated when missing)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--targets", default="gateway,DCMTK storescp --fork,DCMTK storescp,pynetdicom storescp,Orthanc")
    args = ap.parse_args()
    files, total = full_corpus(args.corpus)
    results: dict[tuple[str, int], float] = {}
    for name in args.targets.split(","):
        if name == "Orthanc" and not Path("/usr/sbin/Orthanc").exists():
            continue
        for streams in (1, 4):
            best = None
            for _ in range(args.runs):
                with tempfile.TemporaryDirectory() as tmp:
                    proc, port = start(name, Path(tmp))
                    try:
                        elapsed = send(port, files, streams)
                    finally:
                        proc.terminate()
                        try:
                            proc.wait(60)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                best = elapsed if best is None else min(best, elapsed)
            results[(name, streams)] = best
            print(f"  {name:<22} x{streams}: {best:6.2f} s", file=sys.stderr)
    print(f"\n{len(files)} files, {total / 1e6:.1f} MB (full corpus, explicit LE, GENIE private objects excluded)\n")
    print(f"{'target':<22}{'assocs':>7}{'MB/s':>9}{'images/s':>10}{'gateway/this':>14}")
    for (name, streams), t in results.items():
        g = results.get(("gateway", streams))
        ratio = f"{t / g:.2f}" if g else "-"
        print(f"{name:<22}{streams:>7}{total / t / 1e6:>9.1f}{len(files) / t:>10.1f}{ratio:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
