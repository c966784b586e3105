"""Isolation and reload (issue 11 item 5): a plugin enabled or disabled in
``plugins/*.toml`` takes effect on hot reload, without a restart; a hook past
``node.hook_timeout`` is abandoned for that operation and counted; a broken
third-party plugin (import error, raising hook, hanging hook) leaves the
gateway serving DCMTK peers with proper statuses."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE

from conftest import basic_toml, dcmtk, free_port, third_party_plugins, wait_for, write_config, write_cts
from gateway.metrics import METRICS

NODELAY = dict(os.environ, TCP_NODELAY="1")
CT = "1.2.840.10008.5.1.4.1.1.2"
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def storescu(port, files, *, calling="ISOLATION", env=NODELAY):
    run = subprocess.run([dcmtk("storescu"), "-v", "-aet", calling, "-aec", "DICOM_GATEWAY",
                          "127.0.0.1", str(port), *map(str, files)],
                         capture_output=True, text=True, timeout=60, env=env)
    return run.returncode, run.stdout + run.stderr


def store_and_find(port, tmp: Path):
    """One association: a C-STORE (its status) and whether Study Root FIND was accepted."""
    ae = AE(ae_title="RELOADER")
    ae.add_requested_context(CT, ["1.2.840.10008.1.2.1"])
    ae.add_requested_context(STUDY_FIND)
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
    assert assoc.is_established
    try:
        ds = dcmread(write_cts(tmp / f"rl{time.monotonic_ns()}", 1)[0])
        status = int(assoc.send_c_store(ds).Status)
        find = any(cx.abstract_syntax == STUDY_FIND for cx in assoc.accepted_contexts)
    finally:
        assoc.release()
    return status, find


def observed(data: Path) -> int:
    path = data / "observed.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_plugins_enabled_and_disabled_on_hot_reload(inprocess_gateway, tmp_path):
    port, data = free_port(), tmp_path / "d"
    gw = inprocess_gateway(basic_toml(port, data, modules=["observer"]))
    assert store_and_find(port, tmp_path) == (0, True) and observed(data) == 1

    # a config-module plugin (observer) and a built-in entry-point one (query_retrieve) off
    (gw.config_dir / "plugins").mkdir()
    (gw.config_dir / "plugins" / "observer.toml").write_text("enabled = false\n")
    (gw.config_dir / "plugins" / "query_retrieve.toml").write_text("enabled = false\n")
    wait_for(lambda: gw.worker.runtime.generation == 2, what="reload")
    assert "observer" not in gw.worker.runtime.plugins.infos
    assert store_and_find(port, tmp_path) == (0, False)  # stored; C-FIND no longer offered
    assert observed(data) == 1  # the disabled plugin saw nothing

    (gw.config_dir / "plugins" / "observer.toml").write_text("enabled = true\n")
    (gw.config_dir / "plugins" / "query_retrieve.toml").unlink()
    wait_for(lambda: gw.worker.runtime.generation == 3, what="second reload")
    assert store_and_find(port, tmp_path) == (0, True) and observed(data) == 2


def test_a_hook_past_its_budget_is_abandoned_for_that_operation_and_counted(inprocess_gateway, tmp_path):
    import slowhooks

    slowhooks.RELEASE.clear()
    port, data = free_port(), tmp_path / "d"
    gw = inprocess_gateway(
        basic_toml(port, data, modules=["slowhooks"], extra_node="hook_timeout = 0.5"),
        **{"plugins/slowhooks.toml": 'hang = ["gateway_instance_received", "gateway_instance_stored"]\n'
                                     'policy_ae = "HANG_POLICY"\n'})
    counted = {h: METRICS.get("gateway_hook_timeouts_total", hook=h, plugin="slowhooks")
               for h in ("gateway_instance_received", "gateway_instance_stored", "gateway_association_requested")}
    files = sorted(write_cts(tmp_path / "in", 3))
    try:
        code, out = storescu(port, files)
        # every object stored and answered Success: the hung hooks were left behind
        assert code == 0 and out.count("Received Store Response (Success)") == 3, out
        # the first object's gateway_instance_received overran; from then on the plugin
        # was skipped while that call still ran (its stored hook included): 3 counted each
        for hook in ("gateway_instance_received", "gateway_instance_stored"):
            assert METRICS.get("gateway_hook_timeouts_total", hook=hook, plugin="slowhooks") == counted[hook] + 3
        assert not (data / "slowhooks.txt").exists()

        # a policy hook that cannot answer refuses the association (fails closed), transiently
        echo = subprocess.run([dcmtk("echoscu"), "-aet", "HANG_POLICY", "-aec", "DICOM_GATEWAY",
                               "127.0.0.1", str(port)], capture_output=True, text=True, timeout=30, env=NODELAY)
        assert echo.returncode != 0 and "Association Rejected" in echo.stdout + echo.stderr, echo.stderr
        assert "Transient" in echo.stdout + echo.stderr
        assert METRICS.get("gateway_hook_timeouts_total", hook="gateway_association_requested",
                           plugin="slowhooks") == counted["gateway_association_requested"] + 1
    finally:
        slowhooks.RELEASE.set()
    # once the abandoned call returns, the plugin is called again, within its budget
    host = gw.worker.runtime.plugins
    wait_for(lambda: not any(host._stuck.values()), what="the abandoned calls to end")
    later = write_cts(tmp_path / "more", 1)[0]
    code, out = storescu(port, [later])
    assert code == 0 and "(Success)" in out, out
    seen = (data / "slowhooks.txt").read_text().splitlines()
    # the three objects it was skipped for were never seen; the one after is
    assert seen == [dcmread(later).SOPInstanceUID]


BROKEN = {
    "noimport": "import module_that_is_not_installed\n",
    "raising": '''
        from gateway.hookspecs import hookimpl

        @hookimpl
        def gateway_instance_stored(instance, config):
            raise RuntimeError("raising on purpose")

        @hookimpl
        def gateway_association_opened(association):
            raise RuntimeError("raising on purpose")
    ''',
    "hanging": '''
        import time
        from gateway.hookspecs import hookimpl

        @hookimpl
        def gateway_instance_received(request):
            time.sleep(30)
    ''',
}


def test_broken_third_party_plugins_leave_the_gateway_serving_dcmtk(gateway_process, tmp_path):
    env = third_party_plugins(tmp_path / "site", BROKEN)
    port = free_port()
    cfg = write_config(tmp_path / "cfg", basic_toml(port, tmp_path / "d", extra_node="hook_timeout = 0.5"))
    gw = gateway_process(["serve", "--config", str(cfg)], port, env={"PYTHONPATH": env["PYTHONPATH"]})
    echo = subprocess.run([dcmtk("echoscu"), "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port)],
                          capture_output=True, text=True, timeout=30, env=NODELAY)
    assert echo.returncode == 0, echo.stdout + echo.stderr
    files = write_cts(tmp_path / "in", 3)
    code, out = storescu(port, files)
    assert code == 0 and out.count("Received Store Response (Success)") == 3, out
    gw.wait_for_output("plugin hook abandoned")
    log = gw.output()
    assert "plugin failed to load; leaving it out" in log and "noimport" in log
    assert "plugin hook failed" in log and "raising on purpose" in log
    assert gw.stop() == 0  # a hung hook thread does not hold up the shutdown
