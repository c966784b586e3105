"""Structured logging: one event per line, association-scoped.

``extra={...}`` fields become JSON keys; the association id is attached to
every record logged on an association's threads.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}
_local = threading.local()


def bind_association(assoc_id: str | None) -> None:
    _local.assoc = assoc_id


def bound_association() -> str | None:
    """The association id this thread's records carry (to hand on to a helper thread)."""
    return getattr(_local, "assoc", None)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "assoc"):
            record.assoc = getattr(_local, "assoc", None)
        record.pid = os.getpid()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD and value is not None and not key.startswith("_"):
                out[key] = value if isinstance(value, (int, float, bool, str, list, dict)) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}" for k, v in vars(record).items()
            if k not in _STD and v is not None and not k.startswith("_") and k != "pid"
        )
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += f"  [{extras}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _MigrationsOnly(logging.Filter):
    """Of Alembic's INFO lines keep the schema changes ("Running upgrade 0001 -> 0002");
    its plugin set-up and dialect notes are noise in every process that opens the index."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.getMessage().startswith(("Running upgrade", "Running downgrade"))


def setup(level: str = "INFO", fmt: str = "json", stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pynetdicom logs every PDU at INFO/DEBUG; keep it to warnings unless asked.
    logging.getLogger("pynetdicom").setLevel(max(logging.WARNING, root.level))
    for name in ("alembic.runtime.plugins", "alembic.runtime.migration"):
        alembic_log = logging.getLogger(name)
        alembic_log.filters[:] = [] if root.level <= logging.DEBUG else [_MigrationsOnly()]
