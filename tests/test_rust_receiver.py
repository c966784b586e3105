"""gateway._rust.Receiver on a real socket: the tuples net/fastpath.py relies on."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

from gateway import _rust

CMD_NO_DATASET = struct.pack("<HHIH", 0, 0x0100, 2, 0x30) + struct.pack("<HHIH", 0, 0x0800, 2, 0x0101)
CMD_DATASET = struct.pack("<HHIH", 0, 0x0100, 2, 0x01) + struct.pack("<HHIH", 0, 0x0800, 2, 0x0000)


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def rx_for(sock, tmp_path, **kw):
    args = dict(max_pdu=16384, max_message=0, spool_dir=str(tmp_path), spool_threshold=100_000)
    args.update(kw)
    return _rust.Receiver(sock.fileno(), **args)


def test_control_pdu_then_message(pair, tmp_path):
    a, b = pair
    release = bytes([5, 0, 0, 0, 0, 4, 0, 0, 0, 0])
    data = b"\x55" * 50_000
    a.sendall(release + b"".join(_rust.fragment_message(1, CMD_DATASET, data, 4096)))
    rx = rx_for(b, tmp_path)
    assert rx.receive(5.0) == ("pdu", 5, release)
    kind, ctx, command, dataset, path, length = rx.receive(5.0)
    assert (kind, ctx, command, dataset, path, length) == ("message", 1, CMD_DATASET, data, None, 50_000)


def test_large_dataset_spooled(pair, tmp_path):
    a, b = pair
    data = os.urandom(1_000_000)
    pdus = _rust.fragment_message(3, CMD_DATASET, data, 16384)
    t = threading.Thread(target=lambda: [a.sendall(p) for p in pdus])
    t.start()
    got = rx_for(b, tmp_path).receive(10.0)
    t.join()
    assert got[0] == "message" and got[3] is None and got[5] == len(data)
    path = got[4]
    assert os.path.dirname(path) == str(tmp_path)
    with open(path, "rb") as fh:
        assert fh.read() == data
    os.unlink(path)


def test_wake_timeout_and_close(pair, tmp_path):
    a, b = pair
    rx = rx_for(b, tmp_path)
    assert rx.receive(0.05) == ("timeout",)
    wake = os.eventfd(0, os.EFD_NONBLOCK)
    os.eventfd_write(wake, 1)
    assert rx.receive(5.0, wake) == ("wake",)
    assert rx.receive(0.01, wake) == ("timeout",)  # drained
    a.sendall(b"\x04\x00\x00")
    a.shutdown(socket.SHUT_WR)
    assert rx.receive(5.0) == ("closed", True)  # cut inside a PDU header
    os.close(wake)


def test_protocol_error_after_earlier_events(pair, tmp_path):
    a, b = pair
    a.sendall(b"".join(_rust.fragment_message(1, CMD_NO_DATASET, None, 0)) + b"\xde\xad\xbe\xef\x00\x00")
    rx = rx_for(b, tmp_path)
    assert rx.receive(5.0)[0] == "message"
    kind, reason, text = rx.receive(5.0)
    assert (kind, reason) == ("error", 1) and "unknown PDU type 0xDE" in text
    assert rx.receive(0.0)[0] == "error"  # stays poisoned


def test_too_large_pdu_from_header(pair, tmp_path):
    a, b = pair
    a.sendall(struct.pack(">BBI", 4, 0, 1 << 30))
    assert rx_for(b, tmp_path, max_pdu=4096).receive(5.0)[:2] == ("error", 6)


def test_feed_sans_io(tmp_path):
    rx = _rust.Receiver(-1, max_pdu=0, max_message=0, spool_dir=str(tmp_path), spool_threshold=1 << 20)
    pdus = _rust.fragment_message(5, CMD_DATASET, b"abc", 0)
    events = rx.feed(pdus[0][:4]) + rx.feed(pdus[0][4:] + pdus[1])
    assert events == [("message", 5, CMD_DATASET, b"abc", None, 3)]
    assert rx.mid_message is False


def test_decode_pdu_view():
    assert _rust.decode_pdu(bytes([7, 0, 0, 0, 0, 4, 0, 0, 2, 6])) == {"type": "A-ABORT", "source": 2, "reason": 6}
    with pytest.raises(ValueError, match="unknown PDU type"):
        _rust.decode_pdu(bytes([9, 0, 0, 0, 0, 0]))


@pytest.mark.parametrize("kind", ["echo", "store"])
@pytest.mark.parametrize("status", [0x0000, 0xA700, 0xB000, 0xC001])
def test_fast_response_commands_equal_pynetdicoms(kind, status):
    """FastDIMSE encodes C-ECHO/C-STORE responses itself; the bytes must be pynetdicom's."""
    from pynetdicom.dimse_messages import C_ECHO_RSP, C_STORE_RSP
    from pynetdicom.dimse_primitives import C_ECHO, C_STORE

    from gateway.net.fastpath import encode_response_command

    primitive = C_ECHO() if kind == "echo" else C_STORE()
    primitive.MessageIDBeingRespondedTo = 7
    primitive.AffectedSOPClassUID = "1.2.840.10008.1.1" if kind == "echo" else "1.2.840.10008.5.1.4.1.1.128"
    if kind == "store":
        primitive.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.123"  # odd length: padded
    primitive.Status = status
    message = C_ECHO_RSP() if kind == "echo" else C_STORE_RSP()
    message.primitive_to_message(primitive)
    pdata = list(message.encode_msg(1, 0))[0]
    expected = pdata.presentation_data_value_list[0][1][1:]
    assert encode_response_command(primitive) == expected
    primitive.ErrorComment = "with a comment"
    assert encode_response_command(primitive) is None  # falls back to pynetdicom


def test_wake_after_the_reactor_ended_is_harmless():
    """A store answered after the peer aborted sends its response into a DUL
    whose eventfd is closed: that must be a no-op, not a ValueError."""
    from gateway.net.fastpath import FastDUL

    dul = FastDUL.__new__(FastDUL)
    dul._wake_fd = -1
    dul._wake_lock = threading.Lock()
    dul._wake()


def test_wake_never_writes_to_a_reused_descriptor(tmp_path):
    """Threads wake the DUL while its reactor closes the eventfd; a descriptor number
    reused right after (here a file) must never receive the eventfd's 8 bytes."""
    from gateway.net.fastpath import FastDUL

    target = tmp_path / "victim"
    for _ in range(200):
        dul = FastDUL.__new__(FastDUL)
        dul._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        dul._wake_lock = threading.Lock()
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                dul._wake()

        t = threading.Thread(target=hammer)
        t.start()
        try:
            dul._close_wake_fd()
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # likely the same number
            time.sleep(0.0005)
        finally:
            stop.set()
            t.join()
        os.close(fd)
        assert target.stat().st_size == 0
