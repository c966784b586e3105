"""Query/Retrieve C-GET SCP (PS3.4 C.4.3; issue 12): the Patient Root and Study
Root Get models — what current viewers use to pull, beyond the seeds.

The instances (:mod:`gateway_plugins.query_retrieve_select`) go back as C-STORE
sub-operations on the requesting association itself, through the Storage SCU's
``send_back`` (SND-2 syntax choice and Rust conversion as for any send), in the
association's thread between two responses. Only presentation contexts on which
the requester took the SCP role by SCP/SCU Role Selection carry them (the
acceptor side accepts that role for every SOP class a registered Storage SCU
sends, :mod:`gateway.net.contexts`); an instance of a SOP class with no such
context fails. Pending after each sub-operation with the counts; final 0000,
B000 with the Failed SOP Instance UID List, or A702 when all failed; FE00 after
a C-CANCEL, checked before each instance.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

from gateway.hookspecs import hookimpl
from gateway.services import Service
from gateway.status import Status

# Only constants at import time (the matching and selection modules import SQLAlchemy
# and pydicom): every command line imports this module to collect commands.
from gateway_plugins.query_retrieve_models import GET_MODELS

log = logging.getLogger("gateway.qr")


def get(request: Any, index: Any) -> Iterator[tuple[Any, Any]]:
    from gateway_plugins.query_retrieve_access import refusal as access_refusal
    from gateway_plugins.query_retrieve_match import InvalidIdentifier
    from gateway_plugins.query_retrieve_select import CannotSelect, Tally, refusal, select

    model = GET_MODELS.get(request.context.abstract_syntax)
    if model is None or request.identifier is None or request.store_channel is None:
        yield Status.CANNOT_UNDERSTAND, None
        return
    refused = access_refusal(request, "C-GET")
    if refused is not None:
        yield refused, None
        return
    try:
        selection = select(request, index, model)
    except (InvalidIdentifier, CannotSelect) as exc:
        yield refusal(exc, "C-GET")
        return
    tally = Tally(selection.total, selection.unlocated)
    scu = request.plugins.services.scu("storage-scu").client
    results = scu.send_back(request.store_channel, selection.items, request.config, host=request.plugins)
    try:
        for _item in selection.items:
            if request.is_cancelled():
                log.info("C-GET cancelled by the peer: %s", tally)
                yield tally.cancelled()
                return
            result = next(results)
            if not result.ok:
                log.warning("C-GET sub-operation %s failed: %s", result.item.sop_instance_uid, result.error)
            tally.add(result)
            yield tally.pending()
        log.info("C-GET for %s: %s", request.association.calling_ae, tally)
        yield tally.final()
    finally:
        results.close()


class GetSCP:
    def c_get(self, request: Any) -> Iterator[tuple[Any, Any]]:
        from gateway.index import shared_index

        return get(request, shared_index(request.config.effective_database_url()))


@hookimpl
def gateway_config_loaded(config: Any) -> list[str]:
    from gateway_plugins.query_retrieve_access import config_problems

    # plugins/query_retrieve.toml is validated by the C-FIND plugin (or the C-MOVE one); here only when both are off
    off = config.disabled_plugins
    return config_problems(config) if {"query_retrieve", "query_retrieve_move"} <= off else []


@hookimpl
def gateway_register_services(registry: Any) -> None:
    registry.add(Service(
        name="query-retrieve-get",
        sop_classes=tuple(GET_MODELS),
        handler=GetSCP(),
        description="Query/Retrieve C-GET SCP: Patient Root, Study Root; C-STORE sub-operations on the "
                    "requesting association (SCP/SCU role selection) through the Storage SCU (QRS-5)",
    ))
