"""Test plugin whose observation and policy hooks hang on cue, to prove that a
hook past ``node.hook_timeout`` is abandoned for that operation and counted.

``plugins/slowhooks.toml``: ``hang = ["gateway_instance_stored", ...]`` names
the hooks that hang; ``policy_ae`` the calling AE title whose association
request hangs. Every hang ends when the test sets :data:`RELEASE`."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.hookspecs import hookimpl

RELEASE = threading.Event()
_lock = threading.Lock()


def _hang(config, hook: str) -> None:
    if hook in config.plugin_settings("slowhooks").get("hang", ()):
        RELEASE.wait(60)


def _record(config, line: str) -> None:
    with _lock, (Path(config.node.data_dir) / "slowhooks.txt").open("a") as fh:
        fh.write(line + "\n")


@hookimpl
def gateway_instance_received(request):
    _hang(request.config, "gateway_instance_received")
    return None


@hookimpl
def gateway_instance_stored(instance, config):
    _hang(config, "gateway_instance_stored")
    _record(config, instance.sop_instance_uid)


@hookimpl
def gateway_association_requested(request, config):
    if request.association.calling_ae == config.plugin_settings("slowhooks").get("policy_ae"):
        RELEASE.wait(60)
    return None
