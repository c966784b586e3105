"""Hot reload (DESIGN §4): changes apply without restart; running
associations finish on their old config; a broken config keeps the last
good one serving."""

from __future__ import annotations

import time

import pytest
from pynetdicom import AE

from conftest import basic_toml, free_port, wait_for, wait_port
from gateway.net.scu import AssociationFailed, Peer, echo


def can_echo(port: int, called: str) -> bool:
    try:
        return echo(Peer("127.0.0.1", port, called_ae=called, timeout=5))[0].status == 0
    except AssociationFailed:
        return False


def open_association(port: int, called: str):
    ae = AE(ae_title="HOLDER")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    return assoc


@pytest.mark.parametrize("receive_path", ["rust", "pynetdicom"])
def test_change_ae_title_and_add_port_while_association_open(inprocess_gateway, tmp_path, receive_path):
    port, port2 = free_port(), free_port()
    data = tmp_path / "data"
    gw = inprocess_gateway(basic_toml(port, data, ae_titles=("OLD_AE",), receive_path=receive_path))
    held = open_association(gw.port, "OLD_AE")
    try:
        toml = basic_toml(port, data, ae_titles=("NEW_AE",), receive_path=receive_path)
        toml += f'\n[[listeners]]\nport = {port2}\nbind = "127.0.0.1"\nae_titles = ["NEW_AE"]\n'
        (gw.config_dir / "gateway.toml").write_text(toml)
        wait_for(lambda: gw.worker.runtime.generation == 2, what="reload")
        wait_port(port2, timeout=5)
        assert can_echo(port, "NEW_AE")
        assert can_echo(port2, "NEW_AE")
        assert not can_echo(port, "OLD_AE")  # new associations see the new AE title
        # The association opened before the reload still works on its old config.
        rsp = held.send_c_echo()
        assert rsp.Status == 0
    finally:
        held.release()
    # Removing the second listener closes that port.
    (gw.config_dir / "gateway.toml").write_text(basic_toml(port, data, ae_titles=("NEW_AE",), receive_path=receive_path))
    wait_for(lambda: gw.worker.runtime.generation == 3, what="second reload")
    assert not can_echo(port2, "NEW_AE")


def test_broken_config_keeps_last_good(inprocess_gateway, tmp_path):
    from gateway.metrics import METRICS

    port = free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "data"))
    failures = METRICS.get("gateway_config_reloads_total", result="failure")
    (gw.config_dir / "gateway.toml").write_text("[node\nbroken = ")
    wait_for(lambda: METRICS.get("gateway_config_reloads_total", result="failure") > failures, what="failed reload")
    assert gw.worker.runtime.generation == 1
    assert "gateway.toml" in (gw.worker.last_reload_error or "")
    assert can_echo(port, "DICOM_GATEWAY")
    # A valid but semantically wrong config (unknown key) is refused the same way.
    (gw.config_dir / "gateway.toml").write_text(basic_toml(port, tmp_path / "data").replace("[node]", "[node]\nbogus_key = 1"))
    wait_for(lambda: "bogus_key" in (gw.worker.last_reload_error or ""), what="validation error")
    assert can_echo(port, "DICOM_GATEWAY")
    # Fixing it is picked up.
    (gw.config_dir / "gateway.toml").write_text(basic_toml(port, tmp_path / "data", ae_titles=("FIXED",)))
    wait_for(lambda: gw.worker.runtime.generation == 2, what="recovery")
    assert can_echo(port, "FIXED")


def test_port_in_use_keeps_last_good(inprocess_gateway, tmp_path):
    import socket

    port = free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "data"))
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    try:
        toml = basic_toml(port, tmp_path / "data", ae_titles=("OTHER",))
        toml += f'\n[[listeners]]\nport = {taken}\nbind = "127.0.0.1"\n'
        (gw.config_dir / "gateway.toml").write_text(toml)
        wait_for(lambda: gw.worker.last_reload_error is not None, what="provision failure")
        assert gw.worker.runtime.generation == 1
        assert can_echo(port, "DICOM_GATEWAY")
    finally:
        blocker.close()
