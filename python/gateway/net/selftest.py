"""Start-up check that the pynetdicom internals the fast path hooks are there.

The Rust receive path replaces pynetdicom's read loop and reactor polling
(gateway.net.fastpath). A pynetdicom release that renames or reshapes those
internals must not fail at the first association: this check finds out at
start-up and falls back to the plain pynetdicom path, loudly.
"""

from __future__ import annotations

import inspect
import logging
import socket
import struct
import threading
from typing import Any

log = logging.getLogger("gateway.net")

SUPPORTED = ("3.0.",)


def problems() -> list[str]:
    """Everything that does not match what fastpath.py was written against."""
    import pynetdicom
    from pynetdicom import dimse, dimse_messages, dul, fsm
    from pynetdicom.association import Association

    found: list[str] = []
    if not pynetdicom.__version__.startswith(SUPPORTED):
        found.append(f"pynetdicom {pynetdicom.__version__} is not a tested version ({', '.join(SUPPORTED)}x)")
    for owner, names in (
        (dul.DULServiceProvider, ("_decode_pdu", "_process_recv_primitive", "run_reactor", "send_pdu",
                                  "kill_dul", "stop_dul", "receive_pdu", "idle_timer_expired")),
        (dimse.DIMSEServiceProvider, ("receive_primitive", "get_msg")),
        (Association, ("_run_reactor", "_serve_request", "kill", "abort", "run")),
    ):
        for name in names:
            if not callable(getattr(owner, name, None)):
                found.append(f"{owner.__name__}.{name} is missing")
    if not isinstance(getattr(dimse_messages, "_MESSAGE_TYPES", None), dict):
        found.append("dimse_messages._MESSAGE_TYPES is missing")
    src = inspect.getsource(fsm)
    if "dul._recv_pdu.get(False)" not in src or "dimse.receive_primitive(" not in src:
        found.append("fsm no longer hands P-DATA to dimse.receive_primitive via dul._recv_pdu")
    dul_src = inspect.getsource(dul.DULServiceProvider.__init__)
    for attr in ("_recv_pdu", "event_queue", "to_provider_queue", "to_user_queue", "_idle_timer",
                 "artim_timer", "state_machine", "_kill_thread"):
        if f"self.{attr}" not in dul_src:
            found.append(f"DULServiceProvider no longer has {attr}")
    assoc_src = inspect.getsource(Association.__init__)
    for attr in ("_reactor_checkpoint", "_is_paused", "_dul_ready", "_kill"):
        if f"self.{attr}" not in assoc_src:
            found.append(f"Association no longer has {attr}")
    try:
        _receiver_smoke()
    except Exception as exc:  # any failure means: don't use it
        found.append(f"Rust receiver smoke test failed: {exc!r}")
    return found


def _receiver_smoke() -> None:
    """Feed one C-ECHO-RQ through a socketpair and get it back as a message."""
    from gateway import _rust

    # (0000,0100) CommandField = 0x0030 C-ECHO-RQ, (0000,0800) = 0x0101 no dataset
    elems = struct.pack("<HHIH", 0, 0x0100, 2, 0x30) + struct.pack("<HHIH", 0, 0x0800, 2, 0x0101)
    command = struct.pack("<HHII", 0, 0, 4, len(elems)) + elems
    pdv = struct.pack(">IBB", len(command) + 2, 1, 0x03) + command
    pdu = struct.pack(">BBI", 4, 0, len(pdv)) + pdv
    a, b = socket.socketpair()
    try:
        a.sendall(pdu)
        rx = _rust.Receiver(b.fileno(), max_pdu=16384, max_message=0, spool_dir="/tmp", spool_threshold=1 << 20)
        got = rx.receive(2.0, -1)
        if got[0] != "message" or got[1] != 1 or got[2] != command or got[3] is not None:
            raise AssertionError(f"unexpected receiver result {got[:3]!r}")
    finally:
        a.close()
        b.close()


def requestor_problems() -> list[str]:
    """What the requestor fast path (gateway.net.requestor) needs beyond the receive side."""
    from pynetdicom import ae, dimse, dul, events, fsm, transport
    from pynetdicom.association import Association

    found: list[str] = []
    for owner, names in (
        (transport.AssociationSocket, ("close", "connect", "_shutdown_socket")),
        (transport.AddressInformation, ("from_addr_port", "from_tuple")),
        (dul.DULServiceProvider, ("_send",)),
        (dimse.DIMSEServiceProvider, ("get_msg", "peek_msg")),
        (Association, ("request", "set_socket", "_bind_defaults", "bind", "release")),
        (ae.ApplicationEntity, ("associate",)),
    ):
        for name in names:
            if not callable(getattr(owner, name, None)):
                found.append(f"{owner.__name__}.{name} is missing")
    if not isinstance(getattr(events, "_INTERVENTION_EVENTS", None), list):
        found.append("events._INTERVENTION_EVENTS is missing")
    if "self._is_connected" not in inspect.getsource(transport.AssociationSocket.connect):
        found.append("AssociationSocket no longer tracks _is_connected")
    fsm_src = inspect.getsource(fsm)
    if "dul._send(P_DATA_TF(primitive))" not in fsm_src or "sock.close()" not in fsm_src:
        found.append("fsm no longer writes PDUs through dul._send / closes through the socket wrapper")
    if "Association(self, MODE_REQUESTOR)" not in inspect.getsource(ae.ApplicationEntity.associate):
        found.append("AE.associate no longer builds the association the way gateway.net.requestor mirrors")
    dimse_src = inspect.getsource(dimse.DIMSEServiceProvider)
    if "self.msg_queue.put(" not in dimse_src or "self.msg_queue.get(" not in dimse_src:
        found.append("DIMSEServiceProvider no longer queues messages on msg_queue")
    return found


_requestor_checked: bool | None = None
_requestor_lock = threading.Lock()


def requestor_fast_path(config: Any) -> bool:
    """Whether associations the gateway requests use gateway.net.requestor: the
    configured receive path is "rust" (the default) and this process's
    self-test passed. Checked once per process (the sender and
    ``dicom-gateway send`` run no worker start-up); a refusal is logged once."""
    global _requestor_checked
    node = getattr(config, "node", None)
    if getattr(node, "receive_path", "rust") != "rust":
        return False
    with _requestor_lock:
        if _requestor_checked is None:
            try:
                found = problems() + requestor_problems()
            except Exception as exc:  # the check itself broke: same answer
                found = [f"self-test failed: {exc!r}"]
            if found:
                log.error("Rust requestor path disabled; using plain pynetdicom for outgoing associations",
                          extra={"problems": found})
            _requestor_checked = not found
        return _requestor_checked


def ensure_fast_path(config: Any) -> str:
    """The receive path to use: the configured one, or pynetdicom if it can't be."""
    if config.node.receive_path != "rust":
        return config.node.receive_path
    found = problems()
    if found:
        log.error("Rust receive path disabled; using the plain pynetdicom path", extra={"problems": found})
        return "pynetdicom"
    return "rust"
