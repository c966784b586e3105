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


def ensure_fast_path(config: Any) -> str:
    """The receive path to use: the configured one, or pynetdicom if it can't be."""
    if config.node.receive_path != "rust":
        return config.node.receive_path
    found = problems()
    if found:
        log.error("Rust receive path disabled; using the plain pynetdicom path", extra={"problems": found})
        return "pynetdicom"
    return "rust"
