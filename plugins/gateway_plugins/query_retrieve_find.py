"""C-FIND SCP: Identifier in, pending responses out (QRS-1..QRS-5).

Statuses (PS3.4 C.4.1.1.4, QRS-4/QRS-5): FF00 per match, FF01 when an optional
key the index does not hold was asked to match, 0000 at the end, A900 for an
Identifier that does not fit the SOP class (no or a wrong Query/Retrieve
Level, a UID list above the query level, a missing unique key of a higher
level), C000 when the index cannot be read, FE00 once the peer sent C-CANCEL;
C124 when the requester may not query (:mod:`gateway_plugins.query_retrieve_access`).
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

from pydicom.dataset import Dataset

from gateway.identifier import FlatIdentifier
from gateway.status import Status

from gateway_plugins.query_retrieve_access import refusal
from gateway_plugins.query_retrieve_keys import FIND_MODELS, KEYS, LEVELS, MODEL_LEVELS, key_level
from gateway_plugins.query_retrieve_match import InvalidIdentifier, plan

log = logging.getLogger("gateway.qr")

#: Elements of an Identifier that are not keys.
_NOT_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "TimezoneOffsetFromUTC"}


def _keys(identifier: Dataset) -> dict[str, str]:
    keys: dict[str, str] = {}
    for elem in identifier:
        if not elem.keyword or elem.keyword in _NOT_KEYS or elem.VR == "SQ":
            continue
        value = elem.value
        if value is None:
            keys[elem.keyword] = ""
        elif elem.VM > 1 or isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            keys[elem.keyword] = "\\".join(str(v) for v in value)
        else:
            keys[elem.keyword] = str(value)
    return keys


def _check_hierarchy(model: str, level: str, keys: dict[str, str]) -> None:
    """Baseline hierarchical search: each level above the query level is named by
    its unique key, one value (PS3.4 C.4.1.2.1; QRS-4 → A900)."""
    depth = LEVELS.index(level)
    for keyword, key in KEYS.items():
        if not key.unique:
            continue
        klevel = LEVELS.index(key_level(key, model))
        if klevel >= depth:
            continue
        if model == "study" and keyword == "PatientID":
            continue  # in Study Root the Patient ID is a study attribute, not a level
        value = keys.get(keyword, "")
        if not value or "\\" in value or "*" in value or "?" in value:
            raise InvalidIdentifier(f"{keyword} must name the {key.level} level with one value")


def _charset(query_charset: Any, values: list[str]) -> str | list[str] | None:
    """Specific Character Set of a response (QRS-3): the query's when it can carry the
    values; otherwise UTF-8 (ISO_IR 192). None when plain ASCII and none was asked."""
    if all(v.isascii() for v in values):
        return query_charset or None
    terms = list(query_charset) if isinstance(query_charset, (list, tuple)) or \
        type(query_charset).__name__ == "MultiValue" else [query_charset] if query_charset else []
    if terms == ["ISO_IR 100"] and all(v.encode("latin-1", "ignore").decode("latin-1") == v for v in values):
        return "ISO_IR 100"
    return "ISO_IR 192"


def find(request: Any, index: Any) -> Iterator[tuple[int, FlatIdentifier | None]]:
    model = FIND_MODELS.get(request.context.abstract_syntax)
    ident = request.identifier
    if model is None or ident is None:
        yield Status.CANNOT_UNDERSTAND, None
        return
    refused = refusal(request, "C-FIND")
    if refused is not None:
        yield refused, None
        return
    level = str(ident.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in MODEL_LEVELS[model]:
        log.info("C-FIND refused: level %r not in %s model", level, model)
        yield Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, None
        return
    keys = _keys(ident)
    try:
        _check_hierarchy(model, level, keys)
        query = plan(model, level, keys, index.dialect)
    except InvalidIdentifier as exc:
        log.info("C-FIND refused: %s", exc)
        yield Status.DATASET_DOES_NOT_MATCH_SOP_CLASS, None
        return
    status = Status.PENDING_WARNING if query.warning else Status.PENDING
    query_charset = ident.get("SpecificCharacterSet")
    matches = 0
    try:
        with index.engine.connect() as conn:
            result = conn.execute(query.select)
            while True:
                rows = result.fetchmany(200)
                if not rows:
                    break
                for row in rows:
                    if request.is_cancelled():
                        log.info("C-FIND cancelled after %d matches", matches)
                        yield Status.CANCEL, None
                        return
                    yield status, _response(row, level, query, query_charset)
                    matches += 1
    except Exception as exc:  # the index cannot be read: C000, never a dead association
        log.error("C-FIND failed: %s", exc)
        yield Status.CANNOT_UNDERSTAND, None
        return
    log.info("C-FIND %s level %s: %d matches", model, level, matches)
    yield Status.SUCCESS, None


def _response(row: Any, level: str, query: Any, query_charset: Any) -> FlatIdentifier:
    """Only the requested keys (PS3.4 C.4.1.2.3), plus the level and the character set;
    encoded without pydicom (gateway.identifier), ~0.3 ms less per match."""
    ident = FlatIdentifier()
    texts: list[str] = []
    for keyword, label in query.returned.items():
        value = getattr(row, label)
        if value is None:
            ident[keyword] = None
            continue
        if keyword.startswith("Number"):
            value = int(value)
        if isinstance(value, str):
            texts.append(value)
            if keyword in ("ModalitiesInStudy", "ImageType") and "\\" in value:
                value = value.split("\\")
        ident[keyword] = value
    for keyword in query.unsupported:
        ident[keyword] = None  # asked but not held: zero length (QRS-4)
    charset = _charset(query_charset, texts)
    if charset:
        ident["SpecificCharacterSet"] = charset
    ident["QueryRetrieveLevel"] = level
    return ident
