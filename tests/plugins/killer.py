"""A rule action that SIGKILLs its own worker inside the store's index transaction:
after the object's file is fsynced and renamed into place, before the index commit
(tests/test_durability.py: a crash between the two steps)."""

import os
import signal

from gateway.hookspecs import hookimpl
from gateway.services import RuleAction


def _die(conn, instance, rule, config):
    os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def gateway_register_services(registry):
    registry.add_rule_action(RuleAction(name="die", record=_die, description="test: kill the worker mid-store"))
