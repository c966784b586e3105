"""The patient/study/series/instance index (DESIGN §2 "Index and queue").

Usage::

    from gateway.index import Index, FileRecord, extract_attributes

    attrs = extract_attributes(dataset_bytes, transfer_syntax_uid)   # header only
    idx = Index("sqlite:////var/lib/dicom-gateway/index.db")        # migrates to head
    with idx.transaction() as tx:                                    # durable on exit
        tx.store_instance(attrs, FileRecord(path, size, sha256, transfer_syntax_uid))

``IndexUnavailable`` means the database cannot be used now (the storage service
answers A710); ``UnreadableDataset`` means the object cannot be indexed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.index.attrs import InstanceAttrs, UnreadableDataset, extract_attributes, normalize_pn
    from gateway.index.store import (FileRecord, Index, IndexUnavailable, PatientNode, SeriesNode,
                                     StoredInstance, StudyNode, Transaction, alembic_config,
                                     shared_index, wildcard_to_like)

# Loaded on first use (PEP 562): SQLAlchemy and pydicom cost a third of a
# second, and every CLI command imports this package to build its parser.
_EXPORTS = {
    **dict.fromkeys(("InstanceAttrs", "UnreadableDataset", "extract_attributes", "normalize_pn"),
                    "gateway.index.attrs"),
    **dict.fromkeys(("FileRecord", "Index", "IndexUnavailable", "PatientNode", "SeriesNode", "StoredInstance",
                     "StudyNode", "Transaction", "alembic_config", "wildcard_to_like", "shared_index"),
                    "gateway.index.store"),
}

__all__ = ["Index", "Transaction", "InstanceAttrs", "FileRecord", "StoredInstance", "IndexUnavailable",
           "UnreadableDataset", "AttributeError_", "extract_attributes", "normalize_pn",
           "PatientNode", "StudyNode", "SeriesNode", "alembic_config", "shared_index", "wildcard_to_like"]


def __getattr__(name: str) -> Any:
    if name == "AttributeError_":  # the name the first API sketch used; UnreadableDataset is the one to use
        name = "UnreadableDataset"
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gateway.index' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
