"""Verification service class (PS3.4 Annex A): C-ECHO SCP.

VER-1: answers C-ECHO on every listening AE without operator action, with
Implicit VR LE at least (we offer all three uncompressed syntaxes).
The SCU side (VER-2) is ``dicom-gateway echo``, added here.
"""

from __future__ import annotations

import argparse
import sys

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
        role="both",
        client=VerificationSCU(),
        scu_transfer_syntaxes=("1.2.840.10008.1.2",),
        scu_behaviour=("Proposes Verification with Implicit VR LE, which every SCP accepts; no SCP/SCU "
                       "role selection; releases after the response (VER-2)",),
        description="Verification SCP (VER-1) and SCU (VER-2, `dicom-gateway echo`)",
    ))


class VerificationSCU:
    def echo(self, peer, repeat: int = 1):
        """C-ECHO ``peer`` (:class:`gateway.net.scu.Peer`) ``repeat`` times on one
        association; a list of ``EchoResult``. AssociationFailed when it cannot."""
        from gateway.net.scu import echo

        return echo(peer, repeat=repeat)


@hookimpl
def gateway_register_commands(commands):
    p = commands.add_parser("echo", help="C-ECHO a peer (VER-2), like echoscu",
                            examples="dicom-gateway echo pacs.local 104 --aec PACS")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--aet", "-aet", default="DICOM_GATEWAY", help="calling AE title (default DICOM_GATEWAY)")
    p.add_argument("--aec", "-aec", default="ANY-SCP", help="called AE title (default ANY-SCP)")
    p.add_argument("--repeat", type=int, default=1, help="C-ECHOs on the one association")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for connect/ACSE/DIMSE")
    p.set_defaults(func=echo_command)


def echo_command(args: argparse.Namespace) -> int:
    """Exit 0 when every C-ECHO succeeded, 1 on a failure status, 2 when the
    association was rejected, 3 when it could not be opened at all."""
    from gateway.net.scu import AssociationFailed, Peer, echo
    from gateway.status import category

    peer = Peer(args.host, args.port, called_ae=args.aec, calling_ae=args.aet, timeout=args.timeout)
    try:
        results = echo(peer, repeat=args.repeat)
    except AssociationFailed as exc:
        print(f"C-ECHO from {args.aet}: {exc}", file=sys.stderr)
        return 2 if exc.kind == "rejected" else 3
    worst = 0
    for r in results:
        print(f"C-ECHO {args.aet} -> {args.aec}@{args.host}:{args.port}: "
              f"{category(r.status)} (0x{r.status:04X}) in {r.seconds * 1000:.1f} ms")
        if r.status != 0:
            worst = 1
    return worst
