"""Sender workers of the durable forward queue (issue 5.3/5.4, DESIGN §2): a gateway
receives from DCMTK storescu and forwards to real peers — DCMTK storescp, and
pynetdicom SCPs where DCMTK cannot do the behaviour (answering A700, counting
what arrives). Down destinations, Refused (SND-5), backoff and the dead letter,
the circuit breaker, a slow peer beside a fast one, restarts, hot reload, and
the gateway_series_complete event."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import basic_toml, dcmtk, free_port, wait_port, write_config, write_cts
from gateway.forward.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from gateway.index import Index
from gateway.index.queue import ForwardQueue
from gateway.metrics import METRICS

CT = "1.2.840.10008.5.1.4.1.1.2"
ROOT = "1.2.826.0.1.3680043.10.1472.99"
NODELAY = {"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"}
UNCOMPRESSED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2"]


# ---- helpers --------------------------------------------------------------------------

def make_cts(directory: Path, n: int, series: str = "1", tag: str = "") -> list[Path]:
    """Small CT objects with UIDs of their own per (series, tag)."""
    study = f"{ROOT}.1{tag}"
    return write_cts(directory, n, study=study, series=f"{study}.{series}", patient_id="FWD-1",
                     patient_name="Forward^Test", uid=lambda i: f"{ROOT}.3{tag}.{series}.{i + 1}")


def send(port: int, files: list[Path]) -> None:
    """DCMTK storescu into the gateway (one association)."""
    subprocess.run([dcmtk("storescu"), "-aet", "SCANNER1", "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port),
                    *map(str, files)], check=True, capture_output=True, timeout=60, env=NODELAY)


def wait_until(cond, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def remote(ae: str, port: int, **extra) -> str:
    lines = [f'ae_title = "{ae}"', 'host = "127.0.0.1"', f"port = {port}", "association_timeout = 3",
             "dimse_timeout = 10"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def route(*destinations: str, name: str = "all") -> str:
    return f'[[rule]]\nname = "{name}"\nmatch = {{ modality = "CT" }}\nforward = {json.dumps(list(destinations))}\n'


def forwarding(**settings) -> str:
    values = dict(poll_interval=0.1, backoff_initial=0.1, backoff_max=0.5, idle_close=1.0,
                  series_quiet_time=3600, breaker_threshold=50, breaker_cooldown=0.5)
    values.update(settings)
    return "[forwarding]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in values.items()) + "\n"


def queue_of(gw) -> ForwardQueue:
    return ForwardQueue(Index(gw.worker.runtime.config.effective_database_url()))


def states(q: ForwardQueue, destination: str | None = None) -> list[str]:
    return sorted(j.state for j in q.list(destination=destination))


class Storescp:
    """DCMTK storescp writing every object it receives to a file of its own (+uf)."""

    def __init__(self, out: Path, port: int, ae: str = "PACS", *extra: str) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out, self.port = out, port
        self.proc = subprocess.Popen([dcmtk("storescp"), "-aet", ae, "-od", str(out), "+uf", *extra, str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=NODELAY)
        wait_port(port)

    def received(self) -> list[str]:
        """SOP Instance UIDs of the files written, one entry per reception."""
        from pydicom import dcmread

        uids = []
        for f in sorted(self.out.iterdir()):
            try:
                uids.append(str(dcmread(f, stop_before_pixels=True).SOPInstanceUID))
            except Exception:
                pass  # being written
        return uids

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class PyScp:
    """A pynetdicom Storage SCP that records every C-STORE and answers ``status``
    (after ``delay`` seconds): what DCMTK cannot do (A700 on demand, slow, counting)."""

    def __init__(self, port: int, ae: str = "PYSCP", status: int = 0, delay: float = 0.0) -> None:
        from pynetdicom import AE, evt

        self.status, self.delay = status, delay
        self.calls: list[tuple[float, str, int]] = []
        self.associations = 0
        self.inflight = self.peak = 0  # concurrent C-STOREs (one per association)
        self._lock = threading.Lock()
        ae_ = AE(ae_title=ae)
        ae_.add_supported_context(CT, UNCOMPRESSED)
        ae_.add_supported_context("1.2.840.10008.1.1", UNCOMPRESSED)

        def on_store(event):
            with self._lock:
                self.inflight += 1
                self.peak = max(self.peak, self.inflight)
            if self.delay:
                time.sleep(self.delay)
            status = self.status
            with self._lock:
                self.inflight -= 1
                self.calls.append((time.monotonic(), str(event.request.AffectedSOPInstanceUID), status))
            return status

        def on_assoc(event):
            with self._lock:
                self.associations += 1

        self.server = ae_.start_server(("127.0.0.1", port), block=False, evt_handlers=[
            (evt.EVT_C_STORE, on_store), (evt.EVT_ACCEPTED, on_assoc)])

    def stored(self) -> list[str]:
        with self._lock:
            return [uid for _, uid, status in self.calls if status == 0 or status >> 12 == 0xB]

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def peers():
    started = []

    def add(peer):
        started.append(peer)
        return peer

    yield add
    for p in started:
        p.stop()


# ---- the circuit breaker (unit) ----------------------------------------------------

def test_breaker_opens_after_threshold_probes_once_and_closes():
    now = [0.0]
    b = CircuitBreaker(threshold=3, cooldown=10, clock=lambda: now[0])
    assert b.acquire() == CLOSED
    assert not b.failure("refused") and not b.failure("refused")
    b.success()  # consecutive failures only
    assert [b.failure("x") for _ in range(3)] == [False, False, True]
    assert b.state == OPEN and b.acquire() is None and not b.may_try()
    assert b.snapshot().retry_in == 10 and b.snapshot().opened == 1
    now[0] = 10.5
    assert b.state == HALF_OPEN and b.may_try()
    assert b.acquire() == HALF_OPEN
    assert b.acquire() is None  # exactly one probe
    b.cancel()  # nothing to send: another caller may probe
    assert b.acquire() == HALF_OPEN
    assert b.failure("still down")  # a failed probe opens it again for a cooldown
    assert b.state == OPEN and b.snapshot().opened == 2
    now[0] = 21
    assert b.acquire() == HALF_OPEN
    b.success()
    assert b.state == CLOSED and b.snapshot().failures == 0 and b.last_error is None


def test_breaker_reconfigure_keeps_state():
    b = CircuitBreaker(threshold=5, cooldown=60)
    for _ in range(4):
        b.failure("x")
    b.configure(threshold=2, cooldown=0)
    assert b.failure("x")
    assert b.state == HALF_OPEN  # cooldown 0: probe at once


# ---- forwarding with real peers ----------------------------------------------------

def test_destination_down_then_up_delivers_each_object_once(inprocess_gateway, tmp_path, peers):
    """Issue 5: a destination that is down when the objects arrive and comes up later:
    every object is delivered, exactly once (storescp writes a unique file per reception)."""
    port, pacs_port = free_port(), free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "data", extra=forwarding(max_attempts=100)),
                           **{"remotes/pacs.toml": remote("PACS", pacs_port), "routes/r.toml": route("pacs")})
    files = make_cts(tmp_path / "in", 5)
    send(port, files)
    q = queue_of(gw)
    assert len(q.list(destination="pacs")) == 5
    wait_until(lambda: all(j.attempts >= 1 for j in q.list()), what="failed tries while the peer is down")
    assert all(j.state in ("pending", "claimed") and "unreachable" in (j.last_error or "") for j in q.list())
    scp = peers(Storescp(tmp_path / "pacs", pacs_port))
    wait_until(lambda: states(q) == ["done"] * 5, what="delivery after the peer came up")
    # Nothing is sent again afterwards: a sixth object sent now is delivered after
    # anything the sender might still resend, so once it is there, the count is final.
    send(port, write_cts(tmp_path / "late", 1, study=f"{ROOT}.1", series=f"{ROOT}.1.1", patient_id="FWD-1",
                         patient_name="Forward^Test", uid=lambda i: f"{ROOT}.3.1.6"))
    wait_until(lambda: states(q) == ["done"] * 6, what="the sixth object, sent last")
    wait_until(lambda: len(scp.received()) >= 6, what="the sixth object at the peer")
    assert sorted(scp.received()) == sorted(f"{ROOT}.3.1.{i}" for i in range(1, 7))
    assert METRICS.get("gateway_forward_sent_total", destination="pacs") >= 5


def test_a700_is_retried_with_backoff_then_dead_lettered_and_replayed(inprocess_gateway, tmp_path, peers):
    """SND-5: Refused (A700) ends the association and the job is retried after an
    exponential backoff; after max_attempts it is dead-lettered; `queue retry` replays it."""
    port, scp_port = free_port(), free_port()
    cfg = tmp_path / "config0"
    gw = inprocess_gateway(basic_toml(port, tmp_path / "data", extra=forwarding(backoff_initial=0.4, backoff_max=5)),
                           **{"remotes/busy.toml": remote("BUSY", scp_port, max_attempts=3),
                              "routes/r.toml": route("busy")})
    scp = peers(PyScp(scp_port, "BUSY", status=0xA700))
    send(port, make_cts(tmp_path / "in", 2, tag="7"))
    q = queue_of(gw)
    wait_until(lambda: states(q) == ["dead", "dead"], timeout=20, what="dead letter")
    jobs = q.list()
    assert all(j.attempts == 3 and j.last_status == 0xA700 and "0xA700" in j.last_error for j in jobs), jobs
    for uid in {j.sop_instance_uid for j in jobs}:
        tries = [t for t, u, _ in scp.calls if u == uid]
        assert len(tries) == 3  # no 4th try: dead means dead
        # Backoff with jitter: try n+1 waits >= half of 0.4 * 2**(n-1) seconds.
        gaps = [b - a for a, b in zip(tries, tries[1:])]
        assert gaps[0] >= 0.2 - 0.05 and gaps[1] >= 0.4 - 0.05, gaps
    # SND-5: each Refused ended its association: one association per try.
    assert scp.associations >= 6
    scp.status = 0
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "queue", "retry", "--config", str(cfg),
                          "--destination", "busy"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "2 job(s) queued again" in out.stdout, out.stderr
    wait_until(lambda: states(q) == ["done", "done"], what="replayed jobs delivered")
    assert sorted(scp.stored()) == sorted(j.sop_instance_uid for j in jobs)


def test_slow_destination_does_not_delay_a_fast_one(inprocess_gateway, tmp_path, peers):
    """Issue 5.3: one slow destination never delays the others (a worker per destination)."""
    port, slow_port, fast_port = free_port(), free_port(), free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "data", extra=forwarding()),
                           **{"remotes/slow.toml": remote("SLOW", slow_port),
                              "remotes/fast.toml": remote("FAST", fast_port),
                              "routes/r.toml": route("slow", "fast")})
    slow = peers(Storescp(tmp_path / "slow", slow_port, "SLOW", "--sleep-after", "1"))
    fast = peers(Storescp(tmp_path / "fast", fast_port, "FAST"))
    send(port, make_cts(tmp_path / "in", 4))
    q = queue_of(gw)
    wait_until(lambda: states(q, "fast") == ["done"] * 4, timeout=30, what="the fast destination")
    # The fast one finished while the slow one (1 s per object) had not: it did not wait.
    slow_done = states(q, "slow").count("done")
    assert slow_done < 4, slow_done
    wait_until(lambda: states(q, "slow") == ["done"] * 4, timeout=20, what="the slow destination")
    assert len(fast.received()) == 4 and len(slow.received()) == 4


def test_several_associations_per_destination(inprocess_gateway, tmp_path, peers):
    """Issue 5.3 option: remote `associations = 2` sends on two associations at once
    while enough work is queued; every object still goes exactly once."""
    port, scp_port = free_port(), free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "data", extra=forwarding(batch=2)),
                           **{"remotes/pair.toml": remote("PAIR", scp_port, associations=2),
                              "routes/r.toml": route("pair")})
    scp = peers(PyScp(scp_port, "PAIR", delay=0.25))
    send(port, make_cts(tmp_path / "in", 8, tag="9"))
    q = queue_of(gw)
    wait_until(lambda: states(q) == ["done"] * 8, timeout=20, what="delivery on two associations")
    assert scp.peak == 2  # two C-STOREs in flight at once, never more
    assert sorted(scp.stored()) == sorted(f"{ROOT}.39.1.{i}" for i in range(1, 9))


def test_circuit_breaker_opens_on_a_dead_destination(inprocess_gateway, tmp_path):
    """DESIGN §2: consecutive association failures open the circuit; while open nothing
    is tried and no attempt is charged; after the cooldown exactly one probe. The state
    is a metric and shows in `queue ls --summary`."""
    port = free_port()
    # A peer that accepts TCP connections and closes them at once: every association fails.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(16)
    connects = []

    def accept_and_drop():
        while True:
            try:
                c, _ = dead.accept()
            except OSError:
                return
            connects.append(time.monotonic())
            c.close()

    threading.Thread(target=accept_and_drop, daemon=True).start()
    cfg = tmp_path / "config0"
    gw = inprocess_gateway(
        basic_toml(port, tmp_path / "data", extra=forwarding(breaker_threshold=3, breaker_cooldown=2.0,
                                                            backoff_initial=0.05, backoff_max=0.1)),
        **{"remotes/deadpeer.toml": remote("DEAD", dead.getsockname()[1]), "routes/r.toml": route("deadpeer")})
    try:
        send(port, make_cts(tmp_path / "in", 3, tag="5"))
        wait_until(lambda: METRICS.get("gateway_forward_breaker_state", destination="deadpeer") == 2,
                   what="the circuit to open")
        n, attempts = len(connects), sorted(j.attempts for j in queue_of(gw).list())
        assert n == 3 and METRICS.get("gateway_forward_breaker_opened_total", destination="deadpeer") == 1
        opened_at = connects[-1]  # it opened on the failure of this connection
        time.sleep(max(0.0, opened_at + 1.6 - time.monotonic()))
        assert len(connects) == n  # open: not tried ...
        assert sorted(j.attempts for j in queue_of(gw).list()) == attempts  # ... and not charged
        wait_until(lambda: len(connects) == n + 1, timeout=3, what="the half-open probe")
        assert connects[-1] - opened_at >= 2.0
        time.sleep(0.5)
        assert len(connects) == n + 1  # one probe; it failed, so the circuit is open again
        assert sorted(j.attempts for j in queue_of(gw).list()) == attempts  # probes are not charged
        wait_until(lambda: (tmp_path / "data" / "run" / "forward-state.json").exists(), what="published state")
        out = subprocess.run([sys.executable, "-m", "gateway.cli", "queue", "ls", "--summary", "--config", str(cfg)],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "deadpeer" in out.stdout and "open (probe in" in out.stdout and "circuit open" in out.stdout
    finally:
        dead.close()


def test_remote_change_is_picked_up_without_restart(inprocess_gateway, tmp_path, peers):
    """Hot reload (DESIGN §4): jobs queued for a remote whose remotes/*.toml now points
    at another host/port go there, with no restart."""
    port, old_port, new_port = free_port(), free_port(), free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "data", extra=forwarding(max_attempts=100)),
                           **{"remotes/pacs.toml": remote("PACS", old_port), "routes/r.toml": route("pacs")})
    send(port, make_cts(tmp_path / "in", 2, tag="3"))
    q = queue_of(gw)
    wait_until(lambda: all(j.attempts >= 1 for j in q.list()), what="tries against the old port")
    scp = peers(Storescp(tmp_path / "pacs", new_port))
    (tmp_path / "config0" / "remotes" / "pacs.toml").write_text(remote("PACS", new_port))
    wait_until(lambda: states(q) == ["done", "done"], timeout=15, what="delivery to the new port")
    assert len(scp.received()) == 2


def test_missing_instance_or_file_fails_without_retry(inprocess_gateway, tmp_path, peers):
    """A job whose instance left the index, or whose file is gone, fails at once
    (not retried) with an error that says so."""
    from gateway.index.queue import ForwardPlan, enqueue

    port, pacs_port = free_port(), free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "data", extra=forwarding()),
                           **{"remotes/pacs.toml": remote("PACS", pacs_port)})
    scp = peers(Storescp(tmp_path / "pacs", pacs_port))
    files = make_cts(tmp_path / "in", 3, tag="4")
    send(port, files)
    index = Index(gw.worker.runtime.config.effective_database_url())
    gone_file = index.find_instance(f"{ROOT}.34.1.2")
    (tmp_path / "data" / "archive" / gone_file.file.path).unlink()
    with index.transaction() as tx:
        for uid in (f"{ROOT}.34.1.1", f"{ROOT}.34.1.2", f"{ROOT}.34.1.999"):
            enqueue(tx.conn, [ForwardPlan("pacs", "manual")], sop_instance_uid=uid, sop_class_uid=CT,
                    series_instance_uid=f"{ROOT}.14.1", study_instance_uid=f"{ROOT}.14")
    q = ForwardQueue(index)
    wait_until(lambda: "pending" not in states(q) and "claimed" not in states(q), what="the jobs to settle")
    jobs = {j.sop_instance_uid: j for j in q.list()}
    assert jobs[f"{ROOT}.34.1.1"].state == "done"
    assert jobs[f"{ROOT}.34.1.2"].state == "failed" and "is missing" in jobs[f"{ROOT}.34.1.2"].last_error
    assert jobs[f"{ROOT}.34.1.999"].state == "failed" and "no longer in the index" in jobs[f"{ROOT}.34.1.999"].last_error
    assert scp.received() == [f"{ROOT}.34.1.1"]


def test_hook_series_complete(inprocess_gateway, tmp_path):
    """gateway_series_complete fires in the sender once per completed series (here:
    the sending association ended), with the instance count; a raising plugin is
    logged and does not stop the sender."""
    from gateway.forward import SenderService
    from gateway.hookspecs import hookimpl
    from gateway.plugins import load_host

    seen = []

    class Recorder:
        @hookimpl
        def gateway_series_complete(self, series, config):
            seen.append(series)

    class Broken:
        @hookimpl
        def gateway_series_complete(self, series, config):
            raise RuntimeError("plugin bug")

    port = free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "data", extra=forwarding()), sender=False,
                           **{"routes/r.toml": route("ARCHIVE@127.0.0.1:9")})
    config = gw.worker.runtime.config
    host = load_host(config.disabled_plugins, config.plugins.modules)
    host.register("recorder", Recorder())
    host.register("broken", Broken())
    sender = SenderService(config, plugins=host).start()
    try:
        send(port, make_cts(tmp_path / "in", 3, series="1", tag="6"))
        send(port, make_cts(tmp_path / "in", 2, series="2", tag="6"))
        wait_until(lambda: len(seen) == 2, what="two series complete")
        assert sorted((s.series_instance_uid, s.instances_received) for s in seen) == [
            (f"{ROOT}.16.1", 3), (f"{ROOT}.16.2", 2)]
        assert all(s.study_instance_uid == f"{ROOT}.16" for s in seen)
        assert METRICS.get("gateway_plugin_errors_total", hook="gateway_series_complete", plugin="broken") >= 2
        time.sleep(0.5)
        assert len(seen) == 2  # once per completion
        assert sender._thread.is_alive()
    finally:
        sender.stop(timeout=10)


# ---- the real process: `dicom-gateway serve` ------------------------------------------

def test_restart_with_a_full_queue_delivers_everything_once(gateway_process, tmp_path, peers):
    """Issue 5: SIGTERM while the sender is mid-queue (it finishes the object in flight
    and gives the rest back), then a restart: every object is delivered, none twice."""
    port, scp_port = free_port(), free_port()
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "cfg", basic_toml(port, data, extra=forwarding(batch=4)),
                       **{"remotes/pacs.toml": remote("PACS", scp_port), "routes/r.toml": route("pacs")})
    scp = peers(PyScp(scp_port, "PACS", delay=0.15))
    files = make_cts(tmp_path / "in", 16, tag="8")
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    gp.wait_for_output("gateway ready")
    send(port, files)
    wait_until(lambda: len(scp.stored()) >= 3, what="the first deliveries")
    assert gp.stop() == 0
    index = Index("sqlite:///" + str((data / "index.db").resolve()))
    q = ForwardQueue(index)
    first = len(scp.stored())
    assert 3 <= first < 16
    assert "claimed" not in states(q)  # the stopping sender gave its batch back
    assert states(q).count("done") == first  # and recorded what it had sent
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    wait_until(lambda: states(q) == ["done"] * 16, timeout=30, what="delivery after the restart")
    stored = scp.stored()
    assert sorted(stored) == sorted(f"{ROOT}.38.1.{i}" for i in range(1, 17))  # each exactly once
    assert gp.stop() == 0


def test_killed_sender_is_restarted_and_its_claims_are_released(gateway_process, tmp_path, peers):
    """A sender process that dies (SIGKILL mid-batch) is restarted by the supervisor; the
    new one frees the dead one's claimed jobs and delivers everything. At-least-once: only
    the object in flight at the kill and those sent since the last group of `done`
    records (0.25 s: two at 0.15 s each) may arrive twice (docs/forwarding.md, case 1)."""
    import re

    port, scp_port = free_port(), free_port()
    cfg = write_config(tmp_path / "cfg", basic_toml(port, tmp_path / "data", extra=forwarding(batch=20)),
                       **{"remotes/pacs.toml": remote("PACS", scp_port), "routes/r.toml": route("pacs")})
    scp = peers(PyScp(scp_port, "PACS", delay=0.15))
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    gp.wait_for_output("sender started")
    pid = int(re.search(r"sender started\s+\[claimant=[^:\]]+:(\d+)\]", gp.output()).group(1))
    send(port, make_cts(tmp_path / "in", 12, tag="2"))
    wait_until(lambda: len(scp.stored()) >= 2, what="the first deliveries")
    os.kill(pid, signal.SIGKILL)
    gp.wait_for_output("sender died; restarting", timeout=15)
    q = ForwardQueue(Index("sqlite:///" + str((tmp_path / "data" / "index.db").resolve())))
    wait_until(lambda: states(q) == ["done"] * 12, timeout=30, what="delivery by the restarted sender")
    stored = scp.stored()
    assert set(stored) == {f"{ROOT}.32.1.{i}" for i in range(1, 13)}
    assert len(stored) - 12 <= 3, sorted(stored)
    assert gp.stop() == 0
