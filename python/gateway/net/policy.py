"""Association policy, applied before negotiation (STO-4, STO-9, SEC-3).

Runs as pynetdicom's EVT_REQUESTED handler on the acceptor thread, with the
config generation the association started on.
"""

from __future__ import annotations

import logging
from typing import Any

from pynetdicom import build_context, evt
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

from gateway.messages import AssociationInfo, AssociationRequest, Rejection
from gateway.metrics import METRICS
from gateway.plugins import HookError

log = logging.getLogger("gateway.net")

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"  # PS3.7 A.2.1 DICOM Application Context Name


def check(assoc: Any, rq: Any, active: int) -> Rejection | None:
    """The core's own rules, in the order a peer would want to hear them."""
    config = assoc.gw_runtime.config
    listener = assoc.gw_listener
    if str(rq.application_context_name) != APPLICATION_CONTEXT:
        # STO-4: rejected-permanent, service-user, application-context-name-not-supported
        return Rejection(1, 1, 2, f"application context {rq.application_context_name} not supported")
    called = rq.called_ae_title.strip()
    if called not in listener.ae_titles:
        # STO-4: rejected-permanent, service-user, called-AE-title-not-recognized
        return Rejection(1, 1, 7, f"called AE title {called!r} is not served on port {listener.port}")
    caps = [c for c in (config.node.max_associations, listener.max_associations) if c]
    if caps and active > min(caps):
        # STO-9/SEC-3: rejected-transient, service-provider (presentation), local-limit-exceeded
        return Rejection(2, 3, 2, f"association limit {min(caps)} reached")
    return None


def _decide(assoc: Any) -> Rejection | None:
    rq = assoc.requestor.primitive
    requestor = assoc.requestor
    host, port = assoc.gw_peer
    info = AssociationInfo(
        id=assoc.gw_id,
        calling_ae=rq.calling_ae_title.strip(),
        called_ae=rq.called_ae_title.strip(),
        peer_host=host,
        peer_port=port,
        local_port=assoc.gw_local_port,
        max_pdu=int(requestor.maximum_length or 0),
        implementation_class_uid=str(requestor.implementation_class_uid or ""),
        implementation_version_name=str(requestor.implementation_version_name or ""),
    )
    assoc.gw_info = info
    # Count association requests, not TCP connections: a port probe that
    # never sends an A-ASSOCIATE-RQ takes no slot (STO-9).
    assoc.gw_counter.add(1)
    assoc.gw_counted = True
    rejection = check(assoc, rq, assoc.gw_counter.value)
    if rejection is None:
        request = AssociationRequest(info, tuple(str(cx.abstract_syntax) for cx in rq.presentation_context_definition_list))
        try:
            # A policy that cannot answer in time refuses, as one that raises (fail closed).
            rejection = assoc.gw_runtime.plugins.call("gateway_association_requested", request=request,
                                                      config=assoc.gw_runtime.config, on_timeout="raise")
        except HookError as exc:
            rejection = Rejection(2, 2, 1, f"policy plugin failed: {exc}")  # transient, ACSE, no reason
    return rejection


def on_requested(event: Any) -> None:
    assoc = event.assoc
    runtime = assoc.gw_runtime
    try:
        rejection = _decide(assoc)
    except Exception as exc:
        # pynetdicom would carry on negotiating after a raising handler: fail closed.
        log.error("association policy failed; rejecting", exc_info=exc)
        rejection = Rejection(2, 2, 1, f"internal error: {exc!r}")
    info = assoc.gw_info
    host, port = assoc.gw_peer
    if rejection is not None:
        METRICS.inc("gateway_associations_rejected_total", reason=rejection.reason, source=rejection.source)
        log.warning("association rejected", extra={
            "calling_ae": info.calling_ae if info else None, "called_ae": info.called_ae if info else None,
            "peer": f"{host}:{port}",
            "result": rejection.result, "source": rejection.source, "reason": rejection.reason, "why": rejection.why,
        })
        assoc.acse.send_reject(rejection.result, rejection.source, rejection.reason)
        assoc.is_rejected = True
        evt.trigger(assoc, evt.EVT_REJECTED, {})
        assoc.kill()
        return
    # The AC carries the called AE title the peer asked for (one listener, many AEs).
    assoc.acceptor.ae_title = info.called_ae
    _choose_contexts(assoc, runtime, assoc.requestor.primitive)


def _choose_contexts(assoc: Any, runtime: Any, rq: Any) -> None:
    """The contexts this association may accept.

    STO-3: pynetdicom accepts, per context, the first of the *acceptor's*
    syntaxes that the peer proposed: the "acceptor" policy (Philips order) is
    its default. For services with the "proposer" policy (GENIE), this
    association gets copies of those contexts ordered as the peer proposed.

    A SOP class only our SCU-role services use (the Storage Commitment SCU's,
    the storage classes a C-GET sends back) is accepted only from a peer that
    proposes the SCP role for it (PS3.7 D.3.3.4): with the default roles it
    would be asking us to be an SCP we are not."""
    table = runtime.scp_table
    proposed: dict[str, list[str]] = {}
    for cx in rq.presentation_context_definition_list:
        uid = str(cx.abstract_syntax)
        services = table.get(uid)
        if services and services[0].resolve_syntax_policy(runtime.config) == "proposer":
            proposed.setdefault(uid, [str(ts) for ts in cx.transfer_syntax])
    as_scp = {str(item.sop_class_uid) for item in rq.user_information or ()
              if isinstance(item, SCP_SCU_RoleSelectionNegotiation) and item.scp_role}
    if as_scp:
        contexts = [ac for ac in runtime.contexts if str(ac.abstract_syntax) in table or str(ac.abstract_syntax) in as_scp]
    else:
        contexts = runtime.default_role_contexts
    if proposed:
        contexts = [_ordered(ac, proposed[str(ac.abstract_syntax)]) if str(ac.abstract_syntax) in proposed else ac
                    for ac in contexts]
    assoc.acceptor.supported_contexts = contexts


def _ordered(ac: Any, order: list[str]) -> Any:
    """A copy of an acceptor context with its syntaxes in the peer's order."""
    rank = {ts: i for i, ts in enumerate(order)}
    ordered = build_context(ac.abstract_syntax, sorted(ac.transfer_syntax, key=lambda ts: rank.get(str(ts), len(rank))))
    ordered.scp_role, ordered.scu_role = ac.scp_role, ac.scu_role
    return ordered


def on_accepted(event: Any) -> None:
    assoc = event.assoc
    METRICS.inc("gateway_associations_total")
    log.info("association accepted", extra={
        "calling_ae": assoc.gw_info.calling_ae, "called_ae": assoc.gw_info.called_ae,
        "peer": f"{assoc.gw_peer[0]}:{assoc.gw_peer[1]}",
        "contexts": len(assoc.accepted_contexts),
    })
    assoc.gw_runtime.plugins.notify("gateway_association_opened", association=assoc.gw_info)


HANDLERS = [
    (evt.EVT_REQUESTED, on_requested),
    (evt.EVT_ACCEPTED, on_accepted),
]
