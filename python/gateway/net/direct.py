"""C-STORE and C-ECHO requests served on the DUL thread, without pynetdicom's DIMSE.

On the Rust receive path a whole C-STORE-RQ (command set and dataset) reaches
the DUL thread as one message. pynetdicom would then decode the command set
with pydicom, queue a primitive, wake the association's thread, run its
Storage service class (which calls our handler), queue the response and wake
the DUL thread again to write it: two thread hand-offs and a pydicom decode
per object, about a millisecond of a C-STORE on this 2-core machine and most
of a C-ECHO (bench/RESULTS.md). Here the DUL thread decodes the command set by
hand, calls the same gateway handler (``gateway.net.dispatch``: policy, plugin
hooks, watchdog, metrics) and writes the response itself.

Anything not plainly a C-STORE-RQ or C-ECHO-RQ on an accepted context of an
idle, established association takes pynetdicom's path as before: other
services, malformed command sets, a release in progress, extra event handlers
bound (a test or a debugging hook watching DIMSE messages).

A service that overruns its budget is answered by the watchdog thread, which
writes the failure response and an A-ABORT straight to the socket (the DUL
thread is the one inside the service, so nothing queued for it would go out)
and shuts the connection; the late result is dropped (decision 0012).
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import Any

from pynetdicom import evt
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.service_class import ServiceClass, StorageServiceClass, VerificationServiceClass
from pynetdicom.sop_class import uid_to_service_class

from gateway import logs
from gateway.net.fastpath import encode_response_command

log = logging.getLogger("gateway.net")

_C_STORE_RQ, _C_ECHO_RQ = 0x0001, 0x0030
_NO_DATASET = b"\x01\x01"
_REQUEST_ELEMENTS = {
    _C_STORE_RQ: frozenset({0x0000, 0x0002, 0x0100, 0x0110, 0x0700, 0x0800, 0x1000, 0x1030, 0x1031}),
    _C_ECHO_RQ: frozenset({0x0000, 0x0002, 0x0100, 0x0110, 0x0800}),
}


def decode_command(command: bytes) -> dict[int, bytes] | None:
    """A command set's elements (group 0000, implicit VR LE, PS3.7 6.3.1) by element
    number; None when it is not plainly decodable or its group length is wrong
    (pydicom then decodes it, and reports what is wrong)."""
    elements: dict[int, bytes] = {}
    pos, end = 0, len(command)
    while pos < end:
        if pos + 8 > end:
            return None
        group, element, length = struct.unpack_from("<HHI", command, pos)
        pos += 8
        if group != 0 or pos + length > end or element in elements:
            return None
        elements[element] = command[pos:pos + length]
        pos += length
    length = elements.get(0x0000)  # Command Group Length: required (PS3.7 E.1)
    if length is None or len(length) != 4 or struct.unpack("<I", length)[0] != end - 12:
        return None
    return elements


def _uid(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    value = raw.rstrip(b"\x00 ").decode("ascii")
    return value or None


def _us(raw: bytes | None) -> int | None:
    return struct.unpack("<H", raw)[0] if raw is not None and len(raw) == 2 else None


class DirectRequest:
    """The request fields the gateway's handlers read (as pynetdicom's primitive names them)."""

    __slots__ = ("MessageID", "AffectedSOPClassUID", "AffectedSOPInstanceUID", "Priority",
                 "MoveOriginatorApplicationEntityTitle", "MoveOriginatorMessageID", "_gateway_payload",
                 "DataSet")

    def __init__(self, fields: dict[int, bytes], payload: Any) -> None:
        self.MessageID = _us(fields.get(0x0110))
        self.AffectedSOPClassUID = _uid(fields.get(0x0002))
        self.AffectedSOPInstanceUID = _uid(fields.get(0x1000))
        self.Priority = _us(fields.get(0x0700)) or 0
        ae = fields.get(0x1030)
        self.MoveOriginatorApplicationEntityTitle = ae.decode("ascii", "replace").strip(" \x00") or None if ae else None
        self.MoveOriginatorMessageID = _us(fields.get(0x1031))
        self._gateway_payload = payload
        self.DataSet = None


class DirectEvent:
    """What ``gateway.net.dispatch`` reads from a pynetdicom event, for a direct request."""

    __slots__ = ("assoc", "request", "context")
    direct = True

    def __init__(self, assoc: Any, request: DirectRequest, context: Any) -> None:
        self.assoc, self.request, self.context = assoc, request, context


def pdata_pdu(context_id: int, command: bytes) -> bytes:
    """One P-DATA-TF PDU with the whole command set as its last fragment (PS3.8 9.3.5, E.2)."""
    item = struct.pack(">IBB", len(command) + 2, context_id, 0x03) + command
    return struct.pack(">BBI", 0x04, 0, len(item)) + item


class DirectServer:
    """Serves C-STORE and C-ECHO requests of one acceptor association on its DUL thread."""

    def __init__(self, assoc: Any) -> None:
        self.assoc = assoc
        self._ready: bool | None = None  # decided at the first request (handlers are bound by then)
        self._service_class: dict[str, type] = {}

    def _usable(self) -> bool:
        from gateway.net import dispatch

        assoc = self.assoc
        ours = {evt.EVT_C_STORE: dispatch.on_c_store, evt.EVT_C_ECHO: dispatch.on_c_echo}
        for event, handler in ours.items():
            bound = assoc.get_handlers(event)
            if not bound or bound[0] is not handler:
                return False
        # Anyone watching DIMSE traffic gets pynetdicom's path, where the events fire.
        return not any(assoc.get_handlers(e) for e in (evt.EVT_DIMSE_RECV, evt.EVT_DIMSE_SENT, evt.EVT_PDU_RECV,
                                                      evt.EVT_PDU_SENT, evt.EVT_DATA_RECV, evt.EVT_DATA_SENT))

    def _class_of(self, uid: str) -> type:
        cls = self._service_class.get(uid)
        if cls is None:
            try:
                uid = self.assoc.acceptor.accepted_common_extended[uid][0]
            except (KeyError, AttributeError):
                pass
            cls = self._service_class[uid] = uid_to_service_class(uid)
        return cls

    def __call__(self, context_id: int, command: bytes, payload: Any) -> bool:
        """Serve the message if it is a plain C-STORE-RQ / C-ECHO-RQ; False: not taken."""
        assoc = self.assoc
        dul = assoc.dul
        if (not assoc.is_established or getattr(assoc, "_sent_release", False) or assoc.gw_busy
                or dul.to_provider_queue.qsize() or assoc.dimse.msg_queue.qsize()):
            return False
        fields = decode_command(command)
        kind = _us(fields.get(0x0100)) if fields is not None else None
        allowed = _REQUEST_ELEMENTS.get(kind or -1)
        if allowed is None or not allowed.issuperset(fields) or _us(fields.get(0x0110)) is None:
            return False
        has_dataset = fields.get(0x0800) != _NO_DATASET
        if has_dataset != (kind == _C_STORE_RQ) or has_dataset != (payload is not None):
            return False
        context = getattr(assoc, "_accepted_cx", {}).get(context_id)
        sop_class = _uid(fields.get(0x0002))
        if context is None or sop_class is None:
            return False
        wanted = StorageServiceClass if kind == _C_STORE_RQ else VerificationServiceClass
        if not issubclass(self._class_of(sop_class), wanted):
            return False
        if self._ready is None:
            self._ready = self._usable()
            logs.bind_association(assoc.gw_id)  # this thread's log lines name the association
        if not self._ready:
            return False
        self._serve(kind, fields, payload, context)
        return True

    def _serve(self, kind: int, fields: dict[int, bytes], payload: Any, context: Any) -> None:
        from gateway.net import dispatch

        assoc = self.assoc
        request = DirectRequest(fields, payload)
        event = DirectEvent(assoc, request, context.as_tuple)
        rsp = C_STORE() if kind == _C_STORE_RQ else C_ECHO()
        rsp.MessageIDBeingRespondedTo = request.MessageID
        rsp.AffectedSOPClassUID = request.AffectedSOPClassUID
        if kind == _C_STORE_RQ:
            rsp.AffectedSOPInstanceUID = request.AffectedSOPInstanceUID
        try:
            status = (dispatch.on_c_store if kind == _C_STORE_RQ else dispatch.on_c_echo)(event)
            rsp = ServiceClass(assoc).validate_status(status, rsp)
        except Exception as exc:  # as pynetdicom's service classes: a status, never a dead DUL
            log.error("exception serving a request", exc_info=exc)
            rsp.Status = 0xC211 if kind == _C_STORE_RQ else 0x0000
        dimse = assoc.dimse
        if dimse.answered:
            with dimse.answered_lock:
                if request.MessageID in dimse.answered:  # the watchdog answered already
                    dimse.answered.discard(request.MessageID)
                    return
        if not assoc.is_established:
            return
        command = encode_response_command(rsp)
        if command is None:  # optional status elements: pynetdicom encodes it
            dimse.send_msg(rsp, context.context_id)
            return
        self.write(context.context_id, command)

    def answer_late(self, event: DirectEvent, status: int) -> None:
        """The watchdog's answer for an overrunning service (net/watchdog.py): the
        failure response and an A-ABORT, written from the watchdog's thread."""
        request = event.request
        dimse = self.assoc.dimse
        with dimse.answered_lock:
            dimse.answered.add(int(request.MessageID))
        rsp = C_STORE()
        rsp.MessageIDBeingRespondedTo = request.MessageID
        rsp.AffectedSOPClassUID = request.AffectedSOPClassUID
        rsp.AffectedSOPInstanceUID = request.AffectedSOPInstanceUID
        rsp.Status = status
        command = encode_response_command(rsp)
        if command is not None:
            self.write(event.context.context_id, command)
        self.abort_now()

    def write(self, context_id: int, command: bytes) -> None:
        """Write a response command set now, from any thread (P-DATA in Sta6, DT-1)."""
        dul = self.assoc.dul
        sock = getattr(dul.socket, "socket", None)
        if sock is None:
            return
        with dul.send_lock:
            try:
                sock.sendall(pdata_pdu(context_id, command))
            except OSError:
                pass  # the peer is gone: the next receive reports it

    def abort_now(self) -> None:
        """A-ABORT (service-user) on the wire and the connection shut, from any thread:
        the DUL thread sees the closed connection when the service lets it go."""
        dul = self.assoc.dul
        sock = getattr(dul.socket, "socket", None)
        if sock is None:
            return
        with dul.send_lock:
            try:
                sock.sendall(struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 0, 0))
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
