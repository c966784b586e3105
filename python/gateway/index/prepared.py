"""The store path's SQL, compiled once per dialect and run on the DB-API cursor.

Every C-STORE runs the same eight or nine statements (patient, study and series
upserts, the instance and file rows, the series' arrival). Through SQLAlchemy
Core each execution costs 60-200 µs of Python (statement construction, cache
key, result wrapping); on a 2-core machine that was ~1.5 ms of a 3.7 ms index
transaction under load (bench/RESULTS.md, "Ingest, hot path"). The statements
stay written as SQLAlchemy constructs (the schema stays the one source of
truth, and the same code serves SQLite and PostgreSQL); they are compiled here
once, and executed with the driver's own ``execute`` inside the transaction
SQLAlchemy began, with SQLAlchemy's bind processors applied to the values, so
what is stored is byte for byte what the Core path would have stored.
"""

from __future__ import annotations

from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_CACHE: dict[tuple[str, Any], "Prepared"] = {}


class Prepared:
    """One statement compiled for one dialect, with its parameters' order and processors."""

    __slots__ = ("sql", "names", "processors", "defaults")

    def __init__(self, statement: sa.ClauseElement, dialect: Any, column_keys: list[str] | None = None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        self.sql: str = compiled.string
        positional = compiled.positiontup is not None
        # Named paramstyles (psycopg's pyformat) take the dict as it is; positional
        # ones (sqlite3's qmark) the values in the order the SQL uses them.
        self.names: tuple[str, ...] | None = tuple(compiled.positiontup) if positional else None
        processors: dict[str, Callable[[Any], Any]] = {}
        defaults: dict[str, Any] = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
            if not bind.required:  # a literal in the statement (``False``, ``+ 1``)
                defaults[name] = bind.effective_value
        self.processors = processors
        self.defaults = defaults

    def execute(self, cursor: Any, params: dict[str, Any]) -> Any:
        if self.defaults:
            params = {**self.defaults, **params}
        if self.processors:
            params = {k: (self.processors[k](v) if k in self.processors and v is not None else v)
                      for k, v in params.items()}
        cursor.execute(self.sql, [params[n] for n in self.names] if self.names is not None else params)
        return cursor


def prepared(key: Any, dialect: Any, build: Callable[[], sa.ClauseElement],
             column_keys: list[str] | None = None) -> Prepared:
    """The statement ``build()`` makes, compiled for ``dialect`` once per ``key``."""
    cache_key = (dialect.name, key)
    stmt = _CACHE.get(cache_key)
    if stmt is None:
        stmt = _CACHE[cache_key] = Prepared(build(), dialect, column_keys)
    return stmt


def driver_cursor(conn: Connection) -> Any:
    """A cursor of the DB-API connection under ``conn``, in the transaction ``conn`` began."""
    return conn.connection.driver_connection.cursor()


def upsert(conn: Connection, cursor: Any, key: Any, build: Callable[[], sa.ClauseElement],
           values: dict[str, Any]) -> Any:
    """Run the INSERT .. ON CONFLICT .. RETURNING id that ``build`` makes; the id."""
    stmt = prepared(key, conn.dialect, build, column_keys=list(values))
    # fetchall: sqlite3 finishes (resets) a RETURNING statement only once its rows are read.
    return stmt.execute(cursor, values).fetchall()[0][0]
