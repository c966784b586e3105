"""Query/Retrieve SCP (PS3.4 Annex C, issue 12): C-FIND for the Patient Root,
Study Root and Patient/Study Only models (QRS-1) over the index.

C-MOVE and C-GET are plugins of their own (``query_retrieve_move``,
``query_retrieve_get``), one per operation, so each can be disabled alone
(see docs/query-retrieve.md).
"""

from __future__ import annotations

from typing import Any, Iterator

from gateway.hookspecs import hookimpl
from gateway.services import Service

# Only constants at import time: every command line imports this module (DESIGN §6).
from gateway_plugins.query_retrieve_models import FIND_MODELS


class QueryRetrieveSCP:
    def c_find(self, request: Any) -> Iterator[tuple[int, Any]]:
        from gateway.index import shared_index

        from gateway_plugins.query_retrieve_find import find

        return find(request, shared_index(request.config.effective_database_url()))


@hookimpl
def gateway_config_loaded(config: Any) -> list[str]:
    """plugins/query_retrieve.toml (``unknown_callers``), read by all three Q/R plugins."""
    from gateway_plugins.query_retrieve_access import config_problems

    return config_problems(config)


@hookimpl
def gateway_register_services(registry: Any) -> None:
    registry.add(Service(
        name="query-retrieve-find",
        sop_classes=tuple(FIND_MODELS),
        handler=QueryRetrieveSCP(),
        description="Query/Retrieve C-FIND SCP: Patient Root, Study Root, Patient/Study Only (QRS-1..QRS-5)",
    ))
