"""The plugin host (DESIGN §3): every hook documented and tested, built-ins
loaded like third-party plugins, failures isolated."""

from __future__ import annotations

import inspect
import re
import time
from pathlib import Path

import pytest

from conftest import basic_toml, free_port
from gateway import hookspecs
from gateway.net.scu import Peer, echo
from gateway.plugins import PluginHost, load_host
from gateway.runtime import PluginConfigError, build_runtime

HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("gateway_"))
TESTS = Path(__file__).parent


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_docstring(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc) > 80, f"{hook} needs a docstring saying when it is called, what it gets and returns"
    assert re.search(r"[Rr]eturn", doc), f"{hook} docstring must say what it returns"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    name = "test_hook_" + hook.removeprefix("gateway_")
    found = any(re.search(rf"def {name}\b", p.read_text()) for p in TESTS.glob("test_*.py"))
    assert found, f"no test named {name} for hook {hook}"


def _driver_plugin(hook, name):
    class Plugin:
        pass
    def impl(self, registry):
        registry.add(name, lambda *args: ("built", args))
    setattr(Plugin, hook, hookspecs.hookimpl(impl))
    return Plugin()


def _check_driver_hook(hook, attr, kind):
    host = PluginHost().load()
    host.register("site", _driver_plugin(hook, "site-burner"))
    registry = getattr(host, attr)
    assert registry is getattr(host.services, attr), "services see the same drivers as the host"
    assert registry.create("site-burner", "printer", "config") == ("built", ("printer", "config"))
    assert registry.plugins["site-burner"] == "site"
    with pytest.raises(LookupError, match=f"no {kind} named 'nope'"):
        registry.create("nope")
    # A second plugin taking the same name is refused and unloaded, named.
    host.register("copycat", _driver_plugin(hook, "site-burner"))
    assert "copycat" in host.failed and registry.plugins["site-burner"] == "site"


def test_hook_register_print_drivers():
    _check_driver_hook("gateway_register_print_drivers", "print_drivers", "print driver")


def test_hook_register_media_drivers():
    _check_driver_hook("gateway_register_media_drivers", "media_drivers", "media driver")


def test_builtins_load_through_entry_points():
    host = load_host()
    info = host.infos["verification"]
    assert info.distribution == "dicom-gateway-plugins"
    assert "gateway_register_services" in info.hooks
    assert "verification" in host.services.services


def test_disable_list():
    host = load_host(disabled=["verification"])
    assert "verification" not in host.infos
    assert "verification" not in host.services.services


def test_hook_register_services():
    host = load_host()
    svc = host.services.find(None, "c_echo", "1.2.840.10008.1.1")
    assert svc is not None and svc.plugin == "verification"


def test_hook_register_storage_backends():
    class Plugin:
        @hookspecs.hookimpl
        def gateway_register_storage_backends(self, registry):
            registry.add("memory", lambda config: {"config": config})

    host = PluginHost().load()
    host.register("mem", Plugin())
    assert host.storage_backends.create("memory", 42) == {"config": 42}
    assert host.storage_backends.plugins["memory"] == "mem"
    with pytest.raises(LookupError, match="no storage backend named 'nope'.*memory"):
        host.storage_backends.create("nope")


def test_registration_failure_unloads_only_that_plugin():
    class Broken:
        @hookspecs.hookimpl
        def gateway_register_services(self, registry):
            raise ValueError("cannot register")

    host = PluginHost().load()
    host.register("broken", Broken())
    assert "broken" in host.failed
    assert "verification" in host.services.services


def test_hook_config_loaded(tmp_path):
    from gateway.config import load_config

    class Picky:
        @hookspecs.hookimpl
        def gateway_config_loaded(self, config):
            return [] if config.node.ae_title == "GOOD" else ["plugins/picky.toml: key 'x': needs AE GOOD"]

    port = free_port()
    cfg_dir = tmp_path / "c"
    cfg_dir.mkdir()
    (cfg_dir / "gateway.toml").write_text(basic_toml(port, tmp_path / "d", ae_titles=("BAD",)))
    host = PluginHost().load()
    host.register("picky", Picky())
    with pytest.raises(PluginConfigError, match="needs AE GOOD"):
        build_runtime(load_config(cfg_dir), 1, host=host)
    (cfg_dir / "gateway.toml").write_text(basic_toml(port, tmp_path / "d", ae_titles=("GOOD",)))
    assert build_runtime(load_config(cfg_dir), 2, host=host).generation == 2


def test_hook_association_requested(inprocess_gateway, tmp_path):
    from gateway.net.scu import AssociationFailed

    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d", modules=["misbehave"]))
    with pytest.raises(AssociationFailed, match="calling-AE-title-not-recognized"):
        echo(Peer("127.0.0.1", port, called_ae="DICOM_GATEWAY", calling_ae="BLOCKED_AE", timeout=5))


def test_hook_association_opened(inprocess_gateway, tmp_path):
    import recorder

    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d", modules=["recorder"]))
    recorder.EVENTS.clear()
    echo(Peer("127.0.0.1", port, called_ae="DICOM_GATEWAY", calling_ae="OPENER"))
    assert ("opened", "OPENER") in recorder.EVENTS


def test_hook_association_closed(inprocess_gateway, tmp_path):
    import recorder

    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d", modules=["recorder"]))
    recorder.EVENTS.clear()
    echo(Peer("127.0.0.1", port, called_ae="DICOM_GATEWAY", calling_ae="CLOSER"))
    deadline = time.monotonic() + 5
    while ("closed", "CLOSER", "released") not in recorder.EVENTS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("closed", "CLOSER", "released") in recorder.EVENTS


def test_hook_instance_received(inprocess_gateway, tmp_path):
    import recorder
    from pydicom.dataset import Dataset, FileMetaDataset
    from pynetdicom import AE

    from test_transfer import TEST_SOP_CLASS

    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d", modules=["recorder", "bytecheck"]))
    ae = AE(ae_title="VETO")
    ae.add_requested_context(TEST_SOP_CLASS, ["1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
    try:
        statuses = []
        for uid in (recorder.VETO_SOP_INSTANCE, "1.2.826.0.1.3680043.10.1472.99.9.2"):
            ds = Dataset()
            ds.SOPClassUID = TEST_SOP_CLASS
            ds.SOPInstanceUID = uid
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
            rsp = assoc.send_c_store(ds)
            statuses.append(int(rsp.Status))
            if uid == recorder.VETO_SOP_INSTANCE:
                assert rsp.ErrorComment == "vetoed by recorder plugin"
    finally:
        assoc.release()
    assert statuses == [0xA700, 0x0000]
    assert not (tmp_path / "d" / "bytecheck" / f"{recorder.VETO_SOP_INSTANCE}.json").exists()


def test_conformance_statement_is_generated_from_the_registry(tmp_path):
    import subprocess
    import sys

    from conftest import write_config

    cfg = write_config(tmp_path / "c", basic_toml(free_port(), tmp_path / "d", modules=["bytecheck"]),
                       **{"plugins/storage.toml": 'syntax_policy = "proposer-order"\n'})
    import os

    from conftest import TEST_PLUGINS

    out = subprocess.run([sys.executable, "-m", "gateway.cli", "conformance", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ, PYTHONPATH=str(TEST_PLUGINS)))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "| CT Image Storage | 1.2.840.10008.5.1.4.1.1.2 | storage |" in text
    assert "1.2.840.113619.4.27" in text and "proposer's order" in text
    assert "1.2.826.0.1.3680043.10.1472.99.1 | bytecheck" in text  # a plugin's service appears with no core change


def test_scu_role_services_are_in_the_registry_and_the_conformance_statement(tmp_path):
    """Issue 11.2: SCU roles are registered services, found by name through the
    registry (the send command and the forward sender use them so) and listed in
    the generated statement with what they propose and their role selection."""
    from gateway.conformance import render
    from gateway.config import load_config
    from gateway.plugins import load_host

    config = load_config(None, {"data_dir": str(tmp_path / "d")})
    host = load_host()
    services = host.services
    assert sorted(s.name for s in services.scu_services()) == [
        "print-scu", "query-retrieve-scu", "storage-commitment-scu", "storage-scu", "verification"]
    assert callable(services.scu("storage-scu").client.send)
    assert callable(services.scu("storage-commitment-scu").client.request)
    assert services.scu("verification").role == "both"
    with pytest.raises(LookupError, match=r"^no SCU service named 'storage' "
                       r"\(registered: print-scu, query-retrieve-scu, storage-commitment-scu, storage-scu, verification\)$"):
        services.scu("storage")  # the SCP is not an SCU
    text = render(config, host)
    scu = text.split("## SOP classes (SCU)", 1)[1]
    assert ("| CT Image Storage | 1.2.840.10008.5.1.4.1.1.2 | storage-scu | Explicit VR Little Endian, "
            "Implicit VR Little Endian, Explicit VR Big Endian |") in scu
    assert "| Verification SOP Class | 1.2.840.10008.1.1 | verification | Implicit VR Little Endian |" in scu
    assert "| Storage Commitment Push Model SOP Class | 1.2.840.10008.1.20.1 | storage-commitment-scu |" in scu
    assert "with an SCP/SCU role selection item for the SCU role" in scu
    assert "Proposes no SCP/SCU role selection" in scu.split("### storage-scu", 1)[1]
    assert "- **storage-scu** (storage, SCU)." in text


def test_a_plugin_for_another_hook_api_major_is_left_out_and_named():
    import types

    from gateway.hookspecs import API_VERSION, hookimpl

    def make(api):
        mod = types.ModuleType(f"api{api}_plugin")
        mod.GATEWAY_PLUGIN_API = api

        @hookimpl
        def gateway_config_loaded(config):
            return []

        mod.gateway_config_loaded = gateway_config_loaded
        return mod

    host = PluginHost()
    ours = int(API_VERSION.split(".")[0])
    host._register("current", make(ours), "demo", "1")
    host._register("future", make(ours + 1), "demo", "1")
    assert [p.name for p in host.list()] == ["current"]
    assert host.failed == {"future": f"written for hook API {ours + 1}, this gateway has {API_VERSION}"}


def test_hook_sender_poll(inprocess_gateway, tmp_path):
    """`gateway_sender_poll`: called every sender round with the open index; `stopping`
    is set when the sender shuts down."""
    import poller
    from conftest import wait_for

    from pydicom import dcmread
    from pynetdicom import AE

    from conftest import write_cts

    poller._started.clear()
    data, port = tmp_path / "d", free_port()
    gw = inprocess_gateway(basic_toml(port, data, modules=["poller"], extra="[forwarding]\npoll_interval = 0.1\n"))
    ae = AE(ae_title="POLLTEST")  # an object stored, so the index the sender opens exists
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
    assert int(assoc.send_c_store(dcmread(write_cts(tmp_path / "in", 1)[0])).Status) == 0
    assoc.release()
    polls = data / "polls.txt"
    wait_for(lambda: polls.exists() and len(polls.read_text().splitlines()) >= 3, what="three sender rounds")
    assert set(polls.read_text().splitlines()) == {"Index"}
    gw.sender.stop(timeout=10)
    gw.sender = None
    wait_for(lambda: polls.read_text().splitlines()[-1] == "stopping", what="stopping to be set")
