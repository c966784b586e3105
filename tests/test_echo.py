"""Verification (VER-1, VER-2) against DCMTK, and `serve` as operators run it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from conftest import basic_toml, dcmtk, free_port, wait_port, write_config

NODELAY = dict(os.environ, TCP_NODELAY="1")


def gateway_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          timeout=60, **kw)


@pytest.fixture(params=["rust", "pynetdicom"])
def served(request, gateway_process, tmp_path):
    port = free_port()
    cfg = write_config(tmp_path / "cfg", basic_toml(port, tmp_path / "data", receive_path=request.param,
                                                    ae_titles=("DICOM_GATEWAY", "SECOND_AE")))
    return gateway_process(["serve", "--config", str(cfg)], port)


def test_dcmtk_echoscu_success(served):
    # VER-1: C-ECHO SCP, Implicit VR LE
    out = subprocess.run([dcmtk("echoscu"), "-v", "-aec", "DICOM_GATEWAY", "127.0.0.1", str(served.port)],
                         capture_output=True, text=True, timeout=30, env=NODELAY)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "Received Echo Response (Success)" in out.stdout + out.stderr


def test_dcmtk_echoscu_second_ae_title(served):
    out = subprocess.run([dcmtk("echoscu"), "-aec", "SECOND_AE", "127.0.0.1", str(served.port)],
                         capture_output=True, text=True, timeout=30, env=NODELAY)
    assert out.returncode == 0, out.stderr


def test_dcmtk_echoscu_wrong_called_ae_rejected_reason_7(served):
    # STO-4: A-ASSOCIATE-RJ rejected-permanent, service-user, reason 7
    out = subprocess.run([dcmtk("echoscu"), "-aec", "NOT_HERE", "127.0.0.1", str(served.port)],
                         capture_output=True, text=True, timeout=30, env=NODELAY)
    text = out.stdout + out.stderr
    assert out.returncode != 0
    assert "Association Rejected" in text
    assert "Rejected Permanent" in text and "Service User" in text
    assert "Called AE Title Not Recognized" in text
    assert "association rejected" in served.output()


def test_our_echo_against_dcmtk_storescp(tmp_path):
    port = free_port()
    scp = subprocess.Popen([dcmtk("storescp"), "-aet", "STORESCP", "--output-directory", str(tmp_path), str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=NODELAY)
    try:
        wait_port(port)
        out = gateway_cli("echo", "127.0.0.1", str(port), "--aec", "STORESCP", "--aet", "GW_TEST")
        assert out.returncode == 0, out.stderr
        assert "Success (0x0000)" in out.stdout
    finally:
        scp.terminate()
        scp.wait(10)


def test_our_echo_exit_codes(served):
    ok = gateway_cli("echo", "127.0.0.1", str(served.port), "--aec", "DICOM_GATEWAY", "--repeat", "3")
    assert ok.returncode == 0 and ok.stdout.count("Success") == 3
    rejected = gateway_cli("echo", "127.0.0.1", str(served.port), "--aec", "WRONG")
    assert rejected.returncode == 2
    assert "called-AE-title-not-recognized" in rejected.stderr
    unreachable = gateway_cli("echo", "127.0.0.1", str(free_port()), "--timeout", "2")
    assert unreachable.returncode == 3


def test_sigterm_exits_cleanly(served):
    served.wait_for_output("gateway ready")
    assert served.stop(signal.SIGTERM) == 0
    out = served.output()
    assert "stopping" in out and "shutting down" in out


def test_serve_on_embedded_defaults(gateway_process, tmp_path):
    """No config at all: DICOM_GATEWAY on the given port (default 11112)."""
    port = free_port()
    gp = gateway_process(["serve", "--port", str(port), "--data-dir", str(tmp_path / "d"), "--workers", "1"], port)
    out = subprocess.run([dcmtk("echoscu"), "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port)],
                         capture_output=True, text=True, timeout=30, env=NODELAY)
    assert out.returncode == 0, out.stderr + gp.output()


def test_workers_share_port(gateway_process, tmp_path):
    port = free_port()
    toml = basic_toml(port, tmp_path / "data").replace("workers = 1", "workers = 3")
    cfg = write_config(tmp_path / "cfg", toml.replace('log_format = "text"', 'log_format = "json"'))
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    for _ in range(24):
        out = subprocess.run([dcmtk("echoscu"), "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port)],
                             capture_output=True, text=True, timeout=30, env=NODELAY)
        assert out.returncode == 0, out.stderr
    import json

    pids = {json.loads(line)["pid"] for line in gp.output().splitlines()
            if line.startswith("{") and '"association accepted"' in line}
    assert len(pids) >= 2, f"SO_REUSEPORT should spread 24 associations over 3 workers, saw {pids}"


def test_config_check_cli(tmp_path):
    port = free_port()
    good = write_config(tmp_path / "good", basic_toml(port, tmp_path / "d"))
    out = gateway_cli("config", "check", str(good))
    assert out.returncode == 0, out.stdout + out.stderr
    bad = write_config(tmp_path / "bad", basic_toml(port, tmp_path / "d").replace("workers = 1", "workers = 'many'"))
    out = gateway_cli("config", "check", str(bad))
    assert out.returncode == 1
    assert "gateway.toml:" in out.stdout + out.stderr and "workers" in out.stdout + out.stderr


def test_version_and_plugins_cli():
    out = gateway_cli("version")
    assert out.returncode == 0 and "rust extension" in out.stdout and "not built" not in out.stdout
    out = gateway_cli("plugins")
    assert out.returncode == 0
    assert "verification" in out.stdout and "register_services" in out.stdout


def test_metrics_and_health_endpoints(gateway_process, tmp_path):
    import json
    import urllib.request

    port, http = free_port(), free_port()
    toml = basic_toml(port, tmp_path / "data").replace("[http]\nenabled = false", f'[http]\nbind = "127.0.0.1"\nport = {http}')
    cfg = write_config(tmp_path / "cfg", toml)
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    gp.wait_for_output("gateway ready")
    out = subprocess.run([dcmtk("echoscu"), "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port)],
                         capture_output=True, text=True, timeout=30, env=NODELAY)
    assert out.returncode == 0
    health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=5).read())
    assert health == {"status": "ok", "workers": 1}
    import time

    deadline = time.monotonic() + 5
    while True:  # workers publish their counters every second
        text = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5).read().decode()
        if 'gateway_dimse_requests_total{op="c_echo",status="Success"} 1' in text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert 'gateway_dimse_requests_total{op="c_echo",status="Success"} 1' in text
    assert "gateway_config_generation" in text
