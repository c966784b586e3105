"""Test plugin whose service raises or hangs, to prove failure isolation."""

from __future__ import annotations

import threading
import time

from gateway.hookspecs import hookimpl
from gateway.services import Service

RAISING_SOP_CLASS = "1.2.826.0.1.3680043.10.1472.99.2"
HANGING_SOP_CLASS = "1.2.826.0.1.3680043.10.1472.99.3"


class Raising:
    def c_store(self, request):
        raise RuntimeError("plugin bug on purpose")


#: Set when a hanging C-STORE has reached the handler, so a test acts on an
#: operation really in flight, however slow the machine.
HANGING_STARTED = threading.Event()


class Hanging:
    def c_store(self, request):
        HANGING_STARTED.set()
        time.sleep(30)
        return 0


@hookimpl
def gateway_register_services(registry):
    registry.add(Service(name="raising", sop_classes=(RAISING_SOP_CLASS,), handler=Raising()))
    registry.add(Service(name="hanging", sop_classes=(HANGING_SOP_CLASS,), handler=Hanging()))


@hookimpl
def gateway_association_requested(request, config):
    # SEC-2-style policy from a plugin: refuse one calling AE title.
    if request.association.calling_ae == "BLOCKED_AE":
        from gateway.messages import Rejection

        return Rejection(1, 1, 3, "calling AE blocked by test plugin")
    return None
