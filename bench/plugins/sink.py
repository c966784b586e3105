"""Benchmark plugin: a C-STORE SCP for Secondary Capture that keeps nothing,
so a benchmark measures the receive path, not storage."""

from gateway.hookspecs import hookimpl
from gateway.services import Service

SC = "1.2.840.10008.5.1.4.1.1.7"


class Sink:
    def c_store(self, request):
        return 0x0000


@hookimpl
def gateway_register_services(registry):
    registry.add(Service(name="sink", sop_classes=(SC,), handler=Sink()))
