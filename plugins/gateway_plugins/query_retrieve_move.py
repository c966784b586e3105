"""Query/Retrieve C-MOVE SCP (PS3.4 C.4.2; QRS-1, QRS-5, QRS-6, QRS-8): the
Patient Root, Study Root and Patient/Study Only Move models.

The Move Destination is the AE title of a configured remote (``remotes/*.toml``)
whose ``move_destination`` is true; anything else is A801 with an Error Comment.
The instances (:mod:`gateway_plugins.query_retrieve_select`) go to it through
the registry's Storage SCU on an association of its own — SND-1/SND-2 syntax
choice, Rust conversion, SND-3..SND-5 handling, the outgoing transform — in a
thread of their own, with the Move Originator AE title and Message ID in each
C-STORE. After each sub-operation a Pending response carries the counts; the
final one is 0000, B000 (with the Failed SOP Instance UID List) or A702 when all
failed. A C-CANCEL stops before the next instance and is answered FE00 with the
counts. If the requesting association goes away, the responses stop but the
sub-operations run to completion (QRS-6), and the outcome is logged.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Iterator

from gateway.hookspecs import hookimpl
from gateway.messages import Response
from gateway.services import Service
from gateway.status import Status

# Only constants at import time (the matching and selection modules import SQLAlchemy
# and pydicom): every command line imports this module to collect commands.
from gateway_plugins.query_retrieve_models import MOVE_MODELS

log = logging.getLogger("gateway.qr")

_DONE = object()


def destination(config: Any, ae_title: str) -> tuple[str | None, str]:
    """The remote a Move Destination AE title names: (its name, "") or (None, why not)."""
    named = [(n, r) for n, r in sorted(config.remotes.items()) if r.ae_title == ae_title]
    if not named:
        return None, f"Move Destination {ae_title!r} is not a configured remote's AE title"
    allowed = [n for n, r in named if r.move_destination]
    if not allowed:
        return None, f"remote {named[0][0]!r} ({ae_title}) is not a move destination"
    if len(allowed) > 1:
        log.warning("C-MOVE: remotes %s share AE title %s; sending to %s", ", ".join(allowed), ae_title, allowed[0])
    return allowed[0], ""


def move(request: Any, index: Any) -> Iterator[tuple[Any, Any]]:
    from gateway_plugins.query_retrieve_access import refusal as access_refusal
    from gateway_plugins.query_retrieve_match import InvalidIdentifier
    from gateway_plugins.query_retrieve_select import CannotSelect, Tally, refusal, select

    model = MOVE_MODELS.get(request.context.abstract_syntax)
    if model is None or request.identifier is None:
        yield Status.CANNOT_UNDERSTAND, None
        return
    refused = access_refusal(request, "C-MOVE")
    if refused is not None:
        yield refused, None
        return
    config = request.config
    dest_ae = request.move_destination or ""
    name, why = destination(config, dest_ae)
    if name is None:
        log.info("C-MOVE refused: %s", why)
        yield Response(Status.MOVE_DESTINATION_UNKNOWN, error_comment=why), None
        return
    try:
        selection = select(request, index, model)
    except (InvalidIdentifier, CannotSelect) as exc:
        yield refusal(exc, "C-MOVE")
        return
    tally = Tally(selection.total, selection.unlocated)
    if not selection.items:
        log.info("C-MOVE to %s: %s", name, tally)
        yield tally.final()
        return
    scu = request.plugins.services.scu("storage-scu").client
    dest = scu.destination(name, config)
    results: queue.Queue = queue.Queue()
    stop = threading.Event()
    assoc_id = request.association.id

    def run() -> None:
        # QRS-6: nothing here depends on the requesting association; when it is
        # gone the generator below is closed, and this carries on to the end.
        done = Tally(selection.total, selection.unlocated)
        try:
            for result in scu.send(dest, selection.items, config, on_result=results.put, host=request.plugins,
                                   cancelled=stop.is_set):
                if result.state != "cancelled":
                    done.add(result)
        except Exception as exc:  # a failure to send is a failed sub-operation, never a lost thread
            log.error("C-MOVE sub-operations to %s failed", name, exc_info=exc)
        finally:
            results.put(_DONE)
            log.info("C-MOVE to %s (requested on association %s): %s", dest, assoc_id, done)

    worker = threading.Thread(target=run, name=f"c-move-{assoc_id}-{request.message_id}")
    worker.start()
    finished = False
    answered: set[str] = set()
    try:
        while True:
            if not stop.is_set() and request.is_cancelled():
                log.info("C-MOVE cancelled by the peer after %d sub-operation(s)", tally.total - tally.remaining)
                stop.set()
            try:
                result = results.get(timeout=0.1)
            except queue.Empty:
                continue
            if result is _DONE:
                break
            answered.add(result.item.sop_instance_uid)
            if result.state == "cancelled":
                continue  # not attempted: still "remaining" in the FE00 response
            tally.add(result)
            yield tally.pending()
        finished = True
        if stop.is_set() and tally.remaining:
            yield tally.cancelled()
            return
        for item in selection.items:  # the sender ended without a result for these: failed
            if item.sop_instance_uid not in answered:
                tally.fail(item.sop_instance_uid)
        yield tally.final()
    finally:
        if not finished and worker.is_alive():
            log.info("C-MOVE: the requesting association ended; %d sub-operation(s) to %s go on (QRS-6)",
                     tally.remaining, name)


class MoveSCP:
    def c_move(self, request: Any) -> Iterator[tuple[Any, Any]]:
        from gateway.index import shared_index

        return move(request, shared_index(request.config.effective_database_url()))


@hookimpl
def gateway_config_loaded(config: Any) -> list[str]:
    from gateway_plugins.query_retrieve_access import config_problems

    # plugins/query_retrieve.toml is validated by the C-FIND plugin; here only when it is off
    return config_problems(config) if "query_retrieve" in config.disabled_plugins else []


@hookimpl
def gateway_register_services(registry: Any) -> None:
    registry.add(Service(
        name="query-retrieve-move",
        sop_classes=tuple(MOVE_MODELS),
        handler=MoveSCP(),
        description="Query/Retrieve C-MOVE SCP: Patient Root, Study Root, Patient/Study Only; sub-operations "
                    "through the Storage SCU to a remote with move_destination = true (QRS-1, QRS-5, QRS-6)",
    ))
