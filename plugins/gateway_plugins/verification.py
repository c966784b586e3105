"""Verification service class (PS3.4 Annex A): C-ECHO SCP.

VER-1: answers C-ECHO on every listening AE without operator action, with
Implicit VR LE at least (we offer all three uncompressed syntaxes).
The SCU side (VER-2) is ``dicom-gateway echo``.
"""

from __future__ import annotations

from gateway.hookspecs import hookimpl
from gateway.messages import EchoRequest
from gateway.services import Service
from gateway.status import Status

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"


class VerificationSCP:
    def c_echo(self, request: EchoRequest) -> int:
        return Status.SUCCESS


@hookimpl
def gateway_register_services(registry):
    registry.add(Service(
        name="verification",
        sop_classes=(VERIFICATION_SOP_CLASS,),
        handler=VerificationSCP(),
        description="Verification SCP (VER-1)",
    ))
