#!/usr/bin/env python3
"""Idle associations (issue 10, goal 5): what 300 open, idle associations cost.

Opens N associations at once with raw sockets (one A-ASSOCIATE-RQ each, built
once with pynetdicom's PDU encoder, so the client costs nothing measurable),
waits for every A-ASSOCIATE-AC, then measures the CPU the target's processes
use over a quiet window, and its RSS; repeated for several rounds to see
whether memory comes back. Targets: the gateway (serve, 2 workers) and DCMTK
storescp --fork, side by side.

    python bench/idle.py [--associations 300] [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import free_port, wait_port, write_gateway_toml  # noqa: E402

ENV = dict(os.environ, TCP_NODELAY="1")
TICK = os.sysconf("SC_CLK_TCK")


def associate_rq(called: str) -> bytes:
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
    from pynetdicom.presentation import build_context

    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "IDLE"
    primitive.called_ae_title = called
    context = build_context("1.2.840.10008.1.1")
    context.context_id = 1
    primitive.presentation_context_definition_list = [context]
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16382
    primitive.user_information = [max_length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def tree(pid: int) -> list[int]:
    out = [pid]
    for child in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split():
        out += tree(int(child))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except OSError:
            pass
    return total


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def open_round(port: int, rq: bytes, n: int) -> tuple[list[socket.socket], float]:
    started = time.perf_counter()
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(rq)
        socks.append(s)
    for s in socks:
        head = s.recv(1)
        if head != b"\x02":
            raise RuntimeError(f"no A-ASSOCIATE-AC (PDU type {head!r})")
    return socks, time.perf_counter() - started


def measure(name: str, cmd: list[str], port: int, called: str, args: argparse.Namespace,
            env: dict | None = None) -> list[tuple]:
    proc = subprocess.Popen(cmd, env={**ENV, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_port(port)
        time.sleep(2)
        rq = associate_rq(called)
        base_rss = rss_mb(tree(proc.pid))
        for round_ in range(1, args.rounds + 1):
            socks, connect_s = open_round(port, rq, args.associations)
            time.sleep(1)  # settle: every association thread started
            pids = tree(proc.pid)
            before = cpu_seconds(pids)
            time.sleep(args.seconds)
            used = cpu_seconds(tree(proc.pid)) - before
            rss = rss_mb(tree(proc.pid))
            for s in socks:
                s.close()
            time.sleep(2)  # let the target notice and clean up
            rows.append((name, round_, connect_s, used / args.seconds * 100, rss, rss_mb(tree(proc.pid)), base_rss))
            print(f"  {name} round {round_}: connect {connect_s:.2f} s, idle CPU {used / args.seconds * 100:.2f}% "
                  f"of a core, RSS {rss:.0f} MB open / {rows[-1][5]:.0f} MB after", file=sys.stderr)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--associations", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        d = Path(tmp) / "gw"
        write_gateway_toml(d, port)  # max_associations: unlimited by default
        rows += measure("gateway", [sys.executable, "-m", "gateway.cli", "serve", "--config", str(d)], port,
                        "BENCH", args)
        port = free_port()
        out = Path(tmp) / "dcmtk"
        out.mkdir()
        rows += measure("DCMTK storescp --fork", ["/usr/bin/storescp", "--fork", "-aet", "BENCH",
                                                  "--output-directory", str(out), str(port)], port, "BENCH", args)
    print(f"\n{args.associations} idle associations, CPU over {args.seconds:.0f} s (all processes of the target)\n")
    print(f"{'target':<24}{'round':>6}{'connect s':>11}{'CPU % core':>12}{'RSS open MB':>13}{'RSS after MB':>14}"
          f"{'RSS start MB':>14}")
    for name, round_, connect_s, cpu, rss, after, base in rows:
        print(f"{name:<24}{round_:>6}{connect_s:>11.2f}{cpu:>12.2f}{rss:>13.0f}{after:>14.0f}{base:>14.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
