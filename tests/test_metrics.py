"""/metrics with several workers: counters summed, per-config state once, exact numbers."""

from __future__ import annotations

import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pynetdicom import AE

from conftest import basic_toml, free_port, write_config
from gateway import metrics

WORKERS = 2


def scrape(http: int) -> dict[tuple[str, frozenset], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=10).read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def wait_until(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_render_exact_values_and_per_config_max():
    a, b = metrics.Metrics(), metrics.Metrics()
    ts = 1718000000.123456
    for m, gen in ((a, 4), (b, 3)):
        m.set("gateway_config_generation", gen)
        m.set("gateway_config_last_reload_success_timestamp_seconds", ts - gen)
        m.inc("gateway_config_reloads_total", 2, result="failure")
        m.inc("gateway_associations_total", 1_000_001)
    a.inc("gateway_dimse_seconds_total", 0.1, op="c_echo")
    b.inc("gateway_dimse_seconds_total", 0.2, op="c_echo")
    a.set("odd", 1, reason='say "hi"\\now')
    text = metrics.render([a.snapshot(), b.snapshot()])
    assert "gateway_config_generation 4\n" in text
    assert f"gateway_config_last_reload_success_timestamp_seconds {ts - 3!r}\n" in text
    assert 'gateway_config_reloads_total{result="failure"} 2\n' in text
    assert "gateway_associations_total 2000002\n" in text  # not 2e+06
    assert f'gateway_dimse_seconds_total{{op="c_echo"}} {0.1 + 0.2!r}\n' in text
    parsed = {(s.name, tuple(s.labels.items())): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}
    assert parsed[("odd", (("reason", 'say "hi"\\now'),))] == 1
    assert parsed[("gateway_config_last_reload_success_timestamp_seconds", ())] == ts - 3
    assert metrics.format_value(float("inf")) == "+Inf" and metrics.format_value(float("nan")) == "NaN"


def test_metrics_with_two_workers_after_good_and_bad_reloads(gateway_process, tmp_path):
    port, http = free_port(), free_port()
    data = tmp_path / "data"

    def toml(extra_node: str = "") -> str:
        return (basic_toml(port, data, extra_node=extra_node)
                .replace("workers = 1", f"workers = {WORKERS}")
                .replace("[http]\nenabled = false", f'[http]\nbind = "127.0.0.1"\nport = {http}'))

    cfg = write_config(tmp_path / "cfg", toml())
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    gp.wait_for_output("gateway ready")

    def edit(content: str, outcome: str, total: int) -> None:
        # Each worker reloads on its own; wait until every one logged this change
        # (so the next edit is not debounced into the same check).
        (cfg / "gateway.toml").write_text(content)
        wait_until(lambda: gp.output().count(f"gateway.worker: {outcome}") >= total,
                   f"{total} x {outcome!r}:\n{gp.output()}")

    edit(toml("max_associations = 50"), "config reloaded", WORKERS)
    edit(toml("max_associatoins = 50"), "config reload failed", WORKERS)
    edit(toml("workres = 3"), "config reload failed", 2 * WORKERS)
    edit(toml("max_associations = 60"), "config reloaded", 2 * WORKERS)
    reloaded_at = time.time()

    # Associations land on either worker (SO_REUSEPORT): the counter is their sum.
    n_echoes = 6
    for _ in range(n_echoes):
        ae = AE(ae_title="METRICS")
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0
        assoc.release()

    # Workers publish every second: wait until both snapshots show the last reload and the echoes.
    def settled():
        s = scrape(http)
        gens = [sample(s, "gateway_worker_config_generation", worker=str(i)) for i in range(WORKERS)]
        echoes = sample(s, "gateway_dimse_requests_total", op="c_echo", status="Success")
        return s if gens == [3] * WORKERS and echoes == n_echoes else None

    s = wait_until(settled, "both workers' metrics after the reloads")
    assert sample(s, "gateway_config_generation") == 3
    assert sample(s, "gateway_config_reloads_total", result="success") == 2
    assert sample(s, "gateway_config_reloads_total", result="failure") == 2
    ts = sample(s, "gateway_config_last_reload_success_timestamp_seconds")
    assert ts is not None and abs(ts - reloaded_at) < 60, (ts, reloaded_at)
    assert sample(s, "gateway_associations_total") == n_echoes
    # The raw text keeps the timestamp's sub-second digits (no %g rounding).
    text = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=10).read().decode()
    line = next(l for l in text.splitlines() if l.startswith("gateway_config_last_reload_success_timestamp_seconds "))
    assert "e+" not in line and float(line.split()[1]) == ts
    assert gp.stop() == 0


@pytest.mark.parametrize("value,text", [(3, "3"), (3.0, "3"), (1718000000.25, "1718000000.25"), (0.5, "0.5")])
def test_format_value(value, text):
    assert metrics.format_value(value) == text
