"""The Rust receive path grafted onto pynetdicom's DUL, DIMSE and reactor.

pynetdicom reads one PDU at a time with Python `recv` calls and polls its
queues with 1 ms sleeps. Here:

* :class:`FastDUL` blocks in Rust (GIL released) on the socket *and* an
  eventfd that `send_pdu` writes, so outgoing primitives wake it at once;
  the Rust receiver coalesces every P-DATA-TF fragment of a DIMSE message
  (spooling large datasets to a file) and the state machine sees one Evt10
  per message.
* :class:`FastDIMSE` turns that coalesced message into pynetdicom's DIMSE
  primitive without re-assembling fragments.
* :class:`FastAssociationMixin` waits on an event the DUL sets after every
  state-machine action instead of sleeping 1 ms per loop.

The same DUL serves associations the gateway requests (Storage SCU,
commitment SCU): see :mod:`gateway.net.requestor`, which also uses the hand
codecs for C-STORE-RQ / C-STORE-RSP below.

Everything touched here is checked by :mod:`gateway.net.selftest` at
start-up against the installed pynetdicom.
"""

from __future__ import annotations

import logging
import os
import queue
import ssl
import struct
import threading
import time
from io import BytesIO
from typing import Any

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import _MESSAGE_TYPES, DIMSEMessage
from pynetdicom.dimse_primitives import C_CANCEL, C_ECHO, C_FIND, C_GET, C_MOVE, C_STORE, N_EVENT_REPORT
from pynetdicom.dsutils import decode
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA

from gateway.messages import DatasetPayload
from gateway.metrics import METRICS

log = logging.getLogger("gateway.net")

# PS3.8 9.3.4 A-ASSOCIATE-RJ and 9.3.8 A-ABORT, encoded by hand because they
# are sent when the peer's bytes could not be decoded at all.
def _rj_pdu(result: int, source: int, reason: int) -> bytes:
    return struct.pack(">BBLBBBB", 0x03, 0, 4, 0, result, source, reason)


def _abort_pdu(source: int, reason: int) -> bytes:
    return struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, source, reason)


class CoalescedPData(P_DATA):
    """A whole DIMSE message as one P-DATA indication."""

    def __init__(self, context_id: int, command: bytes, payload: DatasetPayload | None) -> None:
        super().__init__()
        self.context_id = context_id
        self.command = command
        self.payload = payload


class _CoalescedPDU:
    """Stands in the DUL's received-PDU queue for the P-DATA-TF PDUs of one message."""

    __slots__ = ("primitive",)

    def __init__(self, primitive: CoalescedPData) -> None:
        self.primitive = primitive

    def to_primitive(self) -> CoalescedPData:
        return self.primitive


class ReceiveSettings:
    """Limits for one association's receiver, fixed when it starts."""

    __slots__ = ("max_pdu", "max_message", "spool_dir", "spool_threshold")

    def __init__(self, max_pdu: int, max_message: int, spool_dir: str, spool_threshold: int) -> None:
        self.max_pdu = max_pdu
        self.max_message = max_message
        self.spool_dir = spool_dir
        self.spool_threshold = spool_threshold


class FastDUL(DULServiceProvider):
    def __init__(self, assoc: Any, settings: ReceiveSettings) -> None:
        super().__init__(assoc)
        self._settings = settings
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._wake_lock = threading.Lock()
        self._receiver: Any = None
        #: Serves plain C-STORE / C-ECHO requests on this thread (gateway.net.direct), or None.
        self.direct: Any = None
        # Set after every state-machine action; the association reactor waits on it.
        self.activity = threading.Event()
        # Held while a PDU is written: the Storage SCU streams P-DATA-TF from
        # its own thread (gateway.net.requestor), and PDUs must not interleave.
        self.send_lock = threading.RLock()
        # P-DATA primitives queued for the reactor and not yet written (see write_now).
        self._pdata_pending = 0

    # -- waking ------------------------------------------------------------
    def _wake(self) -> None:
        # Under the lock the reactor closes the eventfd with: a write after the
        # close would land on whatever file reused the descriptor number.
        with self._wake_lock:
            if self._wake_fd < 0:  # the reactor has ended (peer aborted); nothing to wake
                return
            try:
                os.eventfd_write(self._wake_fd, 1)
            except OSError:
                pass

    def _close_wake_fd(self) -> None:
        with self._wake_lock:
            fd, self._wake_fd = self._wake_fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def send_pdu(self, primitive: Any) -> None:
        if isinstance(primitive, P_DATA):
            with self.send_lock:
                self._pdata_pending += 1
        super().send_pdu(primitive)
        self._wake()

    def _send(self, pdu: Any) -> None:
        with self.send_lock:
            try:
                super()._send(pdu)
            finally:
                if isinstance(pdu, P_DATA_TF) and self._pdata_pending:
                    self._pdata_pending -= 1

    def write_now(self, data: bytes) -> bool:
        """Write whole P-DATA-TF PDUs from the calling thread, skipping the queue and
        the reactor's turn (DT-1 changes no state: PS3.8 9.2). Only when it cannot
        reorder anything: established (Sta6), nothing queued for the reactor, and no
        P-DATA taken from the queue but not yet written. False: queue it instead."""
        sock = getattr(self.socket, "socket", None)
        if sock is None or isinstance(sock, ssl.SSLSocket):
            return False
        with self.send_lock:
            if (self._pdata_pending or self.to_provider_queue.qsize()
                    or self.state_machine.current_state != "Sta6"):
                return False
            try:
                sock.sendall(data)
            except OSError:
                self.event_queue.put("Evt17")  # as pynetdicom's socket.send: connection closed
                self._wake()
        return True

    def drain(self, timeout: float) -> bool:
        """Wait until every primitive queued so far is written to the socket (the
        reactor pops one, then writes it under ``send_lock``); False on timeout.
        Needed before an abort from another thread: ``Association.abort`` kills
        the DUL right after queuing the A-ABORT, and a response still queued
        ahead of it would never reach the peer."""
        deadline = time.monotonic() + timeout
        while self.to_provider_queue.queue:
            if time.monotonic() > deadline:
                return False
            self._wake()
            time.sleep(0.002)
        with self.send_lock:  # a write in progress finishes first
            return True

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wake()

    def stop_dul(self) -> bool:
        if self.state_machine.current_state != "Sta1":
            return False
        self._kill_thread = True
        self._wake()
        if self.is_alive() and self is not threading.current_thread():
            self.join()
        return True

    # -- the reactor -------------------------------------------------------
    def run_reactor(self) -> None:
        sock = getattr(self.socket, "socket", None)
        if sock is None or isinstance(sock, ssl.SSLSocket) or getattr(self.socket, "tls_args", None):
            # TLS: ssl buffers decrypted bytes the fd poll can't see; keep the
            # pynetdicom loop until the sans-IO feed path is wired for TLS.
            try:
                return super().run_reactor()
            finally:
                self._close_wake_fd()
        # An acceptor's socket is connected already; a requestor's connects in
        # AE-1 on this thread, and gets its receiver in _transport_event then.
        self._start_receiver()
        self._idle_timer.start()
        try:
            self._loop()
        finally:
            self._receiver = None  # frees its buffers and any partial spool file now
            self.activity.set()
            self._close_wake_fd()

    def _start_receiver(self) -> None:
        wrapper = self.socket
        sock = getattr(wrapper, "socket", None)
        if self._receiver is not None or sock is None:
            return
        if self.assoc.is_requestor and not getattr(wrapper, "_is_connected", False):
            return  # not connected yet (AE-1 has not run)
        from gateway import _rust

        s = self._settings
        self._receiver = _rust.Receiver(
            sock.fileno(),
            max_pdu=s.max_pdu,
            max_message=s.max_message,
            spool_dir=s.spool_dir,
            spool_threshold=s.spool_threshold,
        )

    def _loop(self) -> None:
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
            if self._kill_thread:
                return
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                # Same order as pynetdicom: one outgoing primitive *or* one
                # transport event per turn, then one state-machine event.
                if not self._process_recv_primitive():
                    self._transport_event()
            except Exception as exc:
                log.error("exception in the DUL reactor; aborting", exc_info=exc)
                self._fatal(_abort_pdu(2, 0))
                self.assoc.is_aborted = True
                self.assoc.is_established = False
                self.assoc._kill = True
                self._kill_thread = True
                self.activity.set()
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                continue
            self.state_machine.do_action(event)
            self.activity.set()

    def _wait_budget(self) -> float | None:
        """How long the receiver may block: until the next timer can fire."""
        if not self.event_queue.empty() or self.to_provider_queue.qsize():
            return 0.0
        # Idle, a reactor sleeps until a timer is due (5 s at most): 300 open idle
        # associations must cost next to nothing (issue 10); anything to do wakes it.
        budget = 5.0
        for timer in (self.artim_timer, self._idle_timer):
            running = timer._start_time is not None and timer._end_time is None
            if running and timer.timeout is not None:
                budget = min(budget, max(timer.remaining, 0.0))
        return budget

    def _transport_event(self) -> None:
        if not self.event_queue.empty():
            # Let the state machine catch up first: what a received PDU means
            # (e.g. reject vs abort) depends on the current state.
            return
        sock = self.socket
        if self._receiver is None:
            self._start_receiver()
        if sock is None or sock.socket is None or self._receiver is None:
            # No connection (Sta1, not yet connected, or closed): just wait to be woken.
            self._wait_wake(self._wait_budget())
            return
        state = self.state_machine.current_state
        timeout = 0.0 if state == "Sta13" else self._wait_budget()
        result = self._receiver.receive(timeout, self._wake_fd)
        kind = result[0]
        if kind == "message":
            _, context_id, command, data, path, length = result
            payload = None
            if path is not None:
                payload = DatasetPayload(path=path, length=length)
            elif data is not None:
                payload = DatasetPayload(data=data)
            if (self.direct is not None and state == "Sta6" and self.event_queue.empty()
                    and self.direct(context_id, command, payload)):
                self._idle_timer.restart()
                return
            self._recv_pdu.put(_CoalescedPDU(CoalescedPData(context_id, command, payload)))
            self.event_queue.put("Evt10")
            self._idle_timer.restart()
        elif kind == "pdu":
            _, _pdu_type, data = result
            try:
                pdu, event = self._decode_pdu(bytearray(data))
            except Exception as exc:
                log.error("pynetdicom could not decode a PDU the framer accepted", exc_info=exc)
                self.event_queue.put("Evt19")
                return
            self._recv_pdu.put(pdu)
            self.event_queue.put(event)
            self._idle_timer.restart()
        elif kind == "timeout":
            self.activity.set()  # a timer may be due: the association's thread checks (network timeout)
            if state == "Sta13":
                # Waiting for the peer to close and nothing came: close ourselves.
                sock.close()
        elif kind == "closed":
            sock.close()  # puts Evt17
            if state == "Sta2":
                # Closed before any A-ASSOCIATE-RQ: end the acceptor's wait now.
                self.to_user_queue.put(None)  # type: ignore[arg-type]
        elif kind == "error":
            _, reason, description = result
            self._protocol_error(state, reason, description)
        # "wake": an outgoing primitive or a kill; the loop handles it

    def _wait_wake(self, timeout: float | None) -> None:
        import select

        try:
            select.select([self._wake_fd], [], [], timeout)
            os.eventfd_read(self._wake_fd)
        except (OSError, ValueError):
            time.sleep(0.001)

    def _protocol_error(self, state: str, reason: int, description: str) -> None:
        METRICS.inc("gateway_protocol_errors_total", reason=reason)
        if state == "Sta2":
            # STO-4: an A-ASSOCIATE-RQ we cannot parse is rejected
            # (rejected-permanent, service-provider ACSE, no-reason-given).
            log.warning("unparseable association request; rejecting",
                        extra={"why": description, "peer": self._peer()})
            self._fatal(_rj_pdu(1, 2, 1))
            # The acceptor thread waits for an A-ASSOCIATE primitive: end that wait.
            self.to_user_queue.put(None)  # type: ignore[arg-type]
        else:
            log.warning("protocol error; aborting association",
                        extra={"why": description, "abort_reason": reason, "peer": self._peer()})
            self._fatal(_abort_pdu(2, reason))

    def _fatal(self, pdu: bytes) -> None:
        sock = self.socket
        if sock is None or sock.socket is None:
            return
        with self.send_lock:
            try:
                sock.socket.sendall(pdu)
            except (OSError, AttributeError):  # AttributeError: closed meanwhile
                pass
        sock.close()  # Evt17: the FSM issues A-P-ABORT to the association

    def _peer(self) -> str:
        try:
            host, port = self.socket.socket.getpeername()[:2]  # type: ignore[union-attr]
            return f"{host}:{port}"
        except (OSError, AttributeError):
            return "?"


def _element(element: int, value: bytes, pad: bytes = b"") -> bytes:
    if len(value) % 2:
        value += pad
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


#: CommandField of each response primitive this module encodes (PS3.7 E.1).
_RESPONSE_FIELDS = {C_ECHO: 0x8030, C_STORE: 0x8001, C_FIND: 0x8020, C_MOVE: 0x8021, C_GET: 0x8010}
#: The sub-operation counts of a C-MOVE-RSP / C-GET-RSP (PS3.7 9.3.3.2, 9.3.4.2), in tag order.
_COUNTS = ((0x1020, "NumberOfRemainingSuboperations"), (0x1021, "NumberOfCompletedSuboperations"),
           (0x1022, "NumberOfFailedSuboperations"), (0x1023, "NumberOfWarningSuboperations"))


def encode_response_command(primitive: Any) -> bytes | None:
    """Group 0000 of a C-ECHO-, C-STORE-, C-FIND-, C-MOVE- or C-GET-RSP without
    optional status elements (PS3.7 9.3.1.2 ... 9.3.5.2), implicit VR LE; None
    for anything else (pynetdicom encodes those).

    pynetdicom builds a pydicom Dataset and encodes it twice (once for the
    group length) per response; that is most of a C-ECHO's cost, and of every
    Pending C-FIND/C-MOVE response. The bytes are checked equal to
    pynetdicom's in tests/test_rust_receiver.py and tests/test_fast_responses.py.
    """
    field = _RESPONSE_FIELDS.get(type(primitive))
    if field is None or primitive.MessageIDBeingRespondedTo is None or primitive.Status is None:
        return None
    for optional in ("ErrorComment", "OffendingElement", "ErrorID"):
        if getattr(primitive, optional, None) is not None:
            return None
    instance = None
    if field == 0x8001:
        instance = primitive.AffectedSOPInstanceUID
    elif field == 0x8030 and getattr(primitive, "AffectedSOPInstanceUID", None) is not None:
        return None
    with_dataset = field in (0x8020, 0x8021, 0x8010) and primitive.Identifier is not None
    counts = b""
    if field in (0x8021, 0x8010):
        counts = b"".join(_element(tag, struct.pack("<H", value)) for tag, keyword in _COUNTS
                          if (value := getattr(primitive, keyword)) is not None)
    body = b"".join((
        _element(0x0002, str(primitive.AffectedSOPClassUID).encode(), b"\x00") if primitive.AffectedSOPClassUID else b"",
        _element(0x0100, struct.pack("<H", field)),
        _element(0x0120, struct.pack("<H", primitive.MessageIDBeingRespondedTo)),
        _element(0x0800, struct.pack("<H", 0x0001 if with_dataset else 0x0101)),
        _element(0x0900, struct.pack("<H", primitive.Status)),
        _element(0x1000, str(instance).encode(), b"\x00") if instance else b"",
        counts,
    ))
    return _element(0x0000, struct.pack("<I", len(body))) + body


def encode_store_command(message_id: int, sop_class: str, sop_instance: str, priority: int = 2,
                         move_originator: tuple[str, int] | None = None) -> bytes:
    """Group 0000 of a C-STORE-RQ with a data set (PS3.7 9.3.1.1), implicit VR
    LE, with the Move Originator AE Title and Message ID of a C-MOVE
    sub-operation when given: the bytes pynetdicom writes for the same
    primitive (checked in tests/test_send_fastpath.py), without building and
    encoding a pydicom Dataset per object."""
    originator = b""
    if move_originator is not None:
        originator = (_element(0x1030, move_originator[0].encode("ascii"), b" ")
                      + _element(0x1031, struct.pack("<H", move_originator[1])))
    body = b"".join((
        _element(0x0002, sop_class.encode(), b"\x00"),
        _element(0x0100, b"\x01\x00"),
        _element(0x0110, struct.pack("<H", message_id)),
        _element(0x0700, struct.pack("<H", priority)),
        _element(0x0800, b"\x01\x00"),
        _element(0x1000, sop_instance.encode(), b"\x00"),
        originator,
    ))
    return _element(0x0000, struct.pack("<I", len(body))) + body


#: Command elements a C-STORE-RSP may carry (PS3.7 9.3.1.2, C.4.2.1.4 status elements).
_STORE_RSP_ELEMENTS = frozenset({0x0000, 0x0002, 0x0100, 0x0120, 0x0800, 0x0900, 0x0901, 0x0902, 0x1000})


def decode_store_response(command: bytes) -> C_STORE | None:
    """A C-STORE-RSP command set (implicit VR LE) as pynetdicom's primitive, or
    None when it is anything else or not plainly decodable (then pydicom
    decodes it). Skips a pydicom Dataset per response on the Storage SCU."""
    elements: dict[int, bytes] = {}
    pos, end = 0, len(command)
    while pos < end:
        if pos + 8 > end:
            return None
        group, element, length = struct.unpack_from("<HHI", command, pos)
        pos += 8
        if group != 0 or element not in _STORE_RSP_ELEMENTS or pos + length > end or element in elements:
            return None
        elements[element] = command[pos:pos + length]
        pos += length
    try:
        if (elements[0x0100] != b"\x01\x80" or elements[0x0800] != b"\x01\x01"
                or len(elements[0x0120]) != 2 or len(elements[0x0900]) != 2):
            return None
        if 0x0000 in elements and struct.unpack("<I", elements[0x0000])[0] != end - 12:
            return None
        rsp = C_STORE()
        rsp.MessageIDBeingRespondedTo = struct.unpack("<H", elements[0x0120])[0]
        rsp.Status = struct.unpack("<H", elements[0x0900])[0]
        for element, keyword in ((0x0002, "AffectedSOPClassUID"), (0x1000, "AffectedSOPInstanceUID")):
            if element in elements:
                value = elements[element].rstrip(b"\x00 ").decode("ascii")
                if value:
                    setattr(rsp, keyword, value)
        if 0x0902 in elements:
            comment = elements[0x0902].decode("latin-1").strip(" \x00")
            if comment:
                setattr(rsp, "ErrorComment", comment)
        if 0x0901 in elements:
            raw = elements[0x0901]
            if len(raw) % 4:
                return None
            tags = [(struct.unpack_from("<H", raw, k)[0] << 16) | struct.unpack_from("<H", raw, k + 2)[0]
                    for k in range(0, len(raw), 4)]
            if tags:  # one value as pydicom gives it: a tag, not a list
                setattr(rsp, "OffendingElement", tags[0] if len(tags) == 1 else tags)
    except (KeyError, ValueError, TypeError, struct.error):
        return None
    return rsp


def answers_late(assoc: Any) -> bool:
    """Whether a response for this association can be sent from another thread
    (the watchdog) and a later one for the same message dropped: the Rust path."""
    return isinstance(assoc.dimse, FastDIMSE)


def answer_now(event: Any, status: int) -> None:
    """Answer the C-STORE of ``event`` with ``status`` from any thread; the response
    its service returns later is dropped (FastDIMSE.send_msg), so the peer gets one."""
    from pynetdicom.dimse_primitives import C_STORE

    rq = event.request
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = rq.MessageID
    rsp.AffectedSOPClassUID = rq.AffectedSOPClassUID
    rsp.AffectedSOPInstanceUID = rq.AffectedSOPInstanceUID
    rsp.Status = status
    dimse = event.assoc.dimse
    with dimse.answered_lock:
        dimse.answered.add(int(rq.MessageID))
    dimse.send_msg(rsp, event.context.context_id, answered_early=True)


class FastDIMSE(DIMSEServiceProvider):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Message IDs the watchdog answered for (net/watchdog.py): their late responses are dropped.
        self.answered: set[int] = set()
        self.answered_lock = threading.Lock()
        # Responses encoded but not yet written (hold()): a C-FIND's matches leave in
        # batches, one sendall for many instead of one each (~20 us of kernel apiece).
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._held_since = 0.0
        self._holding = False

    #: A batch of held responses is written once it has this many, this many bytes, or
    #: when a response comes this long after the batch's first (a slow query's matches).
    HELD_MAX, HELD_BYTES, HELD_SECONDS = 32, 65536, 0.02

    def hold(self) -> None:
        """Keep responses back until flush() (or a batch is full): for a stream whose
        responses come faster than the network round trip, as a C-FIND's do."""
        self._holding = True

    def flush(self) -> None:
        """Write what hold() kept back, after anything queued before it, and stop holding."""
        self._holding = False
        self._write_held()

    def _write_held(self) -> None:
        if not self._held:
            return
        data, self._held, self._held_bytes = b"".join(self._held), [], 0
        dul = self.dul
        deadline = time.monotonic() + 5.0
        while not dul.write_now(data):  # something queued ahead of it: let the reactor write that first
            if not self.assoc.is_established or time.monotonic() > deadline:
                log.warning("responses dropped: the association can no longer send")
                return
            dul.drain(1.0)

    def send_msg(self, primitive: Any, context_id: int, answered_early: bool = False) -> None:
        if not answered_early and self.answered:
            responding_to = getattr(primitive, "MessageIDBeingRespondedTo", None)
            with self.answered_lock:
                if responding_to is not None and int(responding_to) in self.answered:
                    self.answered.discard(int(responding_to))
                    return  # the peer already has its answer
        command = None
        if not self.assoc.get_handlers(evt.EVT_DIMSE_SENT):
            command = encode_response_command(primitive)
        if command is None:
            self._write_held()
            return super().send_msg(primitive, context_id)
        identifier = getattr(primitive, "Identifier", None)
        dataset = identifier.getvalue() if identifier is not None else None
        if not (self.assoc.get_handlers(evt.EVT_PDU_SENT) or self.assoc.get_handlers(evt.EVT_DATA_SENT)):
            # Written from this thread: a stream of C-FIND/C-MOVE responses costs no
            # reactor turn per response (issue 12). Fragmented as pynetdicom does.
            from gateway import _rust  # imported where used, as the receiver does

            pdus = b"".join(_rust.fragment_message(context_id, command, dataset or None, self.maximum_pdu_size))
            if self._holding:
                if not self._held:
                    self._held_since = time.monotonic()
                self._held.append(pdus)
                self._held_bytes += len(pdus)
                if (len(self._held) >= self.HELD_MAX or self._held_bytes >= self.HELD_BYTES
                        or time.monotonic() - self._held_since > self.HELD_SECONDS):
                    self._write_held()
                return
            self._write_held()
            if self.dul.write_now(pdus):
                return
        # Something is queued ahead (or PDU events are watched): pynetdicom's path, in order.
        self._write_held()
        super().send_msg(primitive, context_id)

    def receive_primitive(self, primitive: Any) -> None:
        if not isinstance(primitive, CoalescedPData):
            return super().receive_primitive(primitive)
        if primitive.payload is None and not self.assoc.get_handlers(evt.EVT_DIMSE_RECV):
            # The Storage SCU's answers: read the few elements by hand.
            rsp = decode_store_response(primitive.command)
            if rsp is not None:
                self.msg_queue.put((primitive.context_id, rsp))
                return
        message = DIMSEMessage()
        try:
            message.context_id = primitive.context_id
            message.command_set = decode(BytesIO(primitive.command), True, True)
            message.__class__ = _MESSAGE_TYPES[int(message.command_set.CommandField)][1]
            payload = primitive.payload
            # Spooled datasets stay in their file; pynetdicom sees an empty stream.
            message.data_set = BytesIO(payload.read() if payload and payload.path is None else b"")
            evt.trigger(self.assoc, evt.EVT_DIMSE_RECV, {"message": message})
            d_primitive = message.message_to_primitive()
        except Exception as exc:
            log.error("received an invalid DIMSE message", exc_info=exc)
            if primitive.payload is not None:
                primitive.payload.discard()
            self.dul.event_queue.put("Evt19")
            return
        d_primitive._gateway_payload = primitive.payload
        context_id = primitive.context_id
        if isinstance(d_primitive, C_CANCEL) and len(self.cancel_req) < 10:
            self.cancel_req[d_primitive.MessageIDBeingRespondedTo] = d_primitive
        elif isinstance(d_primitive, N_EVENT_REPORT) and d_primitive.is_valid_request:
            # As pynetdicom: handled at once so the DUL is not blocked.
            threading.Thread(target=self.assoc._serve_request, args=(d_primitive, context_id)).start()
        else:
            self.msg_queue.put((context_id, d_primitive))


class FastAssociationMixin:
    """Replaces the DUL/DIMSE providers and the 1 ms polling reactor loop."""

    def _install_fast_path(self, settings: ReceiveSettings) -> None:
        self.dul = FastDUL(self, settings)
        self.dimse = FastDIMSE(self)
        # The timeout setters write through to the DUL's timers.
        self.acse_timeout = self.acse_timeout
        self.network_timeout = self.network_timeout

    def _run_reactor(self) -> None:  # mirrors pynetdicom's Association._run_reactor
        activity = getattr(self.dul, "activity", None)
        self._is_paused = False
        while not self._kill:
            # Cleared before the checks, so a wake that comes while they run is not
            # lost: the thread sleeps long when idle (reactor_wait).
            if activity is not None:
                activity.clear()
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False

            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, context_id)
            drain_check = getattr(self, "drain_check", None)
            if drain_check is not None:
                drain_check()
            if self._association_over():
                return
            if msg:
                continue  # another may be queued already
            if activity is not None:
                activity.wait(self.reactor_wait())
            else:
                time.sleep(0.001)

    def reactor_wait(self) -> float:
        """How long the association's thread sleeps when nothing woke it."""
        return 0.05

    def _association_over(self) -> bool:
        """The end of a reactor turn, as pynetdicom's: a release asked by the peer,
        an abort, a dead DUL or the network timeout ends the association."""
        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            log.debug("association released by peer")
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return True
        if self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True
        if not self.dul.is_alive():
            self.kill()
            return True
        if self.dul.idle_timer_expired():
            log.warning("network timeout reached; aborting association")
            self.abort()
            self.kill()
            return True
        return False

    def kill(self) -> None:
        # pynetdicom polls stop_dul every 10 ms; wake the DUL so it sees the kill.
        self._reactor_checkpoint.set()
        self._kill = True
        self.is_established = False
        self._is_paused = True
        dul = self.dul
        while dul.is_alive() and not dul.stop_dul():
            if isinstance(dul, FastDUL):
                dul.activity.wait(0.01)
                dul.activity.clear()
            else:
                time.sleep(0.01)
