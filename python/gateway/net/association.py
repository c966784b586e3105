"""The acceptor side: one gateway association per TCP connection."""

from __future__ import annotations

import itertools
import logging
import os
import queue
import time
from typing import Any

from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association

from gateway import logs
from gateway.messages import AssociationInfo
from gateway.net.fastpath import FastAssociationMixin, FastDUL, ReceiveSettings

log = logging.getLogger("gateway.net")
_ids = itertools.count(1)

#: Between operations, a draining association is aborted once no bytes
#: arrived for this long (a message may still be arriving otherwise).
DRAIN_QUIET_S = 0.5


# Primitives our side hands the DUL (PS3.8 table 9-10: Evt7 accept, Evt8 reject,
# Evt9 P-DATA, Evt11/Evt14 release, Evt15 abort).
_LOCAL_PRIMITIVES = frozenset({"Evt7", "Evt8", "Evt9", "Evt11", "Evt14", "Evt15"})


def _ignore_late_primitives(state_machine: Any) -> None:
    """pynetdicom receive path: drop a local primitive that arrives in Sta13.

    A peer that sends garbage right after its A-ASSOCIATE-RQ makes the DUL
    abort (AA-8, to Sta13) while the acceptor is still deciding; its A-ASSOCIATE
    response (Evt7) then meets Sta13, where PS3.8 defines no local events, and
    stock pynetdicom raises InvalidEventError in the reactor thread, which dies
    and leaves the connection open with no timer running. The association is
    already aborted, so the primitive is dropped and the association told so:
    its reactor ends (and frees its slot) instead of serving a dead link; the
    DUL goes on to close the connection as Sta13 prescribes (peer close or ARTIM).
    """
    do_action = state_machine.do_action

    def guarded(event: str) -> None:
        if event in _LOCAL_PRIMITIVES and state_machine.current_state == "Sta13":
            # The DUL only peeks at the primitive (the action would pop it): drop
            # it here, or the reactor re-queues the same event on every loop.
            try:
                state_machine.dul.to_provider_queue.get(block=False)
            except queue.Empty:
                pass
            log.info("peer aborted before our answer; association ended", extra={"event": event})
            assoc = state_machine.dul.assoc
            assoc.is_aborted = True
            assoc.is_established = False
            assoc._kill = True
            assoc._reactor_checkpoint.set()
            return
        do_action(event)

    state_machine.do_action = guarded


class GatewayAssociation(FastAssociationMixin, Association):
    """pynetdicom's association plus the config generation it started on.

    ``gw_runtime`` is the :class:`gateway.runtime.Runtime` snapshot taken at
    accept time; a hot reload never changes it under a running association.
    """

    def __init__(self, ae: Any, runtime: Any, listener: Any, peer: tuple[str, int], local_port: int) -> None:
        super().__init__(ae, MODE_ACCEPTOR)
        node = runtime.config.node
        self.gw_runtime = runtime
        self.gw_listener = listener
        self.gw_peer = peer
        self.gw_local_port = local_port
        self.gw_id = f"{os.getpid()}-{next(_ids)}"
        self.gw_info: AssociationInfo | None = None
        self.gw_busy = False
        self.gw_draining = False
        self.gw_closed_reason: str | None = None
        self.acse_timeout = node.acse_timeout
        self.dimse_timeout = node.dimse_timeout
        self.network_timeout = node.network_timeout
        if node.receive_path == "rust":
            self._install_fast_path(
                ReceiveSettings(
                    max_pdu=node.max_pdu,
                    max_message=node.max_message,
                    spool_dir=str(runtime.spool_dir),
                    spool_threshold=node.spool_threshold,
                )
            )
            from gateway.net.direct import DirectServer

            self.dul.direct = DirectServer(self)
        else:
            _ignore_late_primitives(self.dul.state_machine)

    def _run_reactor(self) -> None:
        logs.bind_association(self.gw_id)
        super()._run_reactor()

    def _serve_request(self, msg: Any, context_id: int) -> None:
        """C-MOVE and C-GET go to :mod:`gateway.net.streams` (the service makes
        every response and its sub-operations); everything else to pynetdicom's
        service classes. Same preliminaries as pynetdicom's: a request during
        release is ignored, an unknown context aborts, C-CANCELs of earlier
        requests are forgotten, the reactor counts as paused meanwhile."""
        from gateway.net import streams

        context = getattr(self, "_accepted_cx", {}).get(context_id) if streams.is_streamed(msg) else None
        if context is None or getattr(self, "_sent_release", False):
            super()._serve_request(msg, context_id)
            return
        self.dimse.cancel_req = {}
        self._is_paused = True  # as pynetdicom around SCP(): the service may send and wait (C-GET)
        try:
            streams.serve(self, msg, context)
        except Exception as exc:  # as pynetdicom: never a dead reactor
            log.error("%s failed; aborting the association", type(msg).__name__, exc_info=exc)
            self.abort()
        finally:
            self._is_paused = False
            self.dimse.cancel_req = {}

    def reactor_wait(self) -> float:
        """Every event wakes this thread (the DUL sets ``activity`` after each action
        and when a timer may be due): polling is only for draining at shutdown, which
        waits for a quiet link (``DRAIN_QUIET_S``)."""
        return 0.1 if self.gw_draining or not isinstance(self.dul, FastDUL) else 5.0

    def drain_check(self) -> None:
        """Abort between operations while the worker is shutting down."""
        if not self.gw_draining or self.gw_busy or not self.is_established:
            return
        started = self.dul._idle_timer._start_time
        if started is not None and time.time() - started < DRAIN_QUIET_S:
            return
        log.info("aborting idle association: shutting down")
        self.abort()
