"""Forwarding: sender workers that drain the durable forward queue (DESIGN §2).

``SenderService`` runs in the gateway's sender process (``dicom-gateway serve``)
or as a thread (tests, embedding); see :mod:`gateway.forward.sender`.
"""

from gateway.forward.breaker import BreakerState, CircuitBreaker
from gateway.forward.sender import STATE_FILE, DestinationWorker, SenderService, read_state

__all__ = ["SenderService", "DestinationWorker", "CircuitBreaker", "BreakerState", "STATE_FILE", "read_state"]
