"""SCU associations the gateway opens: verification now, sending later."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE

from gateway import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"

# PS3.8 table 9-21, for messages people read.
_RESULT = {1: "rejected-permanent", 2: "rejected-transient"}
_SOURCE = {1: "service-user", 2: "service-provider (ACSE)", 3: "service-provider (presentation)"}
_REASON = {
    1: {1: "no-reason-given", 2: "application-context-name-not-supported",
        3: "calling-AE-title-not-recognized", 7: "called-AE-title-not-recognized"},
    2: {1: "no-reason-given", 2: "protocol-version-not-supported"},
    3: {1: "temporary-congestion", 2: "local-limit-exceeded"},
}


class AssociationFailed(Exception):
    """Could not establish the association; ``kind`` is rejected/aborted/unreachable."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def describe_rejection(result: int, source: int, reason: int) -> str:
    return (f"{_RESULT.get(result, result)}, {_SOURCE.get(source, source)}, "
            f"{_REASON.get(source, {}).get(reason, f'reason {reason}')}")


@dataclass
class Peer:
    host: str
    port: int
    called_ae: str = "ANY-SCP"
    calling_ae: str = "DICOM_GATEWAY"
    timeout: float = 30.0
    max_pdu: int = 16384


def associate(peer: Peer, contexts: list[tuple[str, list[str]]],
              implementation_class_uid: str = IMPLEMENTATION_CLASS_UID,
              implementation_version_name: str = IMPLEMENTATION_VERSION_NAME) -> Any:
    ae = AE(ae_title=peer.calling_ae)
    ae.acse_timeout = peer.timeout
    ae.dimse_timeout = peer.timeout
    ae.network_timeout = peer.timeout
    ae.connection_timeout = peer.timeout
    ae.maximum_pdu_size = peer.max_pdu
    ae.implementation_class_uid = implementation_class_uid
    ae.implementation_version_name = implementation_version_name
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, syntaxes)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.called_ae)
    if assoc.is_established:
        sock = assoc.dul.socket.socket if assoc.dul.socket else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return assoc
    if assoc.is_rejected:
        rj = assoc.acceptor.primitive
        raise AssociationFailed("rejected", "association rejected: " + describe_rejection(
            int(rj.result), int(rj.result_source), int(rj.diagnostic)))
    if assoc.is_aborted:
        raise AssociationFailed("aborted", "association aborted by the peer")
    raise AssociationFailed("unreachable", f"no association with {peer.host}:{peer.port} (connection failed or timed out)")


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
