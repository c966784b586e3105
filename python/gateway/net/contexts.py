"""Presentation contexts built from the service registry (DESIGN §3)."""

from __future__ import annotations

from typing import Any

from pynetdicom import build_context
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import ServiceClass, StorageServiceClass, VerificationServiceClass
from pynetdicom.sop_class import register_uid, uid_to_service_class

# Which pynetdicom service class runs an operation for a UID pynetdicom does
# not know (a plugin's private SOP class, e.g. GENIE 1.2.840.113619.4.27).
_SERVICE_CLASS_FOR_OP = {
    "c_store": StorageServiceClass,
    "c_echo": VerificationServiceClass,
}


def _ensure_known(uid: str, operations: tuple[str, ...]) -> None:
    if uid_to_service_class(uid) is not ServiceClass:
        return
    for op in operations:
        cls = _SERVICE_CLASS_FOR_OP.get(op)
        if cls is not None:
            register_uid(uid, "GatewayPrivate_" + uid.replace(".", "_"), cls)
            return


def scp_contexts(registry: Any, config: Any) -> list[PresentationContext]:
    contexts = []
    for uid, services in registry.scp_table(config).items():
        syntaxes: list[str] = []
        ops: tuple[str, ...] = ()
        for service in services:
            ops += service.operations()
            syntaxes += [ts for ts in service.transfer_syntaxes if ts not in syntaxes]
        _ensure_known(uid, ops)
        cx = build_context(uid, syntaxes)
        cx.scp_role = True
        cx.scu_role = False
        contexts.append(cx)
    return contexts
