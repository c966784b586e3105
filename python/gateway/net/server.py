"""Listening sockets: SO_REUSEPORT so N worker processes share a port,
TCP_NODELAY on every accepted socket, one association per connection.
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from typing import Any, Callable

from pynetdicom import AE, _config
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from gateway.net import dispatch, policy
from gateway.net.association import GatewayAssociation

log = logging.getLogger("gateway.net")


# pynetdicom's "standard" handlers log every PDU and DIMSE message (formatting
# them costs even when the log level drops them); our own logs say what matters.
_config.LOG_HANDLER_LEVEL = "none"


class Counter:
    """Active associations; a multiprocessing.Value shares it across workers."""

    def __init__(self, shared: Any = None) -> None:
        import multiprocessing

        self._v = shared if shared is not None else multiprocessing.Value("i", 0)

    @property
    def value(self) -> int:
        return self._v.value

    def add(self, n: int) -> None:
        with self._v.get_lock():
            self._v.value += n


class _Handler(RequestHandler):
    server: "ListenerServer"

    def handle(self) -> None:
        srv = self.server
        runtime = srv.runtime_source()
        listener = runtime.config.listener_for_port(srv.port)
        if listener is None:  # port removed by a reload that raced this accept
            return
        peer = self.client_address[:2]
        assoc = GatewayAssociation(self.ae, runtime, listener, peer, srv.port)
        assoc.gw_counter = srv.counter
        assoc._server = srv
        assoc.name = f"assoc-{assoc.gw_id}"
        assoc.set_socket(AssociationSocket(assoc, client_socket=self.request))
        assoc.acceptor.maximum_length = runtime.config.node.max_pdu
        assoc.acceptor.ae_title = listener.ae_titles[0]
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = runtime.config.node.implementation_class_uid
        assoc.acceptor.implementation_version_name = runtime.config.node.implementation_version_name
        assoc.acceptor.supported_contexts = runtime.contexts
        assoc.requestor.address_info = self.remote
        for event, handler in policy.HANDLERS + dispatch.HANDLERS:
            assoc.bind(event, handler)
        srv.track(assoc, True)
        try:
            # Run in this connection thread: no second thread per association.
            assoc.run()
        finally:
            if getattr(assoc, "gw_counted", False):
                srv.counter.add(-1)
            srv.track(assoc, False)
            if assoc.gw_info is not None and assoc.is_rejected is False:
                reason = "released" if assoc.is_released else "aborted" if assoc.is_aborted else "closed"
                assoc.gw_runtime.plugins.notify("gateway_association_closed", association=assoc.gw_info, reason=reason)


def _listen_backlog() -> int:
    """The system's maximum accept queue (net.core.somaxconn), not socketserver's 5:
    modalities reconnect in bursts, and a full queue costs each extra one a SYN retry
    (~1 s). listen() caps a larger value at the system maximum anyway."""
    try:
        return max(socket.SOMAXCONN, int(Path("/proc/sys/net/core/somaxconn").read_text()))
    except (OSError, ValueError):
        return socket.SOMAXCONN


class ListenerServer(ThreadedAssociationServer):
    daemon_threads = True
    allow_reuse_port = True
    request_queue_size = _listen_backlog()

    def __init__(self, bind: str, port: int, runtime_source: Callable[[], Any], counter: Counter) -> None:
        self.runtime_source = runtime_source
        self.counter = counter
        self.port = port
        self._active: set[GatewayAssociation] = set()
        self._active_lock = threading.Lock()
        ae = AE()
        ae.require_called_aet = False  # our policy checks every listener's AE titles
        ae.maximum_associations = 1 << 20  # our own counter enforces the cap
        super().__init__(ae, (bind, port), "DICOM_GATEWAY", [], request_handler=_Handler)
        ae._servers.append(self)  # pynetdicom's shutdown() expects to find us there

    def service_actions(self) -> None:
        # pynetdicom runs gc.collect() here every 60 polls; our associations
        # are freed when their connection thread ends.
        pass

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.port = self.server_address[1]

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(None)
        return sock, addr

    def track(self, assoc: GatewayAssociation, add: bool) -> None:
        with self._active_lock:
            (self._active.add if add else self._active.discard)(assoc)

    @property
    def associations(self) -> list[GatewayAssociation]:
        with self._active_lock:
            return list(self._active)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"listener-{self.port}", daemon=True)
        self._thread.start()

    def stop_accepting(self) -> None:
        self.shutdown()  # stops serve_forever and closes the listening socket


class Listeners:
    """The set of listening ports, provisioned from each new runtime."""

    def __init__(self, runtime_source: Callable[[], Any], counter: Counter) -> None:
        self.runtime_source = runtime_source
        self.counter = counter
        self.servers: dict[tuple[str, int], ListenerServer] = {}

    def provision(self, config: Any) -> None:
        """Open new ports first; raise OSError (config kept old) if one can't bind."""
        wanted = {(l.bind, l.port) for l in config.listeners}
        new = {}
        try:
            for key in sorted(wanted - set(self.servers)):
                new[key] = ListenerServer(key[0], key[1], self.runtime_source, self.counter)
        except OSError:
            for srv in new.values():
                srv.server_close()
            raise
        for key, srv in new.items():
            srv.start()
            self.servers[key] = srv
            log.info("listening", extra={"bind": key[0], "port": srv.port})

    def retire(self, config: Any) -> None:
        """Close ports the new config no longer has (after the swap)."""
        wanted = {(l.bind, l.port) for l in config.listeners}
        for key in list(self.servers):
            if key not in wanted:
                self.servers.pop(key).stop_accepting()
                log.info("stopped listening", extra={"bind": key[0], "port": key[1]})

    def associations(self) -> list[GatewayAssociation]:
        return [a for srv in self.servers.values() for a in srv.associations]

    def close(self) -> None:
        while self.servers:
            self.servers.popitem()[1].stop_accepting()
