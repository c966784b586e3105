"""C-FIND / C-MOVE / C-GET response statuses for operators (seed 000 tables 4-28
and 4-30; PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4). Every final status that is not
Success ends the operation ("current query is terminated", "retrieval is
terminated") with one of these lines; none of them is retried (seed 000
4.2.4.3.1.1: a single attempt)."""

from __future__ import annotations

__all__ = ["describe", "category"]

_FIND = {
    0xA700: "refused: out of resources (the archive cannot run the query now; try again later or narrow it)",
    0xA900: "failed: identifier does not match SOP class (the archive refused a key or the level; "
            "try fewer -k keys)",
    0xFE00: "cancelled (matching terminated after C-CANCEL)",
    0x0000: "complete",
}
_RETRIEVE = {
    0xA701: "refused: out of resources, the archive cannot calculate the number of matches",
    0xA702: "refused: out of resources, the archive cannot perform the sub-operations",
    0xA801: "refused: move destination unknown (the archive has no address for that AE title: "
            "add it to the archive's list of DICOM peers, or give --dest)",
    0xA900: "failed: identifier does not match SOP class (a UID is not at the level of the request?)",
    0xB000: "warning: sub-operations complete with one or more failures or warnings",
    0xFE00: "cancelled (sub-operations terminated after C-CANCEL)",
    0x0000: "complete, no failures",
}


def category(code: int) -> str:
    from gateway.status import category as _category

    return _category(code)


def describe(code: int | None, operation: str = "find", comment: str | None = None) -> str:
    """``0xA801 refused: move destination unknown (…)``, plus the peer's Error Comment."""
    if code is None:
        return "no response (DIMSE timeout or the association ended)"
    table = _FIND if operation == "find" else _RETRIEVE
    text = table.get(code)
    if text is None:
        if (code & 0xF000) == 0xC000:
            text = "failed: unable to process (the archive could not process the request)"
        elif (code & 0xFF00) == 0xA700:
            text = "refused: out of resources"
        elif (code & 0xF000) == 0xA000:
            text = "failed"
        elif category(code) == "Warning":
            text = "warning"
        else:
            text = f"{category(code).lower()} (status not defined for C-{operation.upper()})"
    out = f"0x{code:04X} {text}"
    if comment:
        out += f"; the archive says: {comment.strip()}"
    return out
