"""Durability where a SIGKILL cannot see it (STO-7): the page cache survives a killed
process, so only the order of the system calls proves that an acknowledged object is
on disk. A real `serve` runs under strace; one C-STORE must show

    file data synced -> renamed into place -> its directory synced -> index commit
    synced -> C-STORE-RSP written to the peer

(removing any one of the fsyncs, or answering before the commit, fails this test)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

from conftest import TEST_PLUGINS, basic_toml, dcmtk, free_port, missing_component, wait_port, write_config, write_cts

SYSCALLS = "fsync,fdatasync,rename,renameat,renameat2,write,sendto,sendmsg"
# (0000,0100) Command Field = 0x8001 C-STORE-RSP, implicit VR LE, as strace -x shows it.
C_STORE_RSP = r"\x00\x00\x00\x01\x02\x00\x00\x00\x01\x80"


def _calls(trace: str) -> list[tuple[str, str]]:
    """(syscall, its text) in completion order, 'unfinished'/'resumed' halves joined."""
    pending: dict[str, str] = {}
    calls = []
    for line in trace.splitlines():
        tid, _, rest = line.partition(" ")
        rest = rest.strip()
        if rest.endswith("<unfinished ...>"):
            pending[tid] = rest[: -len("<unfinished ...>")]
            continue
        if m := re.match(r"<\.\.\. (\w+) resumed>(.*)", rest):
            rest = pending.pop(tid, m.group(1) + "(") + m.group(2)
        if m := re.match(r"(\w+)\(", rest):
            calls.append((m.group(1), rest))
    return calls


def test_store_syncs_file_then_directory_then_index_then_answers(tmp_path):
    strace = shutil.which("strace")
    if not strace:
        missing_component("strace not installed (scripts/test.sh installs it)")
    port = free_port()
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "cfg", basic_toml(port, data))
    [ct] = write_cts(tmp_path / "in", 1)
    uid = ct.stem
    trace_path = tmp_path / "trace"
    exe = shutil.which("dicom-gateway")
    cmd = [exe] if exe else [sys.executable, "-m", "gateway.cli"]
    proc = subprocess.Popen([strace, "-f", "-y", "-x", "-s", "256", "-qq", "-e", f"trace={SYSCALLS}",
                             "-o", str(trace_path), *cmd, "serve", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(TEST_PLUGINS)})
    try:
        wait_port(port, timeout=60)
        subprocess.run([dcmtk("storescu"), "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port), str(ct)],
                       check=True, capture_output=True, timeout=60)
    finally:
        # Stop the gateway itself (its PID is in the data directory's lock file), not
        # strace: strace would detach and leave it running.
        pid_file = data / "run" / "gateway.pid"
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            proc.wait(60)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(10)
    calls = _calls(trace_path.read_text(errors="replace"))

    def first(pred, after: int = -1, what: str = "") -> int:
        for i, (name, text) in enumerate(calls):
            if i > after and pred(name, text):
                return i
        raise AssertionError(f"no {what} after call #{after} in the trace")

    series_dir = next((data / "archive").glob("*/*"))
    synced_tmp = first(lambda n, t: n == "fsync" and f"{uid}.dcm." in t and ".tmp>" in t, what="fsync of the temp file")
    renamed = first(lambda n, t: n.startswith("rename") and f', "{series_dir}/{uid}.dcm"' in t, synced_tmp,
                    "rename into place")
    dir_synced = first(lambda n, t: n in ("fsync", "fdatasync") and f"<{series_dir}>" in t, renamed,
                       "fsync of the series directory")
    index_synced = first(lambda n, t: n in ("fsync", "fdatasync") and "index.db-wal>" in t, dir_synced,
                         "fsync of the index WAL (the commit)")
    answered = first(lambda n, t: n in ("write", "sendto", "sendmsg") and "socket:" in t and C_STORE_RSP in t,
                     what="the C-STORE-RSP")
    assert synced_tmp < renamed < dir_synced < index_synced < answered, (synced_tmp, renamed, dir_synced,
                                                                          index_synced, answered)
