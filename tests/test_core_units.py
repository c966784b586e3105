"""Unit tests of small core pieces: payloads, registry, statuses, metrics, logs."""

from __future__ import annotations

import io
import json
import logging

import pytest

from gateway import logs, metrics
from gateway.messages import DatasetPayload
from gateway.services import BackendRegistry, DuplicateRegistration, Service, ServiceRegistry
from gateway.status import Status, category


def test_payload_in_memory_and_spooled(tmp_path):
    mem = DatasetPayload(data=b"abc")
    assert mem.length == 3 and mem.read() == b"abc" and mem.path is None
    spool = tmp_path / "spool.part"
    spool.write_bytes(b"x" * 5_000_000)
    sp = DatasetPayload(path=spool, length=5_000_000)
    out = tmp_path / "out.bin"
    with open(out, "wb") as fh:
        fh.write(b"HEAD")
        sp.write_to(fh)
        fh.write(b"TAIL")  # the Python file offset follows the kernel copy
    assert out.read_bytes() == b"HEAD" + b"x" * 5_000_000 + b"TAIL"
    sp.discard()
    sp.discard()
    assert not spool.exists()
    with pytest.raises(ValueError):
        DatasetPayload()


class _Echo:
    def c_echo(self, request):
        return 0


def test_registry_lookup_and_duplicates():
    reg = ServiceRegistry()
    reg._current_plugin = "p1"
    reg.add(Service(name="a", sop_classes=("1.2",), handler=_Echo()))
    assert reg.find(None, "c_echo", "1.2").plugin == "p1"
    assert reg.find(None, "c_store", "1.2") is None
    with pytest.raises(DuplicateRegistration):
        reg.add(Service(name="a", sop_classes=("1.3",), handler=_Echo()))
    with pytest.raises(ValueError, match="implements no DIMSE operation"):
        reg.add(Service(name="b", sop_classes=("1.3",), handler=object()))
    dynamic = Service(name="c", sop_classes=lambda cfg: cfg, handler=_Echo(), syntax_policy=lambda cfg: "acceptor")
    reg.add(dynamic)
    assert reg.scp_table(("9.9",))["9.9"] == [dynamic]
    assert dynamic.resolve_syntax_policy(None) == "acceptor"


def test_backend_registry_names_known_backends():
    reg = BackendRegistry("print driver")
    reg.add("a", lambda: 1)
    with pytest.raises(DuplicateRegistration):
        reg.add("a", lambda: 2)
    with pytest.raises(LookupError, match="registered: a"):
        reg.create("zzz")


@pytest.mark.parametrize("code,cat", [(0, "Success"), (0xFF00, "Pending"), (0xFE00, "Cancel"),
                                      (0xB000, "Warning"), (0xA700, "Failure"), (0xC001, "Failure")])
def test_status_categories(code, cat):
    assert category(code) == cat
    assert Status.REFUSED_OUT_OF_RESOURCES.category == "Failure"


def test_metrics_render_sums_workers():
    a, b = metrics.Metrics(), metrics.Metrics()
    a.inc("x_total", op="c_echo")
    b.inc("x_total", 2, op="c_echo")
    b.set("g", 5)
    text = metrics.render([a.snapshot(), b.snapshot()])
    assert 'x_total{op="c_echo"} 3' in text and "# TYPE g gauge" in text and "g 5" in text


def test_json_logs_carry_extras_and_association():
    buf = io.StringIO()
    logs.setup("INFO", "json", stream=buf)
    logs.bind_association("42-1")
    logging.getLogger("gateway.test").info("hello", extra={"calling_ae": "X"})
    logs.bind_association(None)
    record = json.loads(buf.getvalue().splitlines()[-1])
    assert record["event"] == "hello" and record["calling_ae"] == "X" and record["assoc"] == "42-1"
