"""Verification SCU (VER-2) and ``associate`` for a plain peer. The rejection
and failure descriptions every SCU association shares are in net/failures.py."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gateway.net.failures import AssociationFailed, describe_rejection  # noqa: F401  (re-exported)

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"

@dataclass
class Peer:
    host: str
    port: int
    called_ae: str = "ANY-SCP"
    calling_ae: str = "DICOM_GATEWAY"
    timeout: float = 30.0
    max_pdu: int = 16384


def associate(peer: Peer, contexts: list[tuple[str, list[str]]], config: Any = None) -> Any:
    """An established association with ``peer`` (see gateway.net.storescu.open_association,
    which every association the gateway requests goes through)."""
    from gateway.net.storescu import Destination, open_association

    dest = Destination(name=f"{peer.called_ae}@{peer.host}:{peer.port}", ae_title=peer.called_ae,
                       host=peer.host, port=peer.port, calling_ae_title=peer.calling_ae, max_pdu=peer.max_pdu,
                       association_timeout=peer.timeout, dimse_timeout=peer.timeout)
    return open_association(dest, contexts, config)


@dataclass
class EchoResult:
    status: int
    seconds: float


def echo(peer: Peer, repeat: int = 1) -> list[EchoResult]:
    """VER-2: a new association, C-ECHO(s), released right after the response."""
    assoc = associate(peer, [(VERIFICATION, [IMPLICIT_LE])])
    results = []
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            rsp = assoc.send_c_echo()
            elapsed = time.perf_counter() - started
            if not rsp or "Status" not in rsp:
                raise AssociationFailed("aborted", "no C-ECHO response (DIMSE timeout or association aborted)")
            results.append(EchoResult(int(rsp.Status), elapsed))
    finally:
        if assoc.is_established:
            assoc.release()
    return results
