"""One gateway per data directory and per port; a quiet exit when stdout's reader goes away."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TEST_PLUGINS, basic_toml, dcmtk, free_port, wait_port, write_config, write_cts
from gateway.net.scu import AssociationFailed, Peer, echo

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TEST_PLUGINS), os.environ.get("PYTHONPATH")])))


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    exe = shutil.which("dicom-gateway")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "gateway.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)


def can_echo(port: int) -> bool:
    try:
        return echo(Peer("127.0.0.1", port, called_ae="DICOM_GATEWAY", timeout=10))[0].status == 0
    except AssociationFailed:
        return False


def wait_until(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    return [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state == "Z"


# ---- data directory ------------------------------------------------------------------

def test_second_serve_on_the_same_data_directory_refuses(gateway_process, tmp_path):
    data = tmp_path / "data"
    port, port2 = free_port(), free_port()
    first = gateway_process(["serve", "--config", str(write_config(tmp_path / "cfg1", basic_toml(port, data)))], port)
    first.wait_for_output("gateway ready")
    assert (data / "run" / "gateway.pid").read_text().strip() == str(first.proc.pid)
    published = data / "run" / "metrics-0.json"
    wait_until(published.exists, "the first gateway's worker to publish its metrics")

    # Another port, so only the data directory is shared.
    out = cli("serve", "--config", str(write_config(tmp_path / "cfg2", basic_toml(port2, data))))
    assert out.returncode == 2, out.stdout + out.stderr
    msg = out.stderr.strip()
    assert len(msg.splitlines()) == 1, msg
    assert f"data directory {data.resolve()} is in use by another gateway, PID {first.proc.pid}" in msg
    assert f"kill {first.proc.pid}" in msg and "--data-dir" in msg and "Traceback" not in msg
    # The second touched nothing: no port of its own, the first's metrics files still there.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port2), timeout=5).close()
    assert published.exists()  # a second start used to delete them
    assert can_echo(port)


def test_killed_gateway_leaves_no_stale_lock(gateway_process, tmp_path):
    data = tmp_path / "data"
    port = free_port()
    cfg = write_config(tmp_path / "cfg", basic_toml(port, data).replace("workers = 1", "workers = 2"))
    first = gateway_process(["serve", "--config", str(cfg)], port)
    first.wait_for_output("gateway ready")
    kids = children(first.proc.pid)
    assert kids
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(30)
    # Its workers and sender follow it (they hold the port and the lock) ...
    wait_until(lambda: all(gone(k) for k in kids), "the killed supervisor's children to exit")
    assert (data / "run" / "gateway.pid").exists()  # ... the file stays, the lock does not
    second = gateway_process(["serve", "--config", str(cfg)], port)
    second.wait_for_output("gateway ready")
    assert can_echo(port)
    assert (data / "run" / "gateway.pid").read_text().strip() == str(second.proc.pid)


# ---- ports at start-up ---------------------------------------------------------------------

def test_port_taken_by_storescp_refuses_to_start(tmp_path):
    port = free_port()
    (tmp_path / "in").mkdir()
    scp = subprocess.Popen([dcmtk("storescp"), "-od", str(tmp_path / "in"), str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        out = cli("serve", "--port", str(port), "--data-dir", str(tmp_path / "data"), "--workers", "1",
                  cwd=tmp_path)
        assert out.returncode == 2, out.stdout + out.stderr
        msg = out.stderr.strip()
        assert f"port {port} (bind 0.0.0.0) is already in use by PID {scp.pid} (storescp" in msg, msg
        assert f"kill {scp.pid}" in msg and "--port N" in msg and "[[listeners]] port" in msg
        assert "Traceback" not in msg
    finally:
        scp.terminate()
        scp.wait(30)


def test_port_taken_by_another_gateway_refuses_to_start(gateway_process, tmp_path):
    port = free_port()
    first = gateway_process(["serve", "--config", str(write_config(
        tmp_path / "cfg1", basic_toml(port, tmp_path / "data1").replace("workers = 1", "workers = 2")))], port)
    first.wait_for_output("gateway ready")
    # Its own data directory: only the port is shared, which SO_REUSEPORT alone would allow.
    out = cli("serve", "--config", str(write_config(tmp_path / "cfg2", basic_toml(port, tmp_path / "data2"))))
    assert out.returncode == 2, out.stdout + out.stderr
    # The workers hold the socket; the message names the supervisor that started them.
    assert f"port {port} (bind 127.0.0.1) is already in use by PID {first.proc.pid} (dicom-gateway serve" \
        in out.stderr, out.stderr
    assert f"kill {first.proc.pid}" in out.stderr


def test_operator_http_port_taken_refuses_to_start(tmp_path):
    port = free_port()
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    http = holder.getsockname()[1]
    try:
        toml = basic_toml(port, tmp_path / "data").replace("[http]\nenabled = false",
                                                          f'[http]\nbind = "127.0.0.1"\nport = {http}')
        out = cli("serve", "--config", str(write_config(tmp_path / "cfg", toml)))
        assert out.returncode == 2, out.stdout + out.stderr
        msg = out.stderr.strip()
        assert f"operator HTTP port {http} (bind 127.0.0.1) is already in use by PID {os.getpid()}" in msg, msg
        assert "[http] port" in msg and "[http] enabled = false" in msg
        assert "continuing without it" not in msg
    finally:
        holder.close()


# ---- ports on reload ------------------------------------------------------------------------

def test_reload_onto_a_taken_port_fails_cleanly(gateway_process, tmp_path):
    port, port2 = free_port(), free_port()
    data = tmp_path / "data"
    base = basic_toml(port, data).replace("workers = 1", "workers = 2")
    cfg = write_config(tmp_path / "cfg", base)
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    gp.wait_for_output("gateway ready")
    # Another program holds port2 with SO_REUSEPORT, as a second gateway would:
    # a plain bind by the workers would succeed and share it silently.
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", port2))
    holder.listen()
    added = base + f'\n[[listeners]]\nport = {port2}\nbind = "127.0.0.1"\nae_titles = ["DICOM_GATEWAY"]\n'
    try:
        (cfg / "gateway.toml").write_text(added)
        wait_until(lambda: gp.output().count("gateway.worker: config reload failed") >= 2,
                   f"both workers to refuse the reload:\n{gp.output()}")
        out = gp.output()
        assert f"listener port {port2} (bind 127.0.0.1) is already in use by PID {os.getpid()}" in out, out
        assert "choose another [[listeners]] port" in out
        assert "gateway.worker: config reloaded" not in out
        assert gp.proc.poll() is None and "worker died" not in gp.output()
        assert can_echo(port)
    finally:
        holder.close()
    # Once the port is free, the same config applies (the digest changed: a comment).
    (cfg / "gateway.toml").write_text(added + "# retry\n")
    wait_until(lambda: gp.output().count("gateway.worker: config reloaded") >= 2,
               f"both workers to reload:\n{gp.output()}")
    assert can_echo(port2) and can_echo(port)
    assert gp.stop() == 0


# ---- a reader that goes away ----------------------------------------------------------------

@pytest.fixture(scope="module")
def stored_data(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("pipe")
    write_cts(base / "cts", 3)
    out = cli("import", str(base / "cts"), "--data-dir", str(base / "data"))
    assert out.returncode == 0, out.stdout + out.stderr
    return base / "data"


@pytest.mark.parametrize("args,status", [
    (["ls"], 141),
    (["queue", "ls"], 141),
    (["plugins"], 141),
    (["--help"], 0),  # argparse writes the help itself and drops the write error
])
def test_closed_stdout_exits_quietly(stored_data, args, status):
    if args[0] in ("ls", "queue"):
        args = args + ["--data-dir", str(stored_data)]
    read, write = os.pipe()
    os.close(read)  # a reader that is gone before the first write
    try:
        exe = shutil.which("dicom-gateway")
        cmd = [exe, *args] if exe else [sys.executable, "-m", "gateway.cli", *args]
        out = subprocess.run(cmd, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120, env=ENV)
    finally:
        os.close(write)
    assert out.returncode == status, out.stderr
    assert out.stderr == "", out.stderr


def test_head_reads_one_line(stored_data):
    exe = shutil.which("dicom-gateway") or "dicom-gateway"
    out = subprocess.run(f"'{exe}' ls --data-dir '{stored_data}' | head -1", shell=True,
                         capture_output=True, text=True, timeout=120, env=ENV)
    assert out.returncode == 0 and out.stdout.startswith("TEST-1"), out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr
