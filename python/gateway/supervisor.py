"""`dicom-gateway serve`: N worker processes sharing each port, one sender, one operator HTTP port.

Workers are forked (they inherit the loaded plugins' code, not sockets) and
each binds every listener with SO_REUSEPORT. One more forked process runs the
sender workers of the forward queue (gateway.forward), so a slow peer or a
long transcode never competes with receiving. A process that dies is
replaced; SIGTERM/SIGINT is passed on so each finishes in-flight operations;
a supervisor that is killed takes its children with it (PR_SET_PDEATHSIG).

Before anything else the supervisor locks the data directory
(``<data_dir>/run/gateway.pid``) and checks that no other process listens on
its DICOM ports or its operator HTTP port (gateway.runlock); either taken, it
prints one line saying by whom and how out, and ``serve`` exits 2 (as for an
invalid configuration: nothing was started).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from gateway import metrics, runlock
from gateway.net.server import Counter
from gateway.worker import Worker

log = logging.getLogger("gateway.supervisor")
_ctx = multiprocessing.get_context("fork")


_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_HTTP_HINT = "choose another one with [http] port in gateway.toml, or turn it off with [http] enabled = false"


def _child_setup() -> None:
    """In a forked child: start with empty metrics (not a copy of the supervisor's,
    which it would publish again), and get SIGTERM when the supervisor dies, so
    no orphan keeps a port and the data-directory lock."""
    metrics.METRICS.reset()
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if runlock.SUPERVISOR_PID is not None and os.getppid() != runlock.SUPERVISOR_PID:
        raise SystemExit(0)  # it died before the line above


def _worker_main(config: Any, config_dir: Path | None, overrides: dict, shared: Any, index: int, ready: Any) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)  # the worker installs its own once serving
    _child_setup()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by _fork (below)
    try:
        worker = Worker(config, config_dir, overrides, Counter(shared), index).start()
    except Exception as exc:
        ready.put((index, f"{type(exc).__name__}: {exc}"))
        raise SystemExit(3)
    ready.put((index, None))
    worker.serve_forever()


def _sender_main(config: Any, config_dir: Path | None, overrides: dict) -> None:
    from gateway.forward import SenderService

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    _child_setup()
    if config_dir is not None:
        # A restarted sender starts from the directory as it is now, not from
        # the config the supervisor loaded at start-up.
        from gateway.config import ConfigError, load_config

        try:
            config = load_config(config_dir, overrides)
        except ConfigError as exc:
            log.error("config invalid; the sender starts with the last good one", extra={"errors": str(exc).splitlines()})
    run_dir = Path(config.node.data_dir) / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    service = SenderService(config, config_dir, overrides, publish_dir=run_dir)

    def stop(*_: Any) -> None:
        service.stopping.set()
        service.wake()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # a SIGTERM sent meanwhile arrives now
    service.start()
    metrics_file = run_dir / "metrics-sender.json"
    while not service.stopping.wait(1.0):
        _publish_metrics(metrics_file)
    service.stop()
    _publish_metrics(metrics_file)


def _fork(process: Any) -> None:
    """Start a child with SIGTERM/SIGINT blocked: until it has its own handlers it
    would run the supervisor's inherited one, which only sets a flag in the
    child's copy, and the signal would be lost. The child unblocks them."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _publish_metrics(path: Path) -> None:
    try:
        metrics.METRICS.publish(path)
    except OSError as exc:
        log.warning("cannot publish metrics", extra={"path": str(path), "error": str(exc)})


class Supervisor:
    def __init__(self, config: Any, config_dir: Path | None, overrides: dict) -> None:
        self.config = config
        self.config_dir = config_dir
        self.overrides = overrides
        self.shared = _ctx.Value("i", 0)
        self.procs: dict[int, Any] = {}
        self.sender: Any = None
        self.sender_started = 0.0
        self.stopping = threading.Event()
        self.run_dir = Path(config.node.data_dir) / "run"

    def _spawn(self, index: int, ready: Any) -> None:
        p = _ctx.Process(target=_worker_main, name=f"gateway-worker-{index}",
                         args=(self.config, self.config_dir, self.overrides, self.shared, index, ready))
        _fork(p)
        self.procs[index] = p

    def _spawn_sender(self) -> None:
        self.sender = _ctx.Process(target=_sender_main, name="gateway-sender",
                                   args=(self.config, self.config_dir, self.overrides))
        _fork(self.sender)
        self.sender_started = time.monotonic()

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT: 0; 2 when the data directory or a port is
        taken by another process; 3 when a worker cannot start."""
        try:
            lock = runlock.DataDirLock(self.config.node.data_dir).acquire()
        except runlock.InUse as exc:
            print(f"dicom-gateway: {exc}", file=sys.stderr)
            return 2
        try:
            return self._run()
        except runlock.InUse as exc:
            print(f"dicom-gateway: {exc}", file=sys.stderr)
            return 2
        finally:
            lock.release()

    def _prepare_index(self) -> None:
        """Open and migrate the index once, before the workers fork. Each worker then
        finds the schema at head and SQLAlchemy and Alembic already imported. Without
        this, a worker's first C-STORE paid 0.15-0.5 s for them, and two workers
        migrated at once (issue 10). An index that cannot be opened now does not stop
        the gateway: the storage service refuses stores until it can (STO-8), as it
        does when the database goes away later."""
        from gateway.index import Index

        try:
            Index(self.config.effective_database_url()).close()
        except Exception as exc:
            log.warning("index not ready at start-up; the storage service retries with each store",
                        extra={"error": str(exc)})

    def _check_ports(self) -> None:
        for n, l in enumerate(self.config.listeners):
            hint = "choose another port: " + ("--port N or " if n == 0 else "") + "[[listeners]] port in gateway.toml"
            runlock.check_port(l.bind, l.port, "port", hint)
        if self.config.http.enabled:
            runlock.check_port(self.config.http.bind, self.config.http.port, "operator HTTP port", _HTTP_HINT)

    def _run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        self._check_ports()
        runlock.SUPERVISOR_PID = os.getpid()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.run_dir.glob("metrics-*.json"):
            stale.unlink()
        self._prepare_index()
        n = self.config.effective_workers()
        ready = _ctx.Queue()
        for i in range(n):
            self._spawn(i, ready)
        for _ in range(n):
            index, error = ready.get(timeout=120)
            if error or self.stopping.is_set():
                if error:
                    log.error("worker failed to start", extra={"worker": index, "error": error})
                self._terminate()
                return 3 if error else 0
        try:
            http = self._start_http()
        except runlock.InUse:
            self._terminate()
            raise
        log.info("gateway ready", extra={
            "workers": n, "ports": [l.port for l in self.config.listeners],
            "ae_titles": sorted(self.config.all_ae_titles()), "pid": os.getpid()})
        self._spawn_sender()
        while not self.stopping.wait(0.5):
            for index, p in list(self.procs.items()):
                if not p.is_alive():
                    log.error("worker died; restarting", extra={"worker": index, "exitcode": p.exitcode})
                    metrics.METRICS.inc("gateway_worker_restarts_total")
                    self._spawn(index, ready)
            # A sender that dies at once (say, a broken plugin import) is not restarted in a tight loop.
            if not self.sender.is_alive() and time.monotonic() - self.sender_started > 5.0:
                log.error("sender died; restarting", extra={"exitcode": self.sender.exitcode})
                metrics.METRICS.inc("gateway_sender_restarts_total")
                self._spawn_sender()
        log.info("stopping: waiting for workers to finish in-flight operations")
        self._terminate()
        if http is not None:
            http.shutdown()
        return 0

    def _terminate(self) -> None:
        procs = list(self.procs.values()) + ([self.sender] if self.sender is not None else [])
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.node.shutdown_grace + 10
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()

    def _start_http(self) -> ThreadingHTTPServer | None:
        cfg = self.config.http
        if not cfg.enabled:
            return None
        sup = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    snaps = []
                    for f in sup.run_dir.glob("metrics-*.json"):
                        try:
                            snaps.append(json.loads(f.read_text()))
                        except (OSError, ValueError):
                            continue
                    snaps.append(metrics.METRICS.snapshot())
                    body, ctype = metrics.render(snaps).encode(), "text/plain; version=0.0.4"
                elif self.path == "/healthz":
                    alive = sum(p.is_alive() for p in sup.procs.values())
                    body = json.dumps({"status": "ok" if alive == len(sup.procs) else "degraded",
                                       "workers": alive}).encode()
                    ctype = "application/json"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        try:
            server = ThreadingHTTPServer((cfg.bind, cfg.port), Handler)
        except OSError as exc:
            # Taken since _check_ports, or refused for another reason: a start-up error too.
            runlock.check_port(cfg.bind, cfg.port, "operator HTTP port", _HTTP_HINT)
            raise runlock.InUse(f"operator HTTP port {cfg.port} (bind {cfg.bind}) cannot be opened: {exc}; "
                                f"{_HTTP_HINT}") from exc
        threading.Thread(target=server.serve_forever, daemon=True, name="http").start()
        log.info("operator HTTP listening", extra={"bind": cfg.bind, "port": server.server_address[1]})
        return server
