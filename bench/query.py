#!/usr/bin/env python3
"""Query/Retrieve benchmark (issue 12): DCMTK findscu latency against

  the gateway (serve, 2 workers)  |  DCMTK dcmqrscp  |  Orthanc

all loaded with the same real corpus (the full profile of ../shared/corpus, explicit LE,
sent by storescu), in one run; the gateway's index then grows by synthetic instance rows
written straight into its database (executemany in one transaction per step) to 10k, 100k
and 1M instances, and its queries are timed again at each size:

  (a) study level, PatientName wildcard (ANCHOR*: the corpus's PET-CT patient), with
      ModalitiesInStudy and NumberOfStudyRelatedInstances
  (b) series level in the PET-CT study
  (c) image level in the CT series: 300 matches

Each is the median of ``--repeat`` findscu runs minus the median echoscu run against the
same server (process start, association set-up and release: what is beyond a C-ECHO).
Then C-MOVE of the CT series (300 files) from the gateway to a DCMTK storescp, against
storescu sending the same files to the same storescp.

    python bench/query.py [--corpus DIR] [--repeat 15] [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import free_port, full_corpus, wait_port, write_gateway_toml  # noqa: E402

ENV = dict(os.environ, TCP_NODELAY="1")
FINDSCU, ECHOSCU, MOVESCU = "/usr/bin/findscu", "/usr/bin/echoscu", "/usr/bin/movescu"
STORESCU, STORESCP = "/usr/bin/storescu", "/usr/bin/storescp"


# ---- servers ------------------------------------------------------------------------------

def start_gateway(d: Path, sink_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    write_gateway_toml(d, port)
    (d / "remotes").mkdir()
    (d / "remotes" / "sink.toml").write_text(f'ae_title = "SINK"\nhost = "127.0.0.1"\nport = {sink_port}\n')
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(d)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=open(d / "serve.log", "wb"))
    wait_port(port)
    return proc, port


def start_dcmqrscp(d: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    (d / "db").mkdir(parents=True)
    (d / "dcmqrscp.cfg").write_text(f"""
NetworkTCPPort  = {port}
MaxPDUSize      = 16384
MaxAssociations = 16
HostTable BEGIN
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
BENCH  {d / 'db'}  RW (2000, 1024mb)  ANY
AETable END
""")
    proc = subprocess.Popen(["/usr/bin/dcmqrscp", "-c", str(d / "dcmqrscp.cfg"), str(port)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def start_orthanc(d: Path) -> tuple[subprocess.Popen, int]:
    port, http = free_port(), free_port()
    (d / "orthanc.json").write_text(json.dumps({
        "Name": "bench", "StorageDirectory": str(d / "storage"), "IndexDirectory": str(d / "index"),
        "DicomAet": "BENCH", "DicomPort": port, "HttpPort": http, "RemoteAccessAllowed": False,
        "DicomCheckCalledAet": False, "DicomModalities": {}, "Plugins": [], "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True, "DicomAlwaysAllowEcho": True,
    }))
    proc = subprocess.Popen(["/usr/sbin/Orthanc", str(d / "orthanc.json")], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    time.sleep(0.5)
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def load(port: int, files: list[str]) -> float:
    started = time.perf_counter()
    run = subprocess.run([STORESCU, "-aec", "BENCH", "-R", "-nh", "127.0.0.1", str(port), *files], env=ENV,
                         capture_output=True)
    if run.returncode:
        raise RuntimeError(f"storescu failed: {run.stderr.decode()[-500:]}")
    return time.perf_counter() - started


# ---- timing -------------------------------------------------------------------------------

#: The client's own CPU (user + system) of the last _timed run, seconds.
CLIENT_CPU = [0.0]


def _timed(cmd: list[str]) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CLIENT_CPU[0] = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if run.returncode:
        raise RuntimeError(f"{cmd[0]} failed: {run.stderr[-500:]}")
    return elapsed, run.stdout + run.stderr


def echo_time(port: int, repeat: int) -> tuple[float, float]:
    """Median wall time of an echoscu run, and median echoscu CPU."""
    cmd = [ECHOSCU, "-aec", "BENCH", "127.0.0.1", str(port)]
    for _ in range(3):
        _timed(cmd)
    times, cpu = [], []
    for _ in range(repeat):
        times.append(_timed(cmd)[0])
        cpu.append(CLIENT_CPU[0])
    return statistics.median(times), statistics.median(cpu)


def find_time(port: int, keys: list[str], repeat: int) -> tuple[float, int, float]:
    """Median wall time of a findscu run, its matches, and median findscu CPU: what the
    client itself spends decoding and logging the answers, which no server can undercut."""
    cmd = [FINDSCU, "-v", "-S", "-aec", "BENCH", *sum((["-k", k] for k in keys), []), "127.0.0.1", str(port)]
    times, cpu, matches = [], [], 0
    for _ in range(3):  # warm-up, untimed: every worker process has served the query once
        _timed(cmd)
    for _ in range(repeat):
        t, out = _timed(cmd)
        times.append(t)
        cpu.append(CLIENT_CPU[0])
        matches = out.count("(Pending)")
    return statistics.median(times), matches, statistics.median(cpu)


def queries(manifest: dict) -> dict[str, list[str]]:
    petct = next(s for s in manifest["studies"] if s["study_description"] == "PET-CT WB FDG")
    ct = next(f for f in manifest["files"] if f["type"] == "CT")
    return {
        "study (PatientName=ANCHOR*)": ["QueryRetrieveLevel=STUDY", "PatientName=ANCHOR*", "PatientID",
                                        "StudyInstanceUID", "StudyDate", "StudyDescription", "ModalitiesInStudy",
                                        "NumberOfStudyRelatedInstances"],
        "series (one study)": ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={petct['study_instance_uid']}",
                               "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                               "NumberOfSeriesRelatedInstances"],
        "image (CT series, 300)": ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={ct['study_instance_uid']}",
                                   f"SeriesInstanceUID={ct['series_instance_uid']}", "SOPInstanceUID",
                                   "SOPClassUID", "InstanceNumber"],
    }


# ---- synthetic rows -------------------------------------------------------------------------

class Synthetic:
    """Synthetic patients (1 study, 4 series of 25 instances each: 100 instances a patient)
    written straight into the gateway's SQLite index with executemany, one transaction per step."""

    PER_SERIES, SERIES = 25, 4

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, timeout=60)
        self.conn.execute("PRAGMA synchronous=OFF")
        self.instances = 0
        self.patients = 0
        self.rng = random.Random(12)

    def grow_to(self, total: int) -> float:
        started = time.perf_counter()
        now = datetime(2026, 1, 1).isoformat(" ")
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        p_id = (c.execute("SELECT max(id) FROM patients").fetchone()[0] or 0) + 1
        st_id = (c.execute("SELECT max(id) FROM studies").fetchone()[0] or 0) + 1
        se_id = (c.execute("SELECT max(id) FROM series").fetchone()[0] or 0) + 1
        i_id = (c.execute("SELECT max(id) FROM instances").fetchone()[0] or 0) + 1
        f_id = (c.execute("SELECT max(id) FROM files").fetchone()[0] or 0) + 1
        patients, studies, series, instances, files = [], [], [], [], []
        surnames = ["SMITH", "MEYER", "GARCIA", "ROSSI", "NOVAK", "TANAKA", "DUBOIS", "JONES", "KOWALSKI", "BERG"]
        while self.instances < total:
            n = self.patients
            name = f"{self.rng.choice(surnames)}{n:07d}^SYN"
            patients.append((p_id, f"SYN{n:08d}", name, name, "19500101", "F" if n % 2 else "M", now))
            date = f"20{10 + n % 15:02d}{1 + n % 12:02d}{1 + n % 28:02d}"
            studies.append((st_id, f"2.25.9.{n}", p_id, date, "101500", f"SYN{n:08d}", "synthetic", now))
            for s in range(self.SERIES):
                series.append((se_id, f"2.25.9.{n}.{s}", st_id, ("CT", "PT", "CT", "SR")[s], s + 1, now))
                for k in range(self.PER_SERIES):
                    uid = f"2.25.9.{n}.{s}.{k}"
                    instances.append((i_id, uid, se_id, "1.2.840.10008.5.1.4.1.1.2", k + 1, now))
                    files.append((f_id, i_id, f"syn/{uid}.dcm", 1000, "0" * 64, "1.2.840.10008.1.2.1",
                                  "filesystem", now, "SYN", "BENCH"))
                    i_id += 1
                    f_id += 1
                se_id += 1
            st_id += 1
            p_id += 1
            self.patients += 1
            self.instances += self.SERIES * self.PER_SERIES
        c.executemany("INSERT INTO patients (id, patient_id, patient_name, patient_name_search, birth_date, sex,"
                      " updated_at) VALUES (?,?,?,?,?,?,?)", patients)
        c.executemany("INSERT INTO studies (id, study_instance_uid, patient_fk, study_date, study_time,"
                      " accession_number, study_description, updated_at) VALUES (?,?,?,?,?,?,?,?)", studies)
        c.executemany("INSERT INTO series (id, series_instance_uid, study_fk, modality, series_number, updated_at)"
                      " VALUES (?,?,?,?,?,?)", series)
        c.executemany("INSERT INTO instances (id, sop_instance_uid, series_fk, sop_class_uid, instance_number,"
                      " updated_at) VALUES (?,?,?,?,?,?)", instances)
        c.executemany("INSERT INTO files (id, instance_fk, path, size, sha256, transfer_syntax_uid, backend,"
                      " received_at, calling_ae, called_ae) VALUES (?,?,?,?,?,?,?,?,?,?)", files)
        c.execute("COMMIT")
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return time.perf_counter() - started


# ---- C-MOVE vs storescu -------------------------------------------------------------------------

def move_vs_storescu(gw_port: int, sink_port: int, ct_files: list[str], ct: dict, tmp: Path, runs: int):
    def sink() -> tuple[subprocess.Popen, Path]:
        out = Path(tempfile.mkdtemp(dir=tmp, prefix="sink"))
        proc = subprocess.Popen([STORESCP, "-aet", "SINK", "-od", str(out), str(sink_port)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(sink_port)
        return proc, out

    move_t, store_t = [], []
    for _ in range(runs):
        proc, out = sink()
        try:
            t, log = _timed([MOVESCU, "-S", "-v", "-aec", "BENCH", "-aem", "SINK", "-k", "QueryRetrieveLevel=SERIES",
                             "-k", f"StudyInstanceUID={ct['study_instance_uid']}",
                             "-k", f"SeriesInstanceUID={ct['series_instance_uid']}", "127.0.0.1", str(gw_port)])
            assert "Final Move Response (Success)" in log, log[-800:]
            assert len(list(out.iterdir())) == len(ct_files)
            move_t.append(t)
        finally:
            stop(proc)
        proc, out = sink()
        try:
            t, _ = _timed([STORESCU, "-aec", "SINK", "-R", "-nh", "127.0.0.1", str(sink_port), *ct_files])
            assert len(list(out.iterdir())) == len(ct_files)
            store_t.append(t)
        finally:
            stop(proc)
    return min(move_t), min(store_t)


# ---- main -----------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="a full explicit-LE corpus (generated when missing)")
    ap.add_argument("--repeat", type=int, default=15, help="findscu / echoscu runs per measurement (median)")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="synthetic instance counts, ascending")
    ap.add_argument("--move-runs", type=int, default=3)
    args = ap.parse_args()
    files, total = full_corpus(args.corpus)
    corpus = Path(files[0]).parents[1]
    manifest = json.loads((corpus / "manifest.json").read_text())
    qs = queries(manifest)
    ct_meta = [f for f in manifest["files"] if f["type"] == "CT"]
    ct_files = [str(corpus / f["path"]) for f in ct_meta]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results: dict[str, dict[str, float]] = {}
    matches: dict[str, int] = {}
    growth: dict[int, dict[str, float]] = {}
    client: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmpdir:
        tmp = Path(tmpdir)
        sink_port = free_port()
        servers = {}
        for name, starter in (("gateway", lambda d: start_gateway(d, sink_port)), ("DCMTK dcmqrscp", start_dcmqrscp),
                              ("Orthanc", start_orthanc)):
            d = tmp / name.split()[-1]
            d.mkdir()
            proc, port = starter(d)
            servers[name] = (proc, port)
            print(f"  loading {len(files)} files into {name}: {load(port, files):.1f} s", file=sys.stderr)
        try:
            for name, (_, port) in servers.items():
                echo, echo_cpu = echo_time(port, args.repeat)
                results[name] = {"echo": echo}
                client[name] = {}
                for label, keys in qs.items():
                    t, n, cpu = find_time(port, keys, args.repeat)
                    results[name][label] = t - echo
                    client[name][label] = cpu - echo_cpu
                    matches[f"{name}|{label}"] = n
                print(f"  {name}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in results[name].items()),
                      file=sys.stderr)
            gw_port = servers["gateway"][1]
            syn = Synthetic(tmp / "gateway" / "data" / "index.db")
            growth[0] = {k: v for k, v in results["gateway"].items()}
            for size in sizes:
                took = syn.grow_to(size)
                print(f"  {syn.instances} synthetic instances written in {took:.1f} s", file=sys.stderr)
                echo = echo_time(gw_port, args.repeat)[0]
                growth[size] = {"echo": echo}
                for label, keys in qs.items():
                    t, n, _ = find_time(gw_port, keys, args.repeat)
                    growth[size][label] = t - echo
                    assert n == matches[f"gateway|{label}"], (label, n)
                print(f"  gateway @ {size}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in growth[size].items()),
                      file=sys.stderr)
            move, store = move_vs_storescu(gw_port, sink_port, ct_files, ct_meta[0], tmp, args.move_runs)
        finally:
            for proc, _ in servers.values():
                stop(proc)

    mb = sum(f["size"] for f in ct_meta) / 1e6
    print(f"\ncorpus: {len(files)} files, {total / 1e6:.1f} MB (full profile, explicit LE); findscu/echoscu "
          f"median of {args.repeat}; latency beyond an echoscu run, ms\n")
    labels = list(qs)
    print(f"| server | echoscu | " + " | ".join(labels) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in labels) + " |")
    for name, r in results.items():
        cells = [f"{r[k] * 1e3:.1f} ({matches[f'{name}|{k}']})" for k in labels]
        print(f"| {name} (corpus) | {r['echo'] * 1e3:.1f} | " + " | ".join(cells) + " |")
    for size in sizes:
        g = growth[size]
        print(f"| gateway + {size:,} synthetic | {g['echo'] * 1e3:.1f} | "
              + " | ".join(f"{g[k] * 1e3:.1f}" for k in labels) + " |")
    print("\nratios gateway/other, beyond echo (goal <= 0.5):\n")
    print("| gateway at | vs | " + " | ".join(labels) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in labels) + " |")
    for at, g in [("corpus", growth[0])] + [(f"{s:,}", growth[s]) for s in sizes[-1:]]:
        for other in ("DCMTK dcmqrscp", "Orthanc"):
            o = results[other]
            print(f"| {at} | {other} | " + " | ".join(
                f"{g[k] / o[k]:.2f}" if o[k] > 0 else "-" for k in labels) + " |")
    print("\nfindscu's own CPU beyond echoscu's, ms (the client's floor under every server's figure above):\n")
    print("| server | " + " | ".join(labels) + " |")
    print("| --- | " + " | ".join("---" for _ in labels) + " |")
    for name, c in client.items():
        print(f"| {name} | " + " | ".join(f"{c[k] * 1e3:.1f}" for k in labels) + " |")
    print(f"\nC-MOVE of the CT series ({len(ct_files)} files, {mb:.1f} MB) to storescp: {move:.2f} s "
          f"({mb / move:.0f} MB/s); storescu of the same files: {store:.2f} s ({mb / store:.0f} MB/s); "
          f"C-MOVE/storescu throughput {store / move:.2f} (goal >= 0.9); best of {args.move_runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
