"""The plugin's own table in the gateway's index database, and the thread that fills it.

A plugin keeps what it derives in a table of its own — its own
``sqlalchemy.MetaData``, created with ``checkfirst`` on the index engine —
and never writes the core's tables (docs/plugins.md). Rows are keyed by SOP
Instance UID, so a resent or replaced object just rewrites its row.

``gateway_instance_stored`` runs on the association's thread before the peer
gets Success: reading a header and writing a row there would slow every
store. So the hook only queues the stored file's path; one daemon thread per
process reads it and writes the row. A row still queued when the process is
killed is lost; ``dicom-gateway suv --rescan`` recomputes from the stored files.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import sqlalchemy as sa

from gateway_suv.suv import Factors, factors

log = logging.getLogger("gateway_suv")

metadata = sa.MetaData()
suv_factors = sa.Table(
    "suv_factors", metadata,
    sa.Column("sop_instance_uid", sa.Text, primary_key=True),
    sa.Column("series_instance_uid", sa.Text, nullable=False, index=True),
    sa.Column("study_instance_uid", sa.Text, nullable=False, index=True),
    sa.Column("philips", sa.Float),  # (7053,1000), g/ml
    sa.Column("computed", sa.Float),  # weight / decay-corrected dose, g/ml
    sa.Column("why", sa.Text, nullable=False, default=""),  # why `computed` is missing
)


@dataclass(frozen=True)
class Row:
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    factors: Factors


def read_row(path: Path, sop: str, series: str, study: str) -> Row:
    import pydicom

    return Row(sop, series, study, factors(pydicom.dcmread(path, stop_before_pixels=True)))


def write_rows(engine: sa.Engine, rows: Iterable[Row]) -> int:
    """Replace the rows of these instances, in one transaction."""
    rows = list(rows)
    if not rows:
        return 0
    metadata.create_all(engine, checkfirst=True)
    with engine.begin() as conn:
        conn.execute(suv_factors.delete().where(
            suv_factors.c.sop_instance_uid.in_([r.sop_instance_uid for r in rows])))
        conn.execute(suv_factors.insert(), [
            {"sop_instance_uid": r.sop_instance_uid, "series_instance_uid": r.series_instance_uid,
             "study_instance_uid": r.study_instance_uid, "philips": r.factors.philips,
             "computed": r.factors.computed, "why": r.factors.why} for r in rows])
    return len(rows)


def read_rows(engine: sa.Engine, *, series: Iterable[str] = (), studies: Iterable[str] = ()) -> list[Any]:
    """Rows of these series and studies (all when both are empty); none before the first write."""
    if not sa.inspect(engine).has_table(suv_factors.name):
        return []
    query = sa.select(suv_factors).order_by(suv_factors.c.series_instance_uid, suv_factors.c.sop_instance_uid)
    series, studies = list(series), list(studies)
    if series or studies:
        query = query.where(sa.or_(suv_factors.c.series_instance_uid.in_(series),
                                   suv_factors.c.study_instance_uid.in_(studies)))
    with engine.connect() as conn:
        return list(conn.execute(query))


class Writer:
    """One daemon thread per process that turns queued stored files into rows,
    a batch per transaction (a burst of a PET series costs a few commits)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, engine: sa.Engine, path: Path, sop: str, series: str, study: str) -> None:
        self._jobs.put((engine, path, sop, series, study))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # first use, or after a fork
                self._thread = threading.Thread(target=self._run, name="suv-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._jobs.get()]
            while len(batch) < 256:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            by_engine: dict[Any, list[Row]] = {}
            for engine, path, sop, series, study in batch:
                try:
                    by_engine.setdefault(engine, []).append(read_row(path, sop, series, study))
                except Exception as exc:  # an unreadable file costs its own row only
                    log.warning("cannot read a stored PET header for its SUV", exc_info=exc,
                                extra={"sop_instance_uid": sop})
            for engine, rows in by_engine.items():
                try:
                    write_rows(engine, rows)
                except Exception as exc:
                    log.error("cannot write SUV rows; `dicom-gateway suv --rescan` recomputes them",
                              exc_info=exc, extra={"rows": len(rows)})


WRITER = Writer()
