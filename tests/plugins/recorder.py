"""Test plugin recording observation hooks and vetoing one instance."""

from __future__ import annotations

from gateway.hookspecs import hookimpl
from gateway.messages import Response

EVENTS: list[tuple] = []
VETO_SOP_INSTANCE = "1.2.826.0.1.3680043.10.1472.99.9.1"


@hookimpl
def gateway_association_opened(association):
    EVENTS.append(("opened", association.calling_ae))


@hookimpl
def gateway_association_closed(association, reason):
    EVENTS.append(("closed", association.calling_ae, reason))


@hookimpl
def gateway_instance_received(request):
    if request.sop_instance_uid == VETO_SOP_INSTANCE:
        return Response(0xA700, error_comment="vetoed by recorder plugin")
    return None
