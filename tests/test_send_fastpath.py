"""The Storage SCU's fast path (gateway.net.requestor): hand-encoded C-STORE-RQ,
hand-decoded C-STORE-RSP, the data set streamed from the file by the sending
thread, blocking waits; and the fall back to plain pynetdicom (node.receive_path,
a refused self-test). Real peers: DCMTK storescp, a pynetdicom SCP in the test
where DCMTK cannot misbehave on cue.
"""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import threading
import time
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from pynetdicom import evt
from pynetdicom.dimse_messages import C_ECHO_RSP, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import decode, split_dataset

from conftest import dcmtk, free_port, wait_port
from gateway.net import selftest
from gateway.net.fastpath import decode_store_response, encode_store_command
from gateway.net.requestor import GatewayRequestor
from gateway.net.storescu import (EXPLICIT_BE, EXPLICIT_LE, Outgoing, StoreAssociation, read_file_meta,
                                  send_items)
from test_send import CT, ScriptedSCP, StoreSCP, _items


def _config(receive_path: str = "rust", data_dir: Path | None = None) -> SimpleNamespace:
    return SimpleNamespace(node=SimpleNamespace(receive_path=receive_path, ae_title="DICOM_GATEWAY",
                                                data_dir=str(data_dir) if data_dir else None))


def _command_of(message) -> bytes:
    """pynetdicom's encoding of a message's command set (the PDVs flagged as command)."""
    return b"".join(p.presentation_data_value_list[0][1][1:] for p in message.encode_msg(1, 0)
                    if p.presentation_data_value_list[0][1][0] & 0x01)


class OptionSCP(StoreSCP):
    """test_send's storescp, with extra command-line options."""

    def __init__(self, tmp: Path, options: tuple[str, ...]) -> None:
        self.out = tmp / f"received-{free_port()}"
        self.out.mkdir(parents=True)
        self.port = free_port()
        self.aet = "STORESCP"
        self.log = open(tmp / f"storescp-{self.port}.log", "wb")
        self.proc = subprocess.Popen([dcmtk("storescp"), "-aet", self.aet, "-od", str(self.out), *options, str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=dict(os.environ, TCP_NODELAY="1"))
        wait_port(self.port)


@pytest.fixture
def peers(tmp_path):
    started: list = []

    def storescp(*options: str) -> StoreSCP:
        scp = OptionSCP(tmp_path, options)
        started.append(scp)
        return scp

    def scripted(**kw) -> ScriptedSCP:
        scp = ScriptedSCP(**kw)
        started.append(scp)
        return scp

    yield SimpleNamespace(storescp=storescp, scripted=scripted)
    for scp in started:
        scp.stop()


# ---- the hand-written codecs equal pynetdicom's -------------------------------------------


@pytest.mark.parametrize("instance", ["1.2.826.0.1.3680043.8.498.12", "1.2.826.0.1.3680043.8.498.123"])
@pytest.mark.parametrize("message_id", [1, 65535])
def test_store_command_equals_pynetdicoms(instance, message_id):
    """The C-STORE-RQ command set (PS3.7 9.3.1.1) is byte for byte what pynetdicom writes,
    odd-length UIDs padded with NUL."""
    req = C_STORE()
    req.MessageID = message_id
    req.Priority = 2
    req.AffectedSOPClassUID = CT
    req.AffectedSOPInstanceUID = instance
    req._dataset_path = (Path(__file__), 0)
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    assert encode_store_command(message_id, CT, instance) == _command_of(message)


@pytest.mark.parametrize("extra", [{}, {"ErrorComment": "disk full"}, {"OffendingElement": [0x00100010, 0x00080018]},
                                   {"ErrorComment": "odd", "OffendingElement": [0x7FE00010]}])
@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xB000, 0xC000])
def test_store_response_decoding_equals_pynetdicoms(status, extra):
    """A C-STORE-RSP (PS3.7 9.3.1.2) decoded by hand gives the primitive pynetdicom's decoder gives."""
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 9
    rsp.AffectedSOPClassUID = CT
    rsp.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.123"
    rsp.Status = status
    for key, value in extra.items():
        setattr(rsp, key, value)
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    command = _command_of(message)
    reference = C_STORE_RSP()
    reference.command_set = decode(BytesIO(command), True, True)
    reference.data_set = BytesIO()
    expected = reference.message_to_primitive()
    got = decode_store_response(command)
    assert got is not None
    for key in ("MessageIDBeingRespondedTo", "AffectedSOPClassUID", "AffectedSOPInstanceUID", "Status",
                "ErrorComment", "OffendingElement", "is_valid_response"):
        assert getattr(got, key) == getattr(expected, key), key


def test_store_response_decoder_declines_anything_else():
    """Other responses and damaged bytes are left to pydicom (None), never misread."""
    echo = C_ECHO()
    echo.MessageIDBeingRespondedTo = 1
    echo.AffectedSOPClassUID = "1.2.840.10008.1.1"
    echo.Status = 0
    message = C_ECHO_RSP()
    message.primitive_to_message(echo)
    assert decode_store_response(_command_of(message)) is None
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 1
    rsp.Status = 0
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    good = _command_of(message)
    assert decode_store_response(good) is not None
    assert decode_store_response(good[:-1]) is None  # truncated
    assert decode_store_response(good[:12] + struct.pack("<HHI", 0x0008, 0x0018, 0) + good[12:]) is None
    assert decode_store_response(b"") is None


def test_file_meta_reader_equals_split_dataset(corpus_small, tmp_path):
    """read_file_meta gives split_dataset's UIDs and data set offset; a File Meta it does not
    read itself (here over 16 KiB) goes through pydicom, and a file without one fails as there."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    def reference(path: Path) -> tuple[dict[str, str], int]:
        meta, offset = split_dataset(path)
        keys = ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
        return {k: str(meta[k].value) for k in keys if k in meta}, offset

    paths = sorted(corpus_small.rglob("*.dcm"))
    assert paths
    for path in paths:
        assert read_file_meta(path) == reference(path)
    ds = pydicom.dcmread(paths[0])
    ds.file_meta.PrivateInformationCreatorUID = "1.2.826.0.1.3680043.8.498.1"
    ds.file_meta.PrivateInformation = b"\x01" * 20000
    big_meta = tmp_path / "big-meta.dcm"
    ds.save_as(big_meta, enforce_file_format=True)
    assert read_file_meta(big_meta) == reference(big_meta)
    assert read_file_meta(big_meta)[1] > 20000
    bare = tmp_path / "no-preamble.dcm"
    bare.write_bytes(big_meta.read_bytes()[128:])
    with pytest.raises(InvalidDicomError):
        read_file_meta(bare)


# ---- on the wire -------------------------------------------------------------------------


def test_fast_path_sends_byte_exact_in_small_pdus(peers, corpus_small):
    """Every data set arrives byte for byte as stored, fragmented to the peer's small
    maximum PDU (storescp -pdu 4096, bit-preserving), on the gateway.net.requestor path."""
    scp = peers.storescp("-pdu", "4096", "+B")
    items = [i for t in ("CT", "PT", "MFRGB", "SC") for i in _items(corpus_small, "explicit-le", t)]
    sa = StoreAssociation.open(scp.dest(), items, _config())
    try:
        assert isinstance(sa.association, GatewayRequestor)
        assert sa.association.acceptor.maximum_length == 4096
        results = [sa.send(i) for i in items]
    finally:
        sa.release()
    assert all(r.ok and r.status == 0 for r in results), [r.error for r in results if not r.ok]
    received = {}
    for path in scp.received():
        meta, offset = read_file_meta(path)
        received[meta["MediaStorageSOPInstanceUID"]] = path.read_bytes()[offset:]
    for item in items:
        _, offset = read_file_meta(item.path)
        assert received[item.sop_instance_uid] == item.path.read_bytes()[offset:]


def test_receive_path_pynetdicom_and_refused_self_test_use_plain_pynetdicom(peers, corpus_small, monkeypatch, caplog):
    """node.receive_path = "pynetdicom" keeps outgoing associations on plain pynetdicom; so does
    a self-test that refuses the fast path (logged once per process). Sending works either way."""
    scp = peers.storescp()
    items = _items(corpus_small, "explicit-le", "NM")
    sa = StoreAssociation.open(scp.dest(), items, _config("pynetdicom"))
    try:
        assert not isinstance(sa.association, GatewayRequestor)
        assert all(sa.send(i).ok for i in items)
    finally:
        sa.release()

    monkeypatch.setattr(selftest, "_requestor_checked", None)
    monkeypatch.setattr(selftest, "requestor_problems", lambda: ["AssociationSocket.connect is missing"])
    with caplog.at_level(logging.ERROR, logger="gateway.net"):
        assert selftest.requestor_fast_path(_config()) is False
        assert selftest.requestor_fast_path(_config()) is False
    assert [r.message for r in caplog.records].count(
        "Rust requestor path disabled; using plain pynetdicom for outgoing associations") == 1
    sa = StoreAssociation.open(scp.dest(), items, _config())
    try:
        assert not isinstance(sa.association, GatewayRequestor)
        assert all(sa.send(i).ok for i in items)
    finally:
        sa.release()


def test_temp_dir_only_when_a_conversion_writes(peers, corpus_small, tmp_path, monkeypatch):
    """Objects sent as stored make no temporary directory; a conversion (SND-2, here to big
    endian) makes one, under the data directory, and removes it."""
    import gateway.net.storescu as storescu

    made: list[str] = []
    real = storescu.tempfile.mkdtemp

    def counting(*args, **kw):
        made.append(real(*args, **kw))
        return made[-1]

    monkeypatch.setattr(storescu.tempfile, "mkdtemp", counting)
    data = tmp_path / "data"
    data.mkdir()
    scp = peers.storescp()
    plain = _items(corpus_small, "explicit-le", "CT")
    assert all(r.ok for r in send_items(scp.dest(), plain, _config(data_dir=data)))
    assert made == []
    be_only = peers.storescp()
    [result] = send_items(be_only.dest(transfer_syntaxes=(EXPLICIT_BE,)), plain[:1], _config(data_dir=data))
    assert result.ok and result.syntax == EXPLICIT_BE
    assert len(made) == 1 and Path(made[0]).parent == data / "tmp" and not Path(made[0]).exists()


def test_peer_abort_while_waiting_ends_the_wait_at_once(peers, corpus_small):
    """SND-6/SND-5: a peer that aborts instead of answering fails the object at once (retryable),
    not after the DIMSE timeout; the rest go on a new association."""
    items = _items(corpus_small, "explicit-le", "CT")[:3]
    scp = peers.scripted()

    def abort_first(event):
        if event.request.AffectedSOPInstanceUID == items[0].sop_instance_uid:
            event.assoc.abort()
            return 0xC000
        return 0x0000

    scp.server.unbind(evt.EVT_C_STORE, scp._on_store)
    scp.server.bind(evt.EVT_C_STORE, abort_first)
    started = time.monotonic()
    results = send_items(scp.dest(dimse_timeout=20), items, _config())
    assert time.monotonic() - started < 5
    assert [r.state for r in results] == ["failed", "done", "done"]
    assert results[0].retryable and "aborted or connection closed" in results[0].error


def test_peer_that_stops_reading_fails_within_the_dimse_timeout(peers, corpus_small, tmp_path):
    """SND-6: a peer that stops taking data mid-object cannot block the sender: the write
    gives up after the DIMSE timeout, the association is aborted, the object is retryable."""
    source = _items(corpus_small, "explicit-le", "CT")[0]
    _, offset = read_file_meta(source.path)
    big = tmp_path / "big.dcm"
    with open(big, "wb") as f:
        f.write(source.path.read_bytes()[:offset])
        f.truncate(offset + 48 * 1024 * 1024)  # more than both socket buffers hold
    item = Outgoing(big, source.sop_class_uid, source.sop_instance_uid, EXPLICIT_LE)
    release = threading.Event()
    scp = peers.scripted()

    def stall(event):
        if event.pdu.__class__.__name__ == "P_DATA_TF":
            release.wait(15)  # the peer's DUL thread: nothing more is read from the socket

    scp.server.bind(evt.EVT_PDU_RECV, stall)
    try:
        started = time.monotonic()
        [result] = send_items(scp.dest(dimse_timeout=1.0), [item], _config())
        elapsed = time.monotonic() - started
    finally:
        release.set()
    assert result.state == "failed" and result.retryable
    assert "DIMSE timeout" in result.error and "took no data" in result.error
    assert elapsed < 6


def test_commitment_style_association_keeps_pynetdicom_services(peers, corpus_small):
    """pynetdicom's own send_c_echo works on a fast-path association (the reactor pause and
    the response queue cooperate), between C-STOREs streamed on it."""
    scp = peers.scripted()
    items = _items(corpus_small, "explicit-le", "MR")[:2]
    sa = StoreAssociation.open(scp.dest(), items, _config())
    try:
        assoc = sa.association
        assert isinstance(assoc, GatewayRequestor)
        assert sa.send(items[0]).ok
        started = time.monotonic()
        assert assoc.send_c_echo().Status == 0
        assert time.monotonic() - started < 0.5
        assert sa.send(items[1]).ok
    finally:
        sa.release()
    assert [uid for uid, _ in scp.received] == [i.sop_instance_uid for i in items]
