"""Test plugin: counts the sender's `gateway_sender_poll` rounds in DATA_DIR/polls.txt
and notes whether `stopping` was set when the sender shut down."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.hookspecs import hookimpl

_started = threading.Event()


@hookimpl
def gateway_sender_poll(config, index, stopping):
    log = Path(config.node.data_dir) / "polls.txt"
    with log.open("a") as fh:
        fh.write(f"{type(index).__name__}\n")
    if not _started.is_set():  # the pattern the hook asks for: one thread of one's own, ended by `stopping`
        _started.set()

        def watch():
            stopping.wait()
            with log.open("a") as fh:
                fh.write("stopping\n")

        threading.Thread(target=watch, daemon=True).start()
