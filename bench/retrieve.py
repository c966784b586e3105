#!/usr/bin/env python3
"""Retrieve benchmark (issue 13), measured side by side in one run:

  move     the full corpus's CT series (300 objects) pulled into a `dicom-gateway serve`
           (2 workers, AE BENCH) from DCMTK dcmqrscp and from Orthanc, by
           `dicom-gateway move ARCHIVE --series UID --study UID` and by DCMTK
           `movescu -aem BENCH` doing the same into the same receiver (a fresh data
           directory for every run, so nothing is a duplicate); wall time of the command,
           process start to exit (the final C-MOVE response comes after the last
           sub-operation was stored and indexed)
  find     `dicom-gateway find ARCHIVE --recursive --json` of the whole corpus in dcmqrscp
           (study, then series per study, then images per series, on one association)
           against the same tree walked with one DCMTK `findscu` process per query
  start-up the fixed cost of a command, best of --startup-runs: `dicom-gateway --help`,
           `dicom-gateway echo` against DCMTK `echoscu` (to a `storescp`), and one
           study-level `dicom-gateway find` against one `findscu` (to the dcmqrscp)

    python bench/retrieve.py [--corpus DIR] [--runs N] [--startup-runs N]

Everything runs on loopback with TCP_NODELAY=1 for DCMTK. The GENIE private and the
standalone curve objects are left out (DCMTK storescu cannot load them into the archives).
Prints a table with the ratios (movescu time / gateway time: above 1 the gateway is faster)
and, for the gateway's move, where its time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import SHARED, free_port, wait_port, write_gateway_toml  # noqa: E402

ENV = dict(os.environ, TCP_NODELAY="1")
GW = [sys.executable, "-m", "gateway.cli"]
NOT_STORABLE = ("1.2.840.113619.4.27", "1.2.840.10008.5.1.4.1.1.9")


def corpus_files(corpus: Path | None) -> tuple[Path, list[dict]]:
    corpus = corpus or Path(tempfile.gettempdir()) / "dicom-gateway-corpus-full"
    if not (corpus / "manifest.json").exists():
        subprocess.run([sys.executable, str(SHARED / "corpus" / "make_corpus.py"), "--out", str(corpus)], check=True)
    manifest = json.loads((corpus / "manifest.json").read_text())
    return corpus, [f for f in manifest["files"] if f["sop_class_uid"] not in NOT_STORABLE]


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def storescu(port: int, aec: str, files: list[str]) -> None:
    run = subprocess.run(["/usr/bin/storescu", "-aec", aec, "-nh", "127.0.0.1", str(port), *files], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if run.returncode:
        raise RuntimeError(f"storescu failed: {run.stderr.decode()[-500:]}")


def dcmqrscp(root: Path, gw_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    (root / "db").mkdir(parents=True)
    cfg = root / "dcmqrscp.cfg"
    cfg.write_text(f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n"
                   f"HostTable BEGIN\nbench = (BENCH, 127.0.0.1, {gw_port})\nHostTable END\n"
                   f"VendorTable BEGIN\nVendorTable END\n"
                   f"AETable BEGIN\nQRSCP {root / 'db'} RW (2000, 4096mb) ANY\nAETable END\n")
    proc = subprocess.Popen(["/usr/bin/dcmqrscp", "-c", str(cfg), str(port)], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def orthanc(root: Path, gw_port: int) -> tuple[subprocess.Popen, int]:
    port, http = free_port(), free_port()
    root.mkdir(parents=True)
    (root / "orthanc.json").write_text(json.dumps({
        "Name": "bench", "DicomAet": "ORTHANC", "DicomPort": port, "HttpPort": http,
        "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True, "DicomModalities": {"bench": ["BENCH", "127.0.0.1", gw_port]},
        "Plugins": [], "StorageCompression": False}))
    proc = subprocess.Popen(["/usr/sbin/Orthanc", str(root / "orthanc.json")], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


class Receiver:
    """`dicom-gateway serve` (AE BENCH) with a fresh data directory."""

    def __init__(self, root: Path, port: int, archives: dict[str, tuple[str, int]]) -> None:
        shutil.rmtree(root, ignore_errors=True)
        write_gateway_toml(root, port)
        (root / "remotes").mkdir()
        for name, (aet, p) in archives.items():
            (root / "remotes" / f"{name}.toml").write_text(
                f'ae_title = "{aet}"\nhost = "127.0.0.1"\nport = {p}\ndimse_timeout = 120\n')
        self.root = root
        self.proc = subprocess.Popen([*GW, "serve", "--config", str(root)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(port)
        time.sleep(1.0)

    def stored(self) -> int:
        return sum(1 for _ in (self.root / "data" / "archive").rglob("*.dcm"))

    def stop(self) -> None:
        stop(self.proc)


CPU: dict[str, float] = {}


def timed(cmd: list[str]) -> tuple[float, str]:
    """Wall time of ``cmd``; its CPU seconds (user + system) in ``CPU["last"]``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    run = subprocess.run(cmd, env=ENV, capture_output=True, text=True, errors="replace")
    took = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU["last"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if run.returncode:
        raise RuntimeError(f"{cmd[0]} failed ({run.returncode}): {(run.stdout + run.stderr)[-800:]}")
    return took, run.stdout + run.stderr


def findscu_walk(port: int) -> tuple[float, int]:
    """The recursive tree with one findscu process per query; returns time and queries."""
    base = ["/usr/bin/findscu", "-S", "-aet", "BENCH", "-aec", "QRSCP", "127.0.0.1", str(port)]
    uid = re.compile(r"\((0020,000d|0020,000e|0008,0018)\) UI \[([^\]]*)\]")
    queries = 0

    def find(keys: list[str]) -> list[dict[str, str]]:
        nonlocal queries
        queries += 1
        run = subprocess.run(base + [a for k in keys for a in ("-k", k)], env=ENV, capture_output=True, text=True,
                             errors="replace")
        answers: list[dict[str, str]] = []
        for line in (run.stdout + run.stderr).splitlines():
            if "Find Response" in line:
                answers.append({})
            m = uid.search(line)
            if m and answers:
                answers[-1][m.group(1)] = m.group(2)
        return [a for a in answers if a]

    started = time.perf_counter()
    images = 0
    for st in find(["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName", "PatientID", "StudyDate",
                    "StudyDescription"]):
        for se in find(["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={st['0020,000d']}", "SeriesInstanceUID",
                        "Modality", "SeriesNumber"]):
            images += len(find(["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={st['0020,000d']}",
                                f"SeriesInstanceUID={se['0020,000e']}", "SOPInstanceUID", "InstanceNumber"]))
    return time.perf_counter() - started, queries


def best_of(runs: int, cmd: list[str]) -> float:
    return min(timed(cmd)[0] for _ in range(runs))


def startup_rows(runs: int, qr_port: int, tmp: Path) -> list[tuple[str, str, float, float | None]]:
    """What a command costs before and after its one DICOM exchange (issue 13): a C-ECHO
    and one C-FIND are a few milliseconds on loopback, so the rest is start-up."""
    port = free_port()
    scp = subprocess.Popen(["/usr/bin/storescp", str(port)], env=ENV, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        data = ["--data-dir", str(tmp / "startup")]
        python = best_of(runs, [sys.executable, "-c", "pass"])
        helps = best_of(runs, [*GW, "--help"])
        echo = best_of(runs, [*GW, "echo", "127.0.0.1", str(port)])
        echoscu = best_of(runs, ["/usr/bin/echoscu", "127.0.0.1", str(port)])
        find = best_of(runs, [*GW, "find", f"QRSCP@127.0.0.1:{qr_port}", "-k", "PatientID=NOBODY", *data])
        findscu = best_of(runs, ["/usr/bin/findscu", "-S", "-aec", "QRSCP", "-k", "QueryRetrieveLevel=STUDY",
                                 "-k", "PatientID=NOBODY", "127.0.0.1", str(qr_port)])
    finally:
        stop(scp)
    return [("start-up: the interpreter alone", "python -c pass", python, None),
            ("start-up: the command line", "dicom-gateway --help", helps, None),
            ("start-up: one C-ECHO (storescp)", "dicom-gateway echo", echo, echoscu / echo),
            ("", "echoscu", echoscu, None),
            ("start-up: one C-FIND, no match (dcmqrscp)", "dicom-gateway find", find, findscu / find),
            ("", "findscu", findscu, None)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="a full explicit-LE corpus (generated when missing)")
    ap.add_argument("--runs", type=int, default=2, help="runs of each move (the best counts)")
    ap.add_argument("--startup-runs", type=int, default=5, help="runs of each start-up command (the best counts)")
    args = ap.parse_args()
    corpus, files = corpus_files(args.corpus)
    ct = [f for f in files if f["type"] == "CT"]
    study, series = ct[0]["study_instance_uid"], ct[0]["series_instance_uid"]
    mb = sum(f["size"] for f in ct) / 1e6
    gw_port = free_port()
    rows: list[tuple[str, str, float, float | None]] = []
    stages: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        qr, qr_port = dcmqrscp(tmp / "dcmqrscp", gw_port)
        try:
            oc, oc_port = orthanc(tmp / "orthanc", gw_port)
        except BaseException:
            stop(qr)
            raise
        try:
            storescu(qr_port, "QRSCP", [str(corpus / f["path"]) for f in files])
            storescu(oc_port, "ORTHANC", [str(corpus / f["path"]) for f in ct])
            archives = {"dcmqrscp": ("QRSCP", qr_port), "orthanc": ("ORTHANC", oc_port)}
            startup = min(timed([*GW, "version"])[0] for _ in range(3))
            for name, (aet, port) in archives.items():
                best: dict[str, float] = {}
                for _ in range(args.runs):
                    for tool in ("gateway", "movescu"):
                        rx = Receiver(tmp / "rx", gw_port, archives)
                        try:
                            if tool == "gateway":
                                took, out = timed([*GW, "move", name, "--series", series, "--study", study,
                                                   "--config", str(rx.root), "-q"])
                                m = re.search(r"with warning in ([\d.]+) s", out)
                                if m and took < best.get(tool, 1e9):
                                    stages[name] = (f"{name}: total {took:.2f} s = C-MOVE (association to final "
                                                  f"response) {float(m.group(1)):.2f} s + the rest "
                                                  f"{took - float(m.group(1)):.2f} s (interpreter, plugins, "
                                                  f"config, index check; `dicom-gateway version` alone "
                                                  f"{startup:.2f} s); the client used {CPU['last']:.2f} s of CPU")
                            else:
                                took, _ = timed(["/usr/bin/movescu", "-S", "-aet", "BENCH", "-aec", aet, "-aem",
                                                 "BENCH", "-k", "QueryRetrieveLevel=SERIES",
                                                 "-k", f"StudyInstanceUID={study}", "-k", f"SeriesInstanceUID={series}",
                                                 "127.0.0.1", str(port)])
                                stages[f"{name} movescu"] = f"{name}: movescu {took:.2f} s, client CPU {CPU['last']:.2f} s"
                            got = rx.stored()
                            if got != len(ct):
                                raise RuntimeError(f"{tool} from {name}: {got} of {len(ct)} objects arrived")
                        finally:
                            rx.stop()
                        best[tool] = min(best.get(tool, 1e9), took)
                        print(f"  move from {name} by {tool}: {took:.2f} s", file=sys.stderr)
                rows.append((f"move CT series ({len(ct)} objects, {mb:.0f} MB) from {name}", "dicom-gateway move",
                             best["gateway"], best["movescu"] / best["gateway"]))
                rows.append(("", "movescu", best["movescu"], None))

            # find --recursive of the whole corpus in dcmqrscp
            spec = f"QRSCP@127.0.0.1:{qr_port}"
            best_gw = best_dcmtk = 1e9
            nodes = queries = 0
            for _ in range(args.runs):
                took, out = timed([*GW, "find", spec, "--recursive", "--json", "--data-dir", str(tmp / "fd")])
                tree = json.loads(out[: out.rindex("]") + 1])
                nodes = sum(1 + len(s.get("children", [])) + sum(len(x.get("children", [])) for x in s.get("children", []))
                            for s in tree)
                best_gw = min(best_gw, took)
                t2, queries = findscu_walk(qr_port)
                best_dcmtk = min(best_dcmtk, t2)
            rows.append((f"find --recursive, whole corpus ({nodes} answers, {queries} queries)", "dicom-gateway find",
                         best_gw, best_dcmtk / best_gw))
            rows.append(("", f"findscu x {queries} processes", best_dcmtk, None))
            rows += startup_rows(args.startup_runs, qr_port, tmp)
        finally:
            stop(qr)
            stop(oc)

    print(f"\n| what | client | seconds | ratio (DCMTK / gateway) |\n| --- | --- | --- | --- |")
    for what, client, secs, ratio in rows:
        print(f"| {what} | {client} | {secs:.2f} | {'' if ratio is None else f'{ratio:.2f}'} |")
    print("\nwhere the gateway's move time goes (best run):")
    for line in stages.values():
        print(f"- {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
