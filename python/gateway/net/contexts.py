"""Presentation contexts built from the service registry (DESIGN §3)."""

from __future__ import annotations

from typing import Any

from pynetdicom import build_context
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import (QueryRetrieveServiceClass, ServiceClass, StorageServiceClass,
                                      VerificationServiceClass)
from pynetdicom.sop_class import register_uid, uid_to_service_class

# Which pynetdicom service class runs an operation for a UID pynetdicom does
# not know (a plugin's private SOP class, e.g. GENIE 1.2.840.113619.4.27).
_SERVICE_CLASS_FOR_OP = {
    "c_store": StorageServiceClass,
    "c_echo": VerificationServiceClass,
    "c_find": QueryRetrieveServiceClass,
    "c_move": QueryRetrieveServiceClass,
    "c_get": QueryRetrieveServiceClass,
}


def _ensure_known(uid: str, operations: tuple[str, ...]) -> None:
    if uid_to_service_class(uid) is not ServiceClass:
        return
    for op in operations:
        cls = _SERVICE_CLASS_FOR_OP.get(op)
        if cls is not None:
            register_uid(uid, "GatewayPrivate_" + uid.replace(".", "_"), cls)
            return


def _acceptor_roles(services: list[Any]) -> tuple[bool, bool]:
    """(scu_role, scp_role) of an acceptor context, as pynetdicom reads them:
    whether we accept a requestor that proposes, by SCP/SCU Role Selection
    (PS3.7 D.3.3.4), to act as SCU resp. as SCP of the SOP class.

    Our "scp" services accept a requestor acting as SCU; our "scu" services
    accept one acting as SCP: e.g. a Storage Commitment SCP that opens an
    association to us to send its N-EVENT-REPORT (PS3.4 J.3.3) proposes the
    SCP role and is accepted with us as SCU, and a C-GET SCU proposes the
    Storage SCP role for the SOP classes it wants back, accepted for every SOP
    class the Storage SCU service sends (the C-STORE sub-operations then go on
    those contexts, PS3.4 C.4.3). A requestor that proposes no role selection
    always gets the default roles (it SCU, we SCP).
    """
    roles = {service.role for service in services}
    return bool(roles & {"scp", "both"}), bool(roles & {"scu", "both"})


def scp_contexts(registry: Any, config: Any) -> list[PresentationContext]:
    """The contexts we accept: one per abstract syntax of every service,
    the SCP services first (their order decides transfer syntax preference)."""
    table: dict[str, list[Any]] = {uid: list(services) for uid, services in registry.scp_table(config).items()}
    for service in registry.services.values():
        if service.role == "scu":
            for uid in service.resolve_sop_classes(config):
                table.setdefault(uid, []).append(service)
    contexts = []
    for uid, services in table.items():
        syntaxes: list[str] = []
        ops: tuple[str, ...] = ()
        for service in services:
            ops += service.operations()
            syntaxes += [ts for ts in service.transfer_syntaxes if ts not in syntaxes]
        _ensure_known(uid, ops)
        cx = build_context(uid, syntaxes)
        cx.scu_role, cx.scp_role = _acceptor_roles(services)
        contexts.append(cx)
    return contexts
