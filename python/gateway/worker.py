"""One worker process: a runtime, its listeners, hot reload, graceful drain.

Every worker binds the same ports (SO_REUSEPORT) and watches the config
directory itself, so a reload needs no coordination: each worker validates,
provisions, swaps and drains on its own (DESIGN §4, STYLE 12).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from gateway import runlock
from gateway.metrics import METRICS
from gateway.net.server import Counter, Listeners
from gateway.runtime import PluginConfigError, Runtime, build_runtime

log = logging.getLogger("gateway.worker")


class Worker:
    def __init__(self, config: Any, config_dir: Path | None, overrides: dict | None = None,
                 counter: Counter | None = None, index: int = 0) -> None:
        self.config_dir = config_dir
        self.overrides = overrides or {}
        self.index = index
        self.counter = counter or Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.runtime: Runtime = build_runtime(config, generation=1)
        self.listeners = Listeners(lambda: self.runtime, self.counter)
        self.watcher: Any = None
        self.last_reload_error: str | None = None
        # Set when the start-up self-test refused the Rust path.
        self.receive_override: str | None = None

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> "Worker":
        from gateway.net.selftest import ensure_fast_path

        _remove_orphan_spools(self.runtime.spool_dir)
        path = ensure_fast_path(self.runtime.config)
        if path != self.runtime.config.node.receive_path:
            self.receive_override = path
            self.runtime = _with_receive_path(self.runtime, path)
        self.listeners.provision(self.runtime.config)
        self._set_generation(self.runtime.generation)
        if self.config_dir is not None:
            from gateway.config.reload import ConfigWatcher

            self.watcher = ConfigWatcher(self.config_dir, self._on_config, self._on_config_error,
                                         overrides=self.overrides)
            self.watcher.start()
        return self

    def serve_forever(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        run_dir = Path(self.runtime.config.node.data_dir) / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics_file = run_dir / f"metrics-{self.index}.json"
        while not self._stop.wait(1.0):
            METRICS.set("gateway_associations_active", len(self.listeners.associations()), worker=self.index)
            METRICS.publish(metrics_file)
        self.shutdown()
        METRICS.publish(metrics_file)

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight operations finish, abort idle peers."""
        if self.watcher is not None:
            self.watcher.stop()
        self.listeners.close()
        grace = self.runtime.config.node.shutdown_grace if grace is None else grace
        assocs = self.listeners.associations()
        log.info("shutting down", extra={"associations": len(assocs), "grace_s": grace})
        for assoc in assocs:
            assoc.gw_draining = True
            wake = getattr(assoc.dul, "activity", None)
            if wake is not None:
                wake.set()  # its thread sleeps while idle (GatewayAssociation.reactor_wait)
            if assoc.gw_info is None and assoc.dul.socket is not None:
                assoc.dul.socket.close()  # connected but never asked for an association
        deadline = time.monotonic() + grace
        while assocs and time.monotonic() < deadline:
            time.sleep(0.05)
            assocs = [a for a in assocs if a.is_alive() or not (a.is_aborted or a.is_released)]
            assocs = [a for a in assocs if a in self.listeners.associations()]
        for assoc in assocs:
            log.warning("grace period over; aborting association", extra={"assoc": assoc.gw_id})
            if assoc.is_established:
                assoc.abort()
            elif assoc.dul.socket is not None:
                assoc.dul.socket.close()  # not yet associated: just drop the connection

    # -- reload ----------------------------------------------------------------
    def _on_config(self, config: Any) -> None:
        started = time.perf_counter()
        with self._lock:
            old = self.runtime
            try:
                new = build_runtime(config, generation=old.generation + 1)
                if self.receive_override:
                    new = _with_receive_path(new, self.receive_override)
                self._check_new_ports(config)
                self.listeners.provision(config)  # new ports open before the swap
            except (PluginConfigError, OSError) as exc:
                return self._on_config_error(exc)
            self.runtime = new  # atomic swap: new associations get the new runtime
            self.listeners.retire(config)  # running associations keep the old one
        self.last_reload_error = None
        # Per-config metrics: every worker records them alike; /metrics shows them
        # once (gateway.metrics.PER_CONFIG).
        METRICS.inc("gateway_config_reloads_total", result="success")
        METRICS.set("gateway_config_last_reload_success_timestamp_seconds", time.time())
        self._set_generation(new.generation)
        log.info("config reloaded", extra={"generation": new.generation, "digest": config.digest[:12],
                                           "seconds": round(time.perf_counter() - started, 4)})

    def _set_generation(self, generation: int) -> None:
        METRICS.set("gateway_config_generation", generation)
        METRICS.set("gateway_worker_config_generation", generation, worker=self.index)

    def _check_new_ports(self, config: Any) -> None:
        """SO_REUSEPORT would let a new listener share a port another program (or
        another gateway) already serves: refuse the config instead (runlock.InUse)."""
        for l in config.listeners:
            if (l.bind, l.port) not in self.listeners.servers:
                runlock.check_port(l.bind, l.port, "listener port", "choose another [[listeners]] port",
                                   reload=True)

    def _on_config_error(self, exc: Exception) -> None:
        self.last_reload_error = str(exc)
        METRICS.inc("gateway_config_reloads_total", result="failure")
        log.error("config reload failed; keeping the last good config",
                  extra={"generation": self.runtime.generation, "errors": str(exc).splitlines()})


def _remove_orphan_spools(spool_dir: Path) -> None:
    """Spool files of a process that died mid-message (spool-<pid>-....part)."""
    for path in spool_dir.glob("spool-*.part"):
        try:
            pid = int(path.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            path.unlink(missing_ok=True)
            log.info("removed the spool file of a dead process", extra={"path": str(path)})


def _with_receive_path(runtime: Runtime, path: str) -> Runtime:
    node = runtime.config.node
    if node.receive_path == path:
        return runtime
    config = runtime.config.model_copy(update={"node": node.model_copy(update={"receive_path": path})})
    return dataclasses.replace(runtime, config=config)
