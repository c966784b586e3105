"""Association policy (STO-4, STO-9, SEC-3) and plugin failure isolation."""

from __future__ import annotations

import threading
import time

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pynetdicom import AE

from conftest import basic_toml, free_port
from gateway.net.scu import AssociationFailed, Peer, echo
from test_malformed import associate_rq, read_pdu, connect

RAISING = "1.2.826.0.1.3680043.10.1472.99.2"
HANGING = "1.2.826.0.1.3680043.10.1472.99.3"


def rejection(port, called="DICOM_GATEWAY", calling="TEST"):
    with pytest.raises(AssociationFailed) as info:
        echo(Peer("127.0.0.1", port, called_ae=called, calling_ae=calling, timeout=10))
    return str(info.value)


def test_max_associations_rejects_with_local_limit_exceeded(inprocess_gateway, tmp_path):
    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d", extra_node="max_associations = 2"))
    held = []
    for _ in range(2):
        ae = AE(ae_title="HOLDER")
        ae.add_requested_context("1.2.840.10008.1.1")
        a = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
        assert a.is_established
        held.append(a)
    started = time.monotonic()
    msg = rejection(port)
    assert "rejected-transient" in msg and "local-limit-exceeded" in msg
    assert time.monotonic() - started < 5  # an answer, not a hang
    for a in held:
        a.release()
    time.sleep(0.3)
    assert echo(Peer("127.0.0.1", port, called_ae="DICOM_GATEWAY"))[0].status == 0


def test_unsupported_application_context_reason_2(inprocess_gateway, tmp_path):
    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d"))
    rq = bytearray(associate_rq())
    uid = b"1.2.840.10008.3.1.1.1"
    i = rq.index(uid)
    rq[i:i + len(uid)] = b"1.2.840.10008.3.1.1.9"
    s = connect(port)
    s.sendall(bytes(rq))
    pdu = read_pdu(s)
    assert pdu[0] == 0x03 and tuple(pdu[7:10]) == (1, 1, 2)


def test_plugin_can_reject_association(inprocess_gateway, tmp_path):
    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d", modules=["misbehave"]))
    assert "calling-AE-title-not-recognized" in rejection(port, calling="BLOCKED_AE")
    assert echo(Peer("127.0.0.1", port, called_ae="DICOM_GATEWAY", calling_ae="FINE"))[0].status == 0


def _store(port, sop_class):
    ae = AE(ae_title="TEST")
    ae.add_requested_context(sop_class, ["1.2.840.10008.1.2"])
    ae.dimse_timeout = 20
    # A late answer comes as the C-STORE-RSP followed by an A-ABORT. pynetdicom's release()
    # can start before it has processed that abort and then waits out the whole ACSE timeout
    # (30 s by default) for an A-RELEASE-RP that will never come: keep that wait short.
    ae.acse_timeout = 2
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
    assert assoc.is_established
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
    try:
        rsp = assoc.send_c_store(ds)
        return int(rsp.Status)
    finally:
        if assoc.is_established:
            assoc.release()


def test_raising_plugin_gives_failure_status_not_dead_worker(inprocess_gateway, tmp_path):
    from gateway.metrics import METRICS

    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d", modules=["misbehave"]))
    before = METRICS.get("gateway_plugin_errors_total", hook="c_store", plugin="misbehave")
    assert _store(port, RAISING) == 0xC001
    assert METRICS.get("gateway_plugin_errors_total", hook="c_store", plugin="misbehave") == before + 1
    assert echo(Peer("127.0.0.1", port, called_ae="DICOM_GATEWAY"))[0].status == 0


def test_hanging_plugin_is_bounded(inprocess_gateway, tmp_path):
    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d", modules=["misbehave"], extra_node="plugin_timeout = 1.0"))
    started = time.monotonic()
    assert _store(port, HANGING) == 0xC001
    assert time.monotonic() - started < 10


def test_sigterm_finishes_inflight_operation(inprocess_gateway, tmp_path):
    """Shutdown lets a running operation answer before the association ends."""
    port = free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "d", modules=["misbehave"], extra_node="plugin_timeout = 3.0"))
    result = {}
    import misbehave

    misbehave.HANGING_STARTED.clear()
    t = threading.Thread(target=lambda: result.setdefault("status", _store(port, HANGING)))
    t.start()
    assert misbehave.HANGING_STARTED.wait(20), "the C-STORE never reached the service"
    gw.worker.shutdown(grace=10)
    t.join(15)
    assert result.get("status") == 0xC001  # answered (after the 3 s budget), not cut off


def test_watchdog_answers_once_and_fast_stores_take_no_hop(inprocess_gateway, tmp_path):
    """Rust path: a C-STORE runs in its association's thread (no pool hand-off); one that
    overruns gets exactly one answer, from the watchdog, and the late result is dropped."""
    from gateway.net import dispatch

    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d", modules=["misbehave"], extra_node="plugin_timeout = 1.0"))
    submitted = []
    real_submit = dispatch._pool.submit
    dispatch._pool.submit = lambda fn: submitted.append(fn) or real_submit(fn)
    try:
        assert _store(port, HANGING) == 0xC001  # one response; a second would break the SCU's exchange
        assert _store(port, RAISING) == 0xC001  # in time (it raises at once): answered by the call itself
    finally:
        dispatch._pool.submit = real_submit
    assert submitted == []
