"""DIMSE requests from pynetdicom to the service plugins, and back.

Each DIMSE event is turned into a gateway-owned request object
(:mod:`gateway.messages`), routed by operation and abstract syntax to the
service that registered for it, and its answer mapped to a status on the
wire. A plugin that raises or overruns its time budget yields a failure
status and a log line, never a dead worker (DESIGN §3).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor, TimeoutError as FutureTimeout
from typing import Any, Callable, Iterator

from pydicom.dataset import Dataset
from pynetdicom import evt

from gateway import logs
from gateway.messages import (
    DatasetPayload,
    EchoRequest,
    EventReportRequest,
    IdentifierRequest,
    PresentationContextInfo,
    Response,
    StoreRequest,
)
from gateway.metrics import METRICS
from gateway.net.fastpath import answer_now, answers_late
from gateway.net.watchdog import WATCHDOG
from gateway.plugins import HookError
from gateway.status import Status, category

log = logging.getLogger("gateway.dispatch")

# Failure status when a plugin raises or hangs, per operation (PS3.4/PS3.7).
_FAILURE = {
    "c_echo": Status.PROCESSING_FAILURE,
    "c_store": Status.UNABLE_TO_PROCESS,  # Cxxx "cannot understand" range, STO-8
    "n_event_report": Status.PROCESSING_FAILURE,  # PS3.7 10.1.1.1.8
    "c_find": Status.CANNOT_UNDERSTAND,  # PS3.4 C.4.1.1.4: Cxxx unable to process
    "c_move": Status.CANNOT_UNDERSTAND,  # PS3.4 C.4.2.1.5: Cxxx unable to process
    "c_get": Status.CANNOT_UNDERSTAND,  # PS3.4 C.4.3.1.4: Cxxx unable to process
}

_pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="gw-plugin")


def _context(event: Any) -> PresentationContextInfo:
    cx = event.context
    return PresentationContextInfo(cx.context_id, str(cx.abstract_syntax), str(cx.transfer_syntax))


def _bounded(fn: Callable[[], Any], timeout: float | None) -> Any:
    """Run a plugin call with a time budget; the thread is abandoned on overrun."""
    if not timeout:
        return fn()
    assoc_id = logs.bound_association()

    def scoped() -> Any:  # the plugin's log lines still name the association
        logs.bind_association(assoc_id)
        try:
            return fn()
        finally:
            logs.bind_association(None)

    return _pool.submit(scoped).result(timeout=timeout)


def _watched(event: Any, service: Any, request: Any, timeout: float, fn: Callable[[], Any]) -> Any:
    """Run a C-STORE service in this thread; past its budget the watchdog answers
    the peer with the failure status and the late result is dropped (net/watchdog.py)."""
    def overrun() -> None:
        METRICS.inc("gateway_plugin_timeouts_total", service=service.name)
        log.error("service did not answer in time", extra={"service": service.name, "op": "c_store",
                                                           "timeout_s": timeout, "assoc": event.assoc.gw_id})
        if getattr(event, "direct", False):  # served on the DUL thread (net/direct.py)
            event.assoc.dul.direct.answer_late(event, _FAILURE["c_store"])
            return
        answer_now(event, _FAILURE["c_store"])
        # The association's thread is still inside the service, so nothing else on
        # this association could be served (a release would wait for the hung
        # call): end it, as the pool path ends the wait — once the peer has its
        # status on the wire, or the abort would overtake it.
        event.assoc.dul.drain(2.0)
        event.assoc.abort()

    token = WATCHDOG.watch(timeout, overrun)
    try:
        return fn()
    finally:
        WATCHDOG.done(token)


def _to_wire(answer: Any) -> int | Dataset:
    if isinstance(answer, Response):
        if answer.error_comment is None and not answer.extra:
            return answer.status
        ds = Dataset()
        ds.Status = answer.status
        if answer.error_comment:
            ds.ErrorComment = answer.error_comment[:64]
        for keyword, value in answer.extra.items():
            setattr(ds, keyword, value)
        return ds
    return int(answer)


def _service_for(runtime: Any, operation: str, request: Any) -> Any:
    """The service that handles ``operation`` for the request's SOP class, or None (logged)."""
    service = runtime.plugins.services.find(runtime.config, operation, request.context.abstract_syntax)
    if service is None:
        log.warning("no service for request", extra={"op": operation, "sop_class": request.context.abstract_syntax})
    return service


def dispatch(event: Any, operation: str, request: Any) -> int | Dataset:
    assoc = event.assoc
    runtime = assoc.gw_runtime
    started = time.perf_counter()
    assoc.gw_busy = True
    try:
        service = _service_for(runtime, operation, request)
        if service is None:
            return Status.SOP_CLASS_NOT_SUPPORTED
        handler = getattr(service.handler, operation)
        timeout = runtime.config.node.plugin_timeout
        try:
            if isinstance(request, StoreRequest):
                veto = runtime.plugins.call("gateway_instance_received", request=request)
                if veto is not None:
                    return _to_wire(veto)
            if timeout and operation == "c_store" and answers_late(assoc):
                answer = _watched(event, service, request, timeout, lambda: handler(request))
            else:
                answer = _bounded(lambda: handler(request), timeout)
        except FutureTimeout:
            METRICS.inc("gateway_plugin_timeouts_total", service=service.name)
            log.error("service did not answer in time", extra={"service": service.name, "op": operation, "timeout_s": timeout})
            return _FAILURE.get(operation, Status.PROCESSING_FAILURE)
        except HookError:
            return _FAILURE.get(operation, Status.PROCESSING_FAILURE)
        except Exception as exc:
            METRICS.inc("gateway_plugin_errors_total", hook=operation, plugin=service.plugin)
            log.error("service raised", exc_info=exc, extra={"service": service.name, "op": operation})
            return _FAILURE.get(operation, Status.PROCESSING_FAILURE)
        wire = _to_wire(answer)
        code = wire if isinstance(wire, int) else int(wire.Status)
        METRICS.inc("gateway_dimse_requests_total", op=operation, status=category(code))
        return wire
    finally:
        payload = getattr(request, "payload", None)
        if payload is not None:
            payload.discard()  # a service that kept the bytes moved or copied them
        assoc.gw_busy = False
        METRICS.inc("gateway_dimse_seconds_total", time.perf_counter() - started, op=operation)


def on_c_echo(event: Any) -> int | Dataset:
    req = EchoRequest(event.assoc.gw_info, _context(event), event.request.MessageID, event.assoc.gw_runtime.config)
    return dispatch(event, "c_echo", req)


def on_c_store(event: Any) -> int | Dataset:
    rq = event.request
    payload = getattr(rq, "_gateway_payload", None)
    if payload is None:  # pynetdicom receive path: the dataset is in memory
        payload = DatasetPayload(data=rq.DataSet.getvalue() if rq.DataSet is not None else b"")
    req = StoreRequest(
        event.assoc.gw_info,
        _context(event),
        rq.MessageID,
        event.assoc.gw_runtime.config,
        sop_class_uid=str(rq.AffectedSOPClassUID),
        sop_instance_uid=str(rq.AffectedSOPInstanceUID),
        priority=int(rq.Priority or 0),
        move_originator_ae=rq.MoveOriginatorApplicationEntityTitle or None,
        move_originator_message_id=rq.MoveOriginatorMessageID,
        payload=payload,
        router=event.assoc.gw_runtime.router,
        plugins=event.assoc.gw_runtime.plugins,
    )
    return dispatch(event, "c_store", req)


def on_n_event_report(event: Any) -> tuple[int | Dataset, None]:
    rq = event.request
    payload = getattr(rq, "_gateway_payload", None)
    if payload is None:  # pynetdicom receive path, or no Event Information at all
        info = rq.EventInformation
        payload = DatasetPayload(data=info.getvalue() if info is not None else b"")
    req = EventReportRequest(
        event.assoc.gw_info,
        _context(event),
        rq.MessageID,
        event.assoc.gw_runtime.config,
        sop_class_uid=str(rq.AffectedSOPClassUID or ""),
        sop_instance_uid=str(rq.AffectedSOPInstanceUID or ""),
        event_type_id=int(rq.EventTypeID or 0),
        payload=payload,
    )
    # pynetdicom wants (status, Event Reply); no service class we serve has an Event Reply.
    return dispatch(event, "n_event_report", req), None


def dispatch_responses(event: Any, operation: str, request: Any) -> Iterator[tuple[int | Dataset, Any]]:
    """Route a request to its service and pass each of the service's (status, dataset)
    answers to pynetdicom as it comes (a generator handler). A service that raises
    ends the exchange with the operation's failure status; nothing escapes into the DUL."""
    assoc = event.assoc
    started = time.perf_counter()
    service = _service_for(assoc.gw_runtime, operation, request)
    if service is None:
        yield Status.SOP_CLASS_NOT_SUPPORTED, None
        return
    code = Status.SUCCESS
    assoc.gw_busy = True  # a graceful shutdown lets the stream finish, as any operation in flight
    answers: Any = None
    try:
        answers = getattr(service.handler, operation)(request)
        for status, dataset in answers:
            wire = _to_wire(status)
            code = wire if isinstance(wire, int) else int(wire.Status)
            yield wire, dataset
    except Exception as exc:
        METRICS.inc("gateway_plugin_errors_total", hook=operation, plugin=service.plugin)
        log.error("service raised", exc_info=exc, extra={"service": service.name, "op": operation})
        code = _FAILURE.get(operation, Status.PROCESSING_FAILURE)
        yield code, None
    finally:
        # The peer went away (or the stream ended early): the service's generator
        # gets GeneratorExit now, not whenever it is collected.
        close = getattr(answers, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:
                log.error("service raised while closing its responses", exc_info=exc,
                          extra={"service": service.name, "op": operation})
        assoc.gw_busy = False
        METRICS.inc("gateway_dimse_requests_total", op=operation, status=category(code))
        METRICS.inc("gateway_dimse_seconds_total", time.perf_counter() - started, op=operation)


def _identifier(event: Any) -> Dataset | None:
    try:
        return event.identifier
    except Exception:  # undecodable Identifier: the service answers with a failure status
        return None


def _identifier_request(event: Any, **extra: Any) -> IdentifierRequest:
    rq = event.request
    return IdentifierRequest(event.assoc.gw_info, _context(event), rq.MessageID, event.assoc.gw_runtime.config,
                             sop_class_uid=str(rq.AffectedSOPClassUID), priority=int(rq.Priority or 0),
                             identifier=_identifier(event), is_cancelled=lambda: bool(event.is_cancelled),
                             plugins=event.assoc.gw_runtime.plugins, **extra)


def on_c_find(event: Any) -> Iterator[tuple[int | Dataset, Any]]:
    yield from dispatch_responses(event, "c_find", _identifier_request(event))


def on_c_move(event: Any) -> Iterator[tuple[int | Dataset, Any]]:
    """The service performs the sub-operations itself and yields every response,
    pending ones included; the stream is sent by :mod:`gateway.net.streams`."""
    destination = str(event.request.MoveDestination or "").strip()
    yield from dispatch_responses(event, "c_move", _identifier_request(event, move_destination=destination))


def on_c_get(event: Any) -> Iterator[tuple[int | Dataset, Any]]:
    """As C-MOVE; the C-STORE sub-operations go back on this association through
    ``request.store_channel`` (in this thread, between two responses)."""
    from gateway.net.storescu import AssociationChannel

    req = _identifier_request(event, store_channel=AssociationChannel(event.assoc))
    yield from dispatch_responses(event, "c_get", req)


HANDLERS = [
    (evt.EVT_C_ECHO, on_c_echo),
    (evt.EVT_C_FIND, on_c_find),
    (evt.EVT_C_MOVE, on_c_move),
    (evt.EVT_C_GET, on_c_get),
    (evt.EVT_C_STORE, on_c_store),
    (evt.EVT_N_EVENT_REPORT, on_n_event_report),
]
