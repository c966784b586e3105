"""The fast path for associations the gateway requests (Storage SCU, commitment SCU).

pynetdicom's requestor sends every P-DATA-TF through its DUL thread one
primitive per reactor turn (encoding each PDU in Python), polls the socket
with 1 ms sleeps while waiting for the answer, and decodes each response
through a pydicom Dataset. Here, as on the receive side
(:mod:`gateway.net.fastpath`):

* the DUL is :class:`~gateway.net.fastpath.FastDUL`: it blocks in Rust on
  the socket and its eventfd, and hands the state machine whole DIMSE
  messages; a C-STORE-RSP is decoded by hand;
* responses go to a queue of their own that the sending thread blocks on
  (:meth:`GatewayRequestor.wait_response`), so the association reactor
  never has to be paused to keep it from taking them; while a C-GET (or
  C-MOVE) is in flight the peer's C-STORE-RQs of its sub-operations go there
  too, because the thread reading the retrieval's responses is the one that
  answers them (pynetdicom's ``send_c_get``), with the reactor paused;
* a C-STORE's P-DATA-TF PDUs are written by the sending thread straight
  from the stored file (:meth:`GatewayRequestor.send_file_message`), under
  the DUL's send lock so no other PDU can land in the middle of them.

Association negotiation, release, abort, role selection and N-EVENT-REPORT
handling stay pynetdicom's, so pynetdicom's own ``send_n_action`` and
friends work on these associations unchanged. :mod:`gateway.net.selftest`
checks the internals this relies on; ``node.receive_path = "pynetdicom"``
(or a refused self-test) makes :func:`gateway.net.storescu.open_association`
use plain pynetdicom instead: :func:`associate` with ``fast=False``, a
:class:`PlainRequestor`.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import struct
import threading
import time
from copy import deepcopy
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence, cast

from pynetdicom import evt
from pynetdicom._globals import MODE_REQUESTOR
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_GET, C_MOVE, C_STORE
from pynetdicom.transport import AddressInformation, AssociationSocket

from gateway.net.fastpath import FastAssociationMixin, FastDIMSE, FastDUL, ReceiveSettings

log = logging.getLogger("gateway.net")

#: What one PDU may carry when the peer set no maximum (Maximum Length 0 = unlimited, PS3.8 D.1):
#: any size is allowed; this keeps the memory per write bounded.
UNLIMITED_PDV = 1 << 20
#: Data handed to one sendall(): several PDUs per system call.
SEND_BATCH = 256 * 1024
#: A requestor receives responses, N-EVENT-REPORTs and, during a C-GET, the objects of
#: its C-STORE sub-operations (held in memory: pynetdicom's C-STORE handler reads them
#: from there); a bigger message is a misbehaving peer, and the association is aborted.
MAX_RESPONSE_MESSAGE = 256 * 1024 * 1024
#: How often a thread waiting for a response looks at the association state,
#: in case it ended without a wake-up (its kill() also wakes it at once).
_RESPONSE_POLL = 0.5

_PDU_HEADER = struct.Struct(">BBIIBB")  # P-DATA-TF (PS3.8 9.3.5) with one PDV item header


class SendFailed(Exception):
    """The connection failed while a message was being written (the message is incomplete);
    ``timed_out`` when the peer took no data in time (SND-6)."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def receive_settings(max_pdu: int, spool_dir: str) -> ReceiveSettings:
    """Receiver limits for a requestor: our advertised maximum PDU, and never a spool file
    (what arrives is small, and pynetdicom's handlers read it from memory)."""
    return ReceiveSettings(max_pdu=max_pdu, max_message=MAX_RESPONSE_MESSAGE, spool_dir=spool_dir,
                           spool_threshold=MAX_RESPONSE_MESSAGE + 1)


class _ResponseRouting(queue.Queue):
    """DIMSE msg_queue that keeps responses apart: the thread that sent a request
    blocks on :attr:`responses`; the reactor sees the other requests.

    A C-STORE-RQ that arrives while a C-GET or C-MOVE of ours is in flight
    (:attr:`retrievals`, its Message IDs) is a sub-operation on this association
    (PS3.4 C.4.3.3; the same for a C-MOVE whose destination is ourselves): it goes to
    :attr:`responses` too. pynetdicom's retrieval generator (``send_c_get``) pauses
    the reactor and answers the C-STORE-RQs it reads among the responses; routed to
    the paused reactor they were never answered, and the peer and we waited for each
    other until the DIMSE timeout."""

    def __init__(self) -> None:
        super().__init__()
        self.responses: queue.Queue = queue.Queue()
        self.retrievals: set[int] = set()
        self._lock = threading.Lock()

    def retrieval_sent(self, message_id: int) -> None:
        with self._lock:
            self.retrievals.add(message_id)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        primitive = item[1] if isinstance(item, tuple) and len(item) == 2 else None
        responding_to = getattr(primitive, "MessageIDBeingRespondedTo", None)
        if responding_to is not None:
            if isinstance(primitive, (C_GET, C_MOVE)) and not _pending(primitive.Status):
                with self._lock:  # the final response: no more sub-operations of it
                    self.retrievals.discard(int(responding_to))
            self.responses.put(item)
            return
        if isinstance(primitive, C_STORE):
            with self._lock:
                retrieving = bool(self.retrievals)
            if retrieving:
                self.responses.put(item)
                return
        super().put(item, block, timeout)


def _pending(status: Any) -> bool:
    """PS3.7 C.4.2.1.5 / C.4.3.1.5: FF00 (and FF01 for C-FIND) is Pending; anything else
    (None too: an undecodable response, the retrieval is over) is final."""
    return status is not None and int(status) in (0xFF00, 0xFF01)


class RequestorDIMSE(FastDIMSE):
    def __init__(self, assoc: Any) -> None:
        super().__init__(assoc)
        self.msg_queue = _ResponseRouting()

    def send_msg(self, primitive: Any, context_id: int, answered_early: bool = False) -> None:
        if isinstance(primitive, (C_GET, C_MOVE)) and primitive.MessageID is not None \
                and primitive.MessageIDBeingRespondedTo is None:
            # Before the bytes leave: the first C-STORE-RQ may be back before send returns.
            self.msg_queue.retrieval_sent(int(primitive.MessageID))  # type: ignore[attr-defined]
        super().send_msg(primitive, context_id, answered_early)

    @property
    def responses(self) -> queue.Queue:
        return self.msg_queue.responses  # type: ignore[attr-defined]

    def get_msg(self, block: bool = False) -> tuple[Any, Any]:
        # pynetdicom's send_*() wait (block=True) for the answer to what they
        # sent; its reactor polls (block=False) for requests from the peer.
        source = self.responses if block else self.msg_queue
        try:
            item = source.get(block=block, timeout=self.dimse_timeout if block else None)
        except queue.Empty:
            return None, None
        return item if item[1] is not None else (None, None)

    def peek_msg(self) -> tuple[Any, Any]:
        try:
            return self.msg_queue.queue[0]
        except (IndexError, AttributeError):
            return None, None


class _RequestorSocket(AssociationSocket):
    """pynetdicom's socket, closed only between PDUs of a streamed message."""

    # pynetdicom's ACSE (the thread that called ``request()``) waits for the
    # connect and then reads ``_is_connected`` to tell a failed connect from a
    # good one. On this path the reactor can connect, send the A-ASSOCIATE-RQ,
    # receive an A-ASSOCIATE-RJ and close the connection (AE-4) before that
    # thread looks — it then took the closed connection for a failed connect
    # and reported a rejection as an abort (1 in ~100 under load). Once
    # connected the flag stays true; ``socket is None`` is what says closed
    # (``close()`` and ``ready()`` test it first).
    _connected_once = False

    @property
    def _is_connected(self) -> bool:  # type: ignore[override]
        return self._connected_once

    @_is_connected.setter
    def _is_connected(self, value: bool) -> None:
        if value:
            self._connected_once = True

    def close(self) -> None:
        lock = getattr(self.assoc.dul, "send_lock", None)
        if lock is None:
            return super().close()
        if not lock.acquire(blocking=False):
            # A message is being streamed: shut the connection down under the
            # writer so its send fails at once, then close once it has let go.
            sock = self.socket
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            lock.acquire()
        try:
            super().close()
        finally:
            lock.release()


class GatewayRequestor(FastAssociationMixin, Association):
    """A requestor association on the fast path (build it with :func:`associate`)."""

    gw_fast = True

    def __init__(self, ae: Any, settings: ReceiveSettings) -> None:
        super().__init__(ae, MODE_REQUESTOR)
        self.dul = FastDUL(self, settings)
        self.dimse = RequestorDIMSE(self)
        # The timeout setters write through to the new DUL's timers.
        self.acse_timeout = self.acse_timeout
        self.network_timeout = self.network_timeout

    def _bind_defaults(self) -> None:
        # Only the intervention defaults: pynetdicom's "standard" logging
        # handlers format every PDU and message, and would also turn off the
        # hand-encoded paths (they watch EVT_DIMSE_SENT / EVT_DIMSE_RECV).
        for event in evt._INTERVENTION_EVENTS:
            self.bind(event, evt.get_default_handler(event))

    # -- the reactor ---------------------------------------------------------------
    def _run_reactor(self) -> None:
        """FastAssociationMixin's loop, but paused while it waits: a pynetdicom
        ``send_*()`` or ``release()`` that pauses it goes on at once instead of
        spinning until its next turn."""
        activity = self.dul.activity
        while not self._kill:
            self._is_paused = True
            if activity.wait(0.05):
                activity.clear()
            self._reactor_checkpoint.wait()
            self._is_paused = False
            if not self._reactor_checkpoint.is_set():
                continue  # paused again between the wait and here: back to waiting

            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, cast(int, context_id))
            if self._association_over():
                return

    def kill(self) -> None:
        super().kill()
        # Whoever waits for a response: the association is over.
        cast(RequestorDIMSE, self.dimse).responses.put((None, None))

    # -- C-STORE -------------------------------------------------------------------
    def send_file_message(self, context_id: int, command: bytes, path: Path | str, offset: int,
                          timeout: float | None, deadline: float | None = None) -> None:
        """Write one DIMSE message whose data set is ``path`` from ``offset`` to its end,
        as P-DATA-TF PDUs of at most the peer's Maximum Length (PS3.8 9.3.5, D.1).

        SND-6 while writing: the peer must take each batch of PDUs within
        ``timeout`` seconds (the DIMSE timer, as a no-progress timer), and
        everything before ``deadline`` (time.monotonic(); the session timer).
        Raises OSError when the file cannot be opened (nothing was sent) or
        read (part was sent: abort the association), SendFailed when the
        connection fails or a timer expires (the connection is shut down), or
        when the association is not in Sta6 (nothing was sent).
        """
        limit = int(self.acceptor.maximum_length or 0)
        chunk = max(1, limit - 6) if limit else UNLIMITED_PDV
        with open(path, "rb", buffering=0) as f:
            size = max(0, os.fstat(f.fileno()).st_size - offset)
            f.seek(offset)
            dul = self.dul
            with dul.send_lock:
                sock = getattr(dul.socket, "socket", None)
                if sock is None or not self.is_established or dul.state_machine.current_state != "Sta6":
                    raise SendFailed("association no longer established")
                try:
                    _stream(sock, f, context_id, command, size, chunk, timeout, deadline)
                except SendFailed:
                    # The message is cut off mid-PDU, or the peer reads nothing:
                    # no A-ABORT can follow it. Ending the connection lets the
                    # DUL see it closed (Evt17) instead of blocking on a write.
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    raise
                finally:
                    try:
                        sock.settimeout(None)
                    except OSError:
                        pass

    def wait_response(self, timeout: float | None) -> Any:
        """The next response primitive, or None on timeout or when the association ended."""
        responses = cast(RequestorDIMSE, self.dimse).responses
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = _RESPONSE_POLL
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            try:
                _cx, rsp = responses.get(timeout=wait)
            except queue.Empty:
                if not self.is_established or (deadline is not None and time.monotonic() >= deadline):
                    return None
                continue
            return rsp


class PlainRequestor(Association):
    """A requestor association on plain pynetdicom (build it with ``associate(..., fast=False)``),
    with one change: a response its reactor takes is handed back to the waiting thread.

    A thread sending a request pauses the reactor (clears ``_reactor_checkpoint``, waits
    for ``_is_paused``) and then blocks in ``dimse.get_msg``; but the reactor sets
    ``_is_paused`` before waiting on the checkpoint and clears it only after, so a
    reactor that had just passed the wait looks paused, then polls the DIMSE queue,
    takes the response and drops it as an unexpected message — the sender waits out its
    DIMSE timeout (seen as C-MOVE sub-operations stalling under load). Here a response
    reaching the reactor goes back on the queue, where the blocked sender takes it;
    requests (a C-STORE of a C-GET, an N-EVENT-REPORT) are served as pynetdicom does."""

    gw_fast = False

    def __init__(self, ae: Any) -> None:
        super().__init__(ae, MODE_REQUESTOR)

    def _serve_request(self, msg: Any, context_id: int) -> None:
        if not getattr(msg, "is_valid_request", False) and getattr(msg, "is_valid_response", False):
            log.debug("a response the reactor took goes back to the waiting sender")
            self.dimse.msg_queue.put((context_id, msg))
            return
        super()._serve_request(msg, context_id)


def _sendall(sock: socket.socket, data: bytearray, timeout: float | None, deadline: float | None) -> None:
    limit = timeout
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SendFailed("session timer expired while sending", timed_out=True)
        limit = left if limit is None else min(limit, left)
    try:
        sock.settimeout(limit)
        sock.sendall(data)
    except TimeoutError as exc:  # socket.timeout
        raise SendFailed(f"the peer took no data for {limit:g} s while sending", timed_out=True) from exc
    except OSError as exc:
        raise SendFailed(f"connection lost while sending: {exc}") from exc


def _stream(sock: socket.socket, f: Any, context_id: int, command: bytes, size: int, chunk: int,
            timeout: float | None, deadline: float | None) -> None:
    """The command, then ``size`` bytes of ``f``, as P-DATA-TF PDUs with one PDV each
    (message control header PS3.8 E.2: bit 0 command, bit 1 last fragment)."""
    header = _PDU_HEADER
    out = bytearray()
    for start in range(0, len(command), chunk):  # one PDU unless the peer's maximum is tiny
        piece = command[start:start + chunk]
        last = start + chunk >= len(command)
        out += header.pack(0x04, 0, len(piece) + 6, len(piece) + 2, context_id, 0x03 if last else 0x01)
        out += piece
    if size == 0:
        out += header.pack(0x04, 0, 6, 2, context_id, 0x02)
        _sendall(sock, out, timeout, deadline)
        return
    # Read a batch of fragments at once and write them with their headers in
    # one sendall(): a few system calls per 256 KiB instead of two per PDU.
    block = bytearray(min(size, max(1, SEND_BATCH // chunk) * chunk))
    view = memoryview(block)
    left = size
    while left:
        want = min(left, len(block))
        got = 0
        while got < want:
            n = f.readinto(view[got:want])  # OSError: the caller aborts
            if not n:
                raise OSError(f"{f.name}: ended {left - got} bytes early (changed while being sent?)")
            got += n
        left -= want
        for start in range(0, want, chunk):
            n = min(chunk, want - start)
            last = not left and start + n >= want
            out += header.pack(0x04, 0, n + 6, n + 2, context_id, 0x02 if last else 0x00)
            out += view[start:start + n]
        _sendall(sock, out, timeout, deadline)
        out.clear()


def associate(ae: Any, host: str, port: int, *, ae_title: str, max_pdu: int, settings: ReceiveSettings | None,
              ext_neg: Sequence[Any] | None = None, evt_handlers: Sequence[Any] | None = None,
              fast: bool = True) -> Association:
    """pynetdicom's ``AE.associate`` (3.0.4), building a :class:`GatewayRequestor` (the Rust
    receive path; ``settings`` required) or, with ``fast=False``, a :class:`PlainRequestor`
    on pynetdicom's own DUL and socket (``settings`` unused).

    Uses the AE's requested contexts, timers and implementation identity.
    Raises ValueError / OSError as ``AE.associate`` does for bad addresses.
    """
    remote = AddressInformation.from_addr_port(host, port)
    local = AddressInformation.from_tuple(("::0", 0) if remote.address_family == socket.AF_INET6 else ("", 0))
    assoc: Association
    if fast:
        if settings is None:
            raise ValueError("the Rust requestor path needs its receive settings")
        assoc = GatewayRequestor(ae, settings)
        sock: AssociationSocket = _RequestorSocket(assoc, address=local)
    else:
        assoc = PlainRequestor(ae)
        sock = AssociationSocket(assoc, address=local)
    assoc.name = f"RequestorThread@{datetime.now():%Y%m%d%H%M%S}"
    sock.tls_args = None
    assoc.set_socket(sock)
    assoc.acceptor.ae_title = ae_title
    assoc.acceptor.address_info = remote
    assoc.requestor.address_info = local
    assoc.requestor.ae_title = ae.ae_title
    assoc.requestor.maximum_length = max_pdu
    assoc.requestor.implementation_class_uid = ae.implementation_class_uid
    assoc.requestor.implementation_version_name = ae.implementation_version_name
    for item in ext_neg or []:
        assoc.requestor.add_negotiation_item(item)
    contexts = deepcopy(ae.requested_contexts)
    if not contexts:
        raise ValueError("at least one presentation context must be proposed")
    for ii, context in enumerate(contexts):
        context.context_id = 2 * ii + 1
    assoc.requestor.requested_contexts = contexts
    for handler in evt_handlers or []:
        assoc.bind(*handler)
    assoc.request()
    if assoc.is_established:
        assoc.start()
    return assoc
