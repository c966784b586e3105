"""Test plugin: a C-STORE SCP for one test SOP class that records what arrived.

It is loaded from config (`[plugins] modules = ["bytecheck"]`), never named in
the core: adding a service needs no core change. For each instance it writes
``<data_dir>/bytecheck/<SOP Instance UID>.json`` with the length and SHA-256
of the dataset bytes exactly as received and whether they came spooled.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from gateway.hookspecs import hookimpl
from gateway.services import Service

TEST_SOP_CLASS = "1.2.826.0.1.3680043.10.1472.99.1"


class ByteCheck:
    def __init__(self) -> None:
        self.out: Path | None = None

    def c_store(self, request):
        digest = hashlib.sha256()
        with request.payload.open() as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        record = {
            "length": request.payload.length,
            "sha256": digest.hexdigest(),
            "spooled": request.payload.path is not None,
            "sop_class_uid": request.sop_class_uid,
            "transfer_syntax": request.context.transfer_syntax,
            "calling_ae": request.association.calling_ae,
        }
        assert self.out is not None
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"{request.sop_instance_uid}.json").write_text(json.dumps(record))
        return 0x0000


SCP = ByteCheck()


@hookimpl
def gateway_register_services(registry):
    registry.add(Service(name="bytecheck", sop_classes=(TEST_SOP_CLASS,), handler=SCP))


@hookimpl
def gateway_config_loaded(config):
    SCP.out = Path(config.node.data_dir) / "bytecheck"
    return []
