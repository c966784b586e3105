"""The acceptor side: one gateway association per TCP connection."""

from __future__ import annotations

import itertools
import logging
import os
import time
from typing import Any

from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom.association import Association

from gateway import logs
from gateway.messages import AssociationInfo
from gateway.net.fastpath import FastAssociationMixin, ReceiveSettings

log = logging.getLogger("gateway.net")
_ids = itertools.count(1)

#: Between operations, a draining association is aborted once no bytes
#: arrived for this long (a message may still be arriving otherwise).
DRAIN_QUIET_S = 0.5


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

    def _run_reactor(self) -> None:
        logs.bind_association(self.gw_id)
        super()._run_reactor()

    def drain_check(self) -> None:
        """Abort between operations while the worker is shutting down."""
        if not self.gw_draining or self.gw_busy or not self.is_established:
            return
        started = self.dul._idle_timer._start_time
        if started is not None and time.time() - started < DRAIN_QUIET_S:
            return
        log.info("aborting idle association: shutting down")
        self.abort()
