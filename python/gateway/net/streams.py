"""C-FIND, C-MOVE and C-GET as response streams: every response comes from the service.

pynetdicom's own Query/Retrieve SCP performs the C-STORE sub-operations
itself, from pydicom Datasets, on an association it opens (C-MOVE) and with
its own counting. The gateway's services do their sub-operations through the
Storage SCU instead (byte-exact files, SND-2 syntax choice, Rust conversion)
and know the counts; so for these two operations the association hands the
request straight to the handler bound for EVT_C_MOVE / EVT_C_GET
(:func:`gateway.net.dispatch.on_c_move`, ``on_c_get``) and sends each
``(status, identifier)`` it yields as a C-MOVE-RSP / C-GET-RSP: the status
and any response command elements it carries (``NumberOf…Suboperations``,
``ErrorComment``), and the Identifier (``FailedSOPInstanceUIDList``) encoded
in the context's transfer syntax. The stream ends with the first response
that is not Pending, or when the association is gone — then the handler's
generator is closed, which is how a service learns that nobody listens any
more (QRS-6: a C-MOVE's sub-operations carry on regardless).

C-FIND goes the same way (EVT_C_FIND, :func:`gateway.net.dispatch.on_c_find`)
so that an Identifier may be a :class:`gateway.identifier.FlatIdentifier`,
encoded without pydicom: a 300-match query is 300 Identifiers (issue 12).

This module knows DIMSE, not Query/Retrieve: what the Identifier means and
what the counts are is the service's business. It runs in the association's
thread, on both receive paths (the Rust path hands pynetdicom's DIMSE layer
the same primitives), with the reactor paused as pynetdicom does around a
service class, so a C-GET's C-STORE responses are read by the service.
"""

from __future__ import annotations

import logging
from io import BytesIO
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE
from pynetdicom.dsutils import encode
from pynetdicom.service_class import QueryRetrieveServiceClass
from pynetdicom.status import QR_FIND_SERVICE_CLASS_STATUS, QR_GET_SERVICE_CLASS_STATUS, QR_MOVE_SERVICE_CLASS_STATUS

from gateway.identifier import FlatIdentifier
from gateway.status import Status, category

log = logging.getLogger("gateway.net")

#: The requests answered here, and the event whose handler produces the responses.
STREAMED = {C_FIND: evt.EVT_C_FIND, C_MOVE: evt.EVT_C_MOVE, C_GET: evt.EVT_C_GET}
_STATUSES = {C_FIND: QR_FIND_SERVICE_CLASS_STATUS, C_MOVE: QR_MOVE_SERVICE_CLASS_STATUS,
             C_GET: QR_GET_SERVICE_CLASS_STATUS}


def is_streamed(msg: Any) -> bool:
    return type(msg) in STREAMED and bool(getattr(msg, "is_valid_request", False))


def serve(assoc: Any, msg: Any, context: Any) -> None:
    """Answer one C-FIND-RQ / C-MOVE-RQ / C-GET-RQ from the responses its handler yields."""
    service_class = QueryRetrieveServiceClass(assoc)  # its is_cancelled / validate_status
    service_class.statuses = _STATUSES[type(msg)]  # what validate_status knows (it only warns otherwise)
    cx_id = int(context.context_id)
    syntax = context.transfer_syntax[0]
    sop_class = msg.AffectedSOPClassUID  # validated once, when the request was decoded

    def send(status: int | Dataset, identifier: Dataset | FlatIdentifier | None) -> int:
        rsp = type(msg)()
        rsp.MessageIDBeingRespondedTo = msg.MessageID
        # pynetdicom's setter validates the UID with pydicom's regex: a fifth of a
        # C-FIND response's time, for the value the request already had checked.
        if hasattr(rsp, "_affected_sop_class_uid"):
            rsp._affected_sop_class_uid = sop_class
        else:  # a pynetdicom that renamed it
            rsp.AffectedSOPClassUID = sop_class
        service_class.validate_status(status, rsp)
        if identifier is not None:
            data = None
            if isinstance(identifier, FlatIdentifier):
                if not syntax.is_deflated:
                    data = identifier.encode(syntax.is_implicit_VR, syntax.is_little_endian)
                if data is None:
                    identifier = identifier.to_dataset()
            if data is None:
                data = encode(identifier, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
            if data is None:  # pragma: no cover - a service built an unencodable Identifier
                log.error("cannot encode the response Identifier; sent without it")
            else:
                rsp.Identifier = BytesIO(data)
        assoc.dimse.send_msg(rsp, cx_id)
        return int(rsp.Status)

    try:
        responses = evt.trigger(assoc, STREAMED[type(msg)], {
            "request": msg, "context": context.as_tuple, "_is_cancelled": service_class.is_cancelled,
        })
    except Exception as exc:
        log.error("handler for %s raised", type(msg).__name__, exc_info=exc)
        send(Status.CANNOT_UNDERSTAND, None)
        return
    if responses is None:  # nothing bound: pynetdicom's default
        send(Status.SOP_CLASS_NOT_SUPPORTED, None)
        return
    # A C-FIND's matches come faster than the network round trip: written in batches
    # (FastDIMSE.hold). A C-MOVE's / C-GET's Pending responses report progress: at once.
    batched = type(msg) is C_FIND and hasattr(assoc.dimse, "hold")
    if batched:
        assoc.dimse.hold()
    try:
        for status, identifier in responses:
            if not assoc.is_established:
                log.info("%s: association ended; no more responses", type(msg).__name__)
                return
            code = send(status, identifier)
            if category(code) != "Pending":
                return
        if assoc.is_established:  # a stream that never said how it ended
            log.error("%s: the service ended without a final response", type(msg).__name__)
            send(Status.CANNOT_UNDERSTAND, None)
    except Exception as exc:
        log.error("%s response stream failed", type(msg).__name__, exc_info=exc)
        if assoc.is_established:
            try:
                send(Status.CANNOT_UNDERSTAND, None)
            except Exception:
                pass
    finally:
        if batched:
            assoc.dimse.flush()
        close = getattr(responses, "close", None)
        if close is not None:
            close()
