"""The plugin's own table in the gateway's index database, and the thread that fills it.

A plugin keeps what it derives in a table of its own — its own
``sqlalchemy.MetaData``, created with ``checkfirst`` on the index engine —
and never writes the core's tables (docs/plugins.md). Rows are keyed by SOP
Instance UID, so a resent or replaced object just rewrites its row.

``gateway_instance_stored`` runs on the association's thread before the peer
gets Success: reading a header and writing a row there would slow every
store. So the hook only queues the stored file's path; one daemon thread per
process reads it and writes the row. It writes as soon as something is queued
(a burst, up to 256 images, in one transaction), so rows trail the stores by
milliseconds. A command that stores (``dicom-gateway import``) waits for its
rows at exit (``atexit``). A gateway worker is a forked process that exits
without ``atexit``, and any process can be killed: the rows still queued then
are lost, and ``dicom-gateway suv --rescan`` recomputes them from the stored files.
"""

from __future__ import annotations

import atexit
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
    sa.Column("why", sa.Text, nullable=False, default=""),  # why `computed` (or both) is missing
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


_created: set[sa.Engine] = set()


def _create_table(engine: sa.Engine) -> None:
    """Our table, on the first write of this process to that database."""
    if engine in _created:
        return
    try:
        metadata.create_all(engine, checkfirst=True)
    except sa.exc.DatabaseError:  # PostgreSQL: another worker created it between check and CREATE
        metadata.create_all(engine, checkfirst=True)
    _created.add(engine)


def write_rows(engine: sa.Engine, rows: Iterable[Row]) -> int:
    """Replace the rows of these instances, in one transaction."""
    rows = list(rows)
    if not rows:
        return 0
    _create_table(engine)
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

    def submit(self, database_url: str, path: Path, sop: str, series: str, study: str) -> None:
        self._jobs.put((database_url, path, sop, series, study))
        with self._lock:
            # Started on first use, not at import: a thread started in the
            # supervisor would not exist in the workers it forks (nor would it
            # be alive there, so a forked worker starts its own here).
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="suv-writer", daemon=True)
                self._thread.start()
                atexit.register(self.flush, 10.0)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted before this call is written (or has
        failed and been logged); False if ``timeout`` seconds passed first."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                return True
        done = threading.Event()
        self._jobs.put(done)  # a marker: the thread sets it after the jobs queued before it
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._jobs.get()]
            while len(batch) < 256:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            self._write([job for job in batch if not isinstance(job, threading.Event)])
            for marker in batch:
                if isinstance(marker, threading.Event):
                    marker.set()

    def _write(self, jobs: list[tuple]) -> None:
        from gateway.index import shared_index  # the gateway's engine for this database (WAL, busy timeout)

        by_url: dict[str, list[Row]] = {}
        for url, path, sop, series, study in jobs:
            try:
                row = read_row(path, sop, series, study)
            except Exception as exc:  # an unreadable file costs its own row only
                log.warning("cannot read a stored PET header for its SUV", exc_info=exc,
                            extra={"sop_instance_uid": sop})
                continue
            if row.factors.why:
                log.info("PET image without a computed SUV factor", extra={
                    "sop_instance_uid": sop, "series_instance_uid": series, "why": row.factors.why})
            by_url.setdefault(url, []).append(row)
        for url, rows in by_url.items():
            try:
                write_rows(shared_index(url).engine, rows)
            except Exception as exc:
                log.error("cannot write SUV rows; `dicom-gateway suv --rescan` recomputes them",
                          exc_info=exc, extra={"rows": len(rows)})


WRITER = Writer()
