"""What every association the gateway requests shares: how a rejection or a
failure to associate is described to people (PS3.8 table 9-21)."""

from __future__ import annotations

# PS3.8 table 9-21, for messages people read.
_RESULT = {1: "rejected-permanent", 2: "rejected-transient"}
_SOURCE = {1: "service-user", 2: "service-provider (ACSE)", 3: "service-provider (presentation)"}
_REASON = {
    1: {1: "no-reason-given", 2: "application-context-name-not-supported",
        3: "calling-AE-title-not-recognized", 7: "called-AE-title-not-recognized"},
    2: {1: "no-reason-given", 2: "protocol-version-not-supported"},
    3: {1: "temporary-congestion", 2: "local-limit-exceeded"},
}


class AssociationFailed(Exception):
    """Could not establish the association; ``kind`` is rejected/aborted/unreachable."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def describe_rejection(result: int, source: int, reason: int) -> str:
    return (f"{_RESULT.get(result, result)}, {_SOURCE.get(source, source)}, "
            f"{_REASON.get(source, {}).get(reason, f'reason {reason}')}")
