"""C-STORE and C-ECHO served on the DUL thread (gateway.net.direct, issue 10).

What the peer sees must not change: the same statuses, the same response bytes
pynetdicom would have written, the same fallbacks. What changes is that plain
requests no longer go through pynetdicom's DIMSE decode and the association
thread, which these tests check by counting the calls of that path.
"""

from __future__ import annotations

import os
import subprocess
from io import BytesIO

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import decode
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA

from conftest import basic_toml, dcmtk, free_port, write_cts
from gateway.index import Index
from gateway.net import direct
from gateway.net.association import GatewayAssociation

NODELAY = dict(os.environ, TCP_NODELAY="1")
CT = "1.2.840.10008.5.1.4.1.1.2"


def _encoded_command(primitive) -> bytes:
    """The command set pynetdicom writes for ``primitive`` (implicit VR LE group 0000)."""
    message = C_STORE_RQ() if isinstance(primitive, C_STORE) else C_ECHO_RQ()
    message.primitive_to_message(primitive)
    pdvs = message.encode_msg(1, 16382)
    return b"".join(item[1][1:] for p in pdvs for item in p.presentation_data_value_list if item[1][0] & 0x01)


def test_command_decoder_reads_what_pynetdicom_writes():
    rq = C_STORE()
    rq.MessageID = 7
    rq.AffectedSOPClassUID = CT
    rq.AffectedSOPInstanceUID = "1.2.3.4.5"
    rq.Priority = 1
    rq.MoveOriginatorApplicationEntityTitle = "MOVER"
    rq.MoveOriginatorMessageID = 99
    rq.DataSet = BytesIO(b"\x08\x00\x18\x00\x02\x00\x00\x00ab")
    command = _encoded_command(rq)
    fields = direct.decode_command(command)
    request = direct.DirectRequest(fields, payload=object())
    assert (request.MessageID, request.AffectedSOPClassUID, request.AffectedSOPInstanceUID, request.Priority,
            request.MoveOriginatorApplicationEntityTitle, request.MoveOriginatorMessageID) == (
        7, CT, "1.2.3.4.5", 1, "MOVER", 99)
    assert decode(BytesIO(command), True, True).CommandField == 0x0001  # the same bytes pydicom reads

    echo = C_ECHO()
    echo.MessageID = 3
    echo.AffectedSOPClassUID = "1.2.840.10008.1.1"
    fields = direct.decode_command(_encoded_command(echo))
    assert fields[0x0100] == b"\x30\x00" and fields[0x0800] == b"\x01\x01"


@pytest.mark.parametrize("garbage", [
    b"",
    b"\x00\x00\x00\x00\x04\x00\x00\x00\xff\xff\xff\xff",  # group length that lies
    b"\x08\x00\x00\x00\x04\x00\x00\x00\x00\x00\x00\x00",  # not group 0000
    b"\x00\x00\x00\x01\x02\x00\x00\x00\x01\x00\x00\x00\x00\x01\x02\x00\x00\x00\x01\x00",  # element twice
    b"\x00\x00\x00\x01\x10\x00\x00\x00\x01",  # length past the end
])
def test_command_decoder_declines_what_it_cannot_read_plainly(garbage):
    assert direct.decode_command(garbage) is None


def test_response_pdu_is_what_pynetdicom_writes():
    command = b"\x00\x00\x00\x00\x04\x00\x00\x00\x12\x00\x00\x00" + b"\x00\x00\x00\x01\x02\x00\x00\x00\x01\x80"
    pdata = P_DATA()
    pdata.presentation_data_value_list = [[5, b"\x03" + command]]
    pdu = P_DATA_TF()
    pdu.from_primitive(pdata)
    assert direct.pdata_pdu(5, command) == pdu.encode()


@pytest.fixture
def served(monkeypatch):
    """Counts requests that took pynetdicom's path (decode, association thread)."""
    calls = []
    real = GatewayAssociation._serve_request

    def counting(self, msg, context_id):
        calls.append(type(msg).__name__)
        return real(self, msg, context_id)

    monkeypatch.setattr(GatewayAssociation, "_serve_request", counting)
    return calls


def test_dcmtk_stores_and_echoes_take_the_direct_path(inprocess_gateway, tmp_path, served):
    port = free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "d"))
    files = write_cts(tmp_path / "cts", 12)
    done = subprocess.run([dcmtk("storescu"), "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port), *map(str, files)],
                          env=NODELAY, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    echo = subprocess.run([dcmtk("echoscu"), "-aec", "DICOM_GATEWAY", "--repeat", "5", "127.0.0.1", str(port)],
                          env=NODELAY, capture_output=True, text=True, timeout=60)
    assert echo.returncode == 0, echo.stderr
    assert served == [], "plain C-STORE/C-ECHO requests went through pynetdicom's DIMSE path"
    index = Index(gw.worker.runtime.config.effective_database_url())
    assert index.stats()["instances"] == 12


def test_a_dimse_watcher_gets_pynetdicom_path_and_the_same_answers(inprocess_gateway, tmp_path, served, monkeypatch):
    """With a handler watching DIMSE messages bound, every request fires its events
    again; the peer gets the same statuses."""
    seen = []
    real_init = GatewayAssociation.__init__

    def with_watcher(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        self.bind(evt.EVT_DIMSE_RECV, lambda event: seen.append(type(event.message).__name__))

    monkeypatch.setattr(GatewayAssociation, "__init__", with_watcher)
    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d"))
    ae = AE(ae_title="WATCHED")
    ae.add_requested_context(CT, ["1.2.840.10008.1.2.1"])
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0
        assert assoc.send_c_store(write_cts(tmp_path / "one", 1)[0]).Status == 0
    finally:
        assoc.release()
    assert served == ["C_ECHO", "C_STORE"]
    assert seen == ["C_ECHO_RQ", "C_STORE_RQ"]


def test_failure_statuses_are_the_same_on_the_direct_path(inprocess_gateway, tmp_path, served):
    """An image without Pixel Data (STO-8) is answered with its status and Error
    Comment: an optional element, so that response is encoded by pynetdicom."""
    from pydicom.dataset import FileMetaDataset

    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d"))
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = CT, "1.2.3.4.77"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID, ds.Modality = "1.2.3.1", "1.2.3.2", "P", "CT"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ae = AE(ae_title="NOPIXELS")
    ae.add_requested_context(CT, ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
    assert assoc.is_established
    try:
        rsp = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert rsp.Status == 0xA900 and "Pixel Data" in rsp.ErrorComment
    assert served == []


def test_an_overrunning_store_is_answered_by_the_watchdog_on_the_direct_path(inprocess_gateway, tmp_path, served):
    """The DUL thread is the one inside the hung service, so the watchdog writes the
    failure response and the A-ABORT itself; the peer gets one answer within the
    budget, the association ends, and the gateway goes on serving others."""
    import time

    import misbehave
    from pydicom.dataset import FileMetaDataset
    from pynetdicom import evt as pevt

    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d", modules=["misbehave"], extra_node="plugin_timeout = 1.0"))
    ae = AE(ae_title="HUNG")
    ae.add_requested_context(misbehave.HANGING_SOP_CLASS, ["1.2.840.10008.1.2"])
    ae.dimse_timeout = 20
    aborted = []
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY",
                         evt_handlers=[(pevt.EVT_ABORTED, lambda event: aborted.append(True))])
    assert assoc.is_established
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = misbehave.HANGING_SOP_CLASS, "1.2.3.4.5.6"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2"
    started = time.monotonic()
    rsp = assoc.send_c_store(ds)
    assert rsp.Status == 0xC001 and time.monotonic() - started < 5
    deadline = time.monotonic() + 10
    while assoc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert aborted and not assoc.is_established
    assert served == []  # it took the direct path
    done = subprocess.run([dcmtk("echoscu"), "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port)],
                          env=NODELAY, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
