"""The index database: open (and migrate), write in short durable transactions, read the tree.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL``, so a
committed transaction survives a power cut: the storage service answers
C-STORE Success only after ``Index.transaction()`` has returned (STO-7, DESIGN
§2 "Durability"). Several worker processes write the same file: every write
transaction starts with ``BEGIN IMMEDIATE`` (the writer lock is taken up front,
waiting up to ``busy_timeout``), so two writers never deadlock upgrading a read
lock; taking the lock is retried a bounded number of times before
:class:`IndexUnavailable` is raised. PostgreSQL (``postgresql+psycopg://...``)
is the shared database for several nodes; the upserts use ``ON CONFLICT`` so
concurrent writers of the same patient/study/series never collide.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc as sa_exc
from sqlalchemy.engine import Connection, Engine

from gateway.index import schema as S
from gateway.index.attrs import InstanceAttrs, normalize_pn
from gateway.index.demographics import demographic_columns, demographics_of
from gateway.index.prepared import driver_cursor, prepared, upsert

__all__ = ["Index", "shared_index", "IndexUnavailable", "index_missing", "sqlite_file", "FileRecord", "StoredInstance", "PatientNode", "StudyNode",
           "SeriesNode", "alembic_config", "wildcard_to_like"]

log = logging.getLogger("gateway.index")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class IndexUnavailable(RuntimeError):
    """The index database cannot be used right now: connection lost, locked for
    too long, disk full or I/O error. The storage service answers A710 (STO-8)."""


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One stored object file. ``path`` is relative to the backend's storage root."""

    path: str
    size: int
    sha256: str
    transfer_syntax_uid: str
    backend: str = "filesystem"
    calling_ae: str = ""
    called_ae: str = ""
    received_at: datetime | None = None

    def __post_init__(self) -> None:
        p = PurePosixPath(self.path)
        if not self.path or p.is_absolute() or ".." in p.parts or "\\" in self.path:
            raise ValueError(f"FileRecord.path must be relative to the storage root with '/' "
                             f"separators and no '..', got {self.path!r}")


@dataclass(frozen=True, slots=True)
class StoredInstance:
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str
    file: FileRecord | None
    # store_instance(): the file row this one replaced (STO-6), so the backend can
    # remove the old file when its path differs; None for a new instance.
    replaced: FileRecord | None = None
    #: QRS-7: the patient's corrected demographics ((keyword, value) pairs) every copy
    #: leaving the gateway carries; None when they were never corrected (sent as stored).
    demographics: tuple[tuple[str, str], ...] | None = None


@dataclass(slots=True)
class SeriesNode:
    series_instance_uid: str
    modality: str | None
    series_number: int | None
    series_description: str | None
    series_date: str | None
    series_time: str | None
    number_of_instances: int


@dataclass(slots=True)
class StudyNode:
    study_instance_uid: str
    study_date: str | None
    study_time: str | None
    accession_number: str | None
    study_id: str | None
    study_description: str | None
    referring_physician_name: str | None
    series: list[SeriesNode] = field(default_factory=list)

    @property
    def modalities(self) -> list[str]:  # Modalities in Study (0008,0061), derived
        return sorted({s.modality for s in self.series if s.modality})

    @property
    def number_of_series(self) -> int:
        return len(self.series)

    @property
    def number_of_instances(self) -> int:
        return sum(s.number_of_instances for s in self.series)


@dataclass(slots=True)
class PatientNode:
    patient_id: str
    patient_name: str | None
    issuer_of_patient_id: str | None
    birth_date: str | None
    sex: str | None
    studies: list[StudyNode] = field(default_factory=list)


def _utc_naive(value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(timezone.utc).replace(tzinfo=None)
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _file_from_row(row: Any) -> FileRecord | None:
    if row.path is None:
        return None
    return FileRecord(path=row.path, size=row.size, sha256=row.sha256,
                      transfer_syntax_uid=row.transfer_syntax_uid, backend=row.backend,
                      calling_ae=row.calling_ae, called_ae=row.called_ae,
                      received_at=row.received_at.replace(tzinfo=timezone.utc))


def wildcard_to_like(value: str) -> str:
    """A DICOM wildcard (``*``, ``?``; PS3.4 C.2.2.2.4) as a LIKE pattern with ``\\`` as escape."""
    out = []
    for ch in value:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _match(column: sa.ColumnElement, value: str) -> sa.ColumnElement[bool]:
    if "*" in value or "?" in value:
        return column.like(wildcard_to_like(value), escape="\\")
    return column == value


def _date_match(column: sa.ColumnElement, value: str) -> sa.ColumnElement[bool]:
    """YYYYMMDD, or a range A-B, A- or -B (PS3.4 C.2.2.2.5)."""
    if "-" in value:
        lo, _, hi = value.partition("-")
        cond = sa.true()
        if lo.strip():
            cond = sa.and_(cond, column >= lo.strip())
        if hi.strip():
            cond = sa.and_(cond, column <= hi.strip())
        return cond
    return column == value


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite://`` index URL; None for other databases and ``:memory:``."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def index_missing(url: str) -> str | None:
    """Why a read-only command finds nothing to read at ``url``, or None when there is
    an index to open: the commands that only read must not create one."""
    path = sqlite_file(url)
    if path is None or path.exists():
        return None
    return f"no index at {path}: nothing has been stored with the data directory {path.parent}"


def alembic_config(url: str):
    """The Alembic configuration of the index, built in code (no alembic.ini)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# Errors that mean "the database cannot be used now" rather than "this code is wrong".
def is_unavailable(err: BaseException) -> bool:
    if isinstance(err, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                        sa_exc.DisconnectionError, OSError)):
        return True
    if isinstance(err, sa_exc.DatabaseError) and not isinstance(
            err, (sa_exc.IntegrityError, sa_exc.ProgrammingError, sa_exc.DataError,
                  sa_exc.NotSupportedError)):
        return True  # e.g. SQLite "file is not a database"
    return False


def _is_locked(err: BaseException) -> bool:
    text = str(getattr(err, "orig", err)).lower()
    return "database is locked" in text or "database is busy" in text


class Index:
    """The patient/study/series/instance index.

    ``url`` is a SQLAlchemy URL (``sqlite:////data/index.db``,
    ``postgresql+psycopg://user@host/db``) or a plain file path (SQLite). The
    schema is migrated to the newest revision on open (several processes may
    open a new database at once). An ``Index`` inherited through ``fork`` drops
    the parent's pooled connections in the child; opening one per worker is simpler.
    """

    def __init__(self, url: str | os.PathLike, *, busy_timeout: float = 10.0, lock_retries: int = 5,
                 migrate: bool = True) -> None:
        url = str(url)
        if "://" not in url:
            url = "sqlite:///" + str(Path(url).resolve())
        self.url = url
        self.busy_timeout = busy_timeout
        self.lock_retries = lock_retries
        parsed = sa.engine.make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"index database {parsed.render_as_string(hide_password=True)}: "
                             "only sqlite:// and postgresql:// URLs are supported")
        try:
            if self.dialect == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                self.engine = self._sqlite_engine(parsed)
            else:
                self.engine = sa.create_engine(parsed, pool_pre_ping=True,
                                               connect_args={"connect_timeout": int(busy_timeout) or 1})
            # A forked child must not reuse the parent's pooled connections.
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: (i := ref()) and i.engine.dispose(close=False))
            if migrate:
                self.migrate()
        except IndexUnavailable:
            raise
        except Exception as err:
            if is_unavailable(err):
                raise IndexUnavailable(f"index database {self}: {getattr(err, 'orig', err)}") from err
            raise

    def __repr__(self) -> str:
        return f"Index({self})"

    def __str__(self) -> str:
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    @property
    def location(self) -> str:
        """Where the index is, for people: the SQLite file, or the URL without its password."""
        path = sqlite_file(self.url)
        return str(path) if path is not None else str(self)

    def _sqlite_engine(self, parsed: sa.URL) -> Engine:
        engine = sa.create_engine(parsed, connect_args={"timeout": self.busy_timeout})
        busy_ms = int(self.busy_timeout * 1000)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # noqa: ANN001
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={busy_ms}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # durable commit (DESIGN §2 Durability)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the lock up front: a deferred transaction that reads and
            # then writes fails with SQLITE_BUSY without waiting when another
            # process committed in between.
            mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine

    # ---- connections -------------------------------------------------------------

    @contextmanager
    def _connect(self, write: bool) -> Iterator[Connection]:
        """A connection inside a begun transaction; commit on exit, rollback on error."""
        attempt = 0
        while True:
            conn = None
            try:
                conn = self.engine.connect()
                if self.dialect == "sqlite" and not write:
                    conn.execution_options(sqlite_begin="DEFERRED")
                conn.begin()
                break
            except Exception as err:
                if conn is not None:
                    conn.close()
                if not is_unavailable(err):
                    raise
                attempt += 1
                if _is_locked(err) and attempt <= self.lock_retries:
                    delay = min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random())
                    log.warning("index database locked; retrying",
                                extra={"attempt": attempt, "delay_s": round(delay, 3)})
                    time.sleep(delay)
                    continue
                raise IndexUnavailable(f"index database {self}: cannot begin a transaction "
                                       f"after {attempt} attempt(s): {getattr(err, 'orig', err)}") from err
        try:
            yield conn
            conn.commit()
        except BaseException as err:
            try:
                conn.rollback()
            except Exception:  # the connection may be gone; closing discards it
                pass
            if isinstance(err, Exception) and is_unavailable(err):
                raise IndexUnavailable(f"index database {self}: {getattr(err, 'orig', err)}") from err
            raise
        finally:
            conn.close()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent; safe from several processes)."""
        from alembic import command

        cfg = alembic_config(self.url)
        with self._connect(write=True) as conn:  # SQLite: BEGIN IMMEDIATE serializes first opens
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7263531)"))  # 'index migrate'
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One database transaction: committed durably on exit, rolled back on exception.

        Keep it short (no network I/O inside): other worker processes wait for it.
        """
        with self._connect(write=True) as conn:
            yield Transaction(conn)

    def update_patient(self, patient_id: str, **changes: Any) -> Any:
        """Correct a patient's demographics (QRS-7); see
        :func:`gateway.index.demographics.update_patient` for the arguments."""
        from gateway.index.demographics import update_patient

        return update_patient(self, patient_id, **changes)

    # ---- reads ---------------------------------------------------------------------

    def find_instance(self, sop_instance_uid: str) -> StoredInstance | None:
        with self._connect(write=False) as conn:
            return Transaction(conn).find_instance(sop_instance_uid)

    def find_instances(self, sop_instance_uids: list[str]) -> dict[str, StoredInstance]:
        """The indexed ones of these instances, by SOP Instance UID (one read transaction)."""
        out: dict[str, StoredInstance] = {}
        with self._connect(write=False) as conn:
            for chunk in range(0, len(sop_instance_uids), 500):
                rows = conn.execute(_instance_select().where(
                    S.instances.c.sop_instance_uid.in_(sop_instance_uids[chunk:chunk + 500]))).all()
                out.update((r.sop_instance_uid, _stored_from_row(r)) for r in rows)
        return out

    def tree(self, patient_id: str | None = None, patient_name: str | None = None,
             study_date: str | None = None, modality: str | None = None,
             accession: str | None = None, study_instance_uid: str | None = None) -> list[PatientNode]:
        """Patients ▸ studies ▸ series with instance counts, filtered.

        ``patient_id``, ``patient_name``, ``accession`` accept ``*``/``?`` wildcards;
        the name matches its search form, ignoring case and component boundaries
        (QRS-3). ``study_date`` is YYYYMMDD or a range ``A-B``/``A-``/``-B``.
        ``modality`` keeps studies with at least one series of that modality
        (Modalities in Study semantics) and shows all their series.
        """
        p, st, se, i = S.patients, S.studies, S.series, S.instances
        conds: list[sa.ColumnElement[bool]] = []
        if patient_id:
            conds.append(_match(p.c.patient_id, patient_id))
        if patient_name:
            conds.append(_match(p.c.patient_name_search, normalize_pn(patient_name) or ""))
        if study_date:
            conds.append(_date_match(st.c.study_date, study_date))
        if accession:
            conds.append(_match(st.c.accession_number, accession))
        if study_instance_uid:
            conds.append(st.c.study_instance_uid == study_instance_uid)
        if modality:
            conds.append(sa.exists().where(se.c.study_fk == st.c.id, se.c.modality == modality))
        study_q = (sa.select(p, st.c.id.label("study_pk"), st.c.study_instance_uid, st.c.study_date,
                             st.c.study_time, st.c.accession_number, st.c.study_id,
                             st.c.study_description, st.c.referring_physician_name)
                   .join(st, st.c.patient_fk == p.c.id).where(*conds)
                   .order_by(p.c.patient_id, st.c.study_date, st.c.study_time, st.c.study_instance_uid))
        counts = (sa.select(i.c.series_fk, sa.func.count().label("n")).group_by(i.c.series_fk)
                  .subquery())
        with self._connect(write=False) as conn:
            rows = conn.execute(study_q).all()
            study_pks = [r.study_pk for r in rows]
            series_rows = []
            for chunk in range(0, len(study_pks), 500):
                series_rows += conn.execute(
                    sa.select(se, sa.func.coalesce(counts.c.n, 0).label("n"))
                    .outerjoin(counts, counts.c.series_fk == se.c.id)
                    .where(se.c.study_fk.in_(study_pks[chunk:chunk + 500]))
                    .order_by(se.c.series_number, se.c.series_instance_uid)).all()
        by_study: dict[int, list[SeriesNode]] = {}
        for r in series_rows:
            by_study.setdefault(r.study_fk, []).append(SeriesNode(
                r.series_instance_uid, r.modality, r.series_number, r.series_description,
                r.series_date, r.series_time, r.n))
        result: list[PatientNode] = []
        by_patient: dict[int, PatientNode] = {}
        for r in rows:
            node = by_patient.get(r.id)
            if node is None:
                node = by_patient[r.id] = PatientNode(r.patient_id, r.patient_name,
                                                      r.issuer_of_patient_id, r.birth_date, r.sex)
                result.append(node)
            node.studies.append(StudyNode(r.study_instance_uid, r.study_date, r.study_time,
                                          r.accession_number, r.study_id, r.study_description,
                                          r.referring_physician_name, by_study.get(r.study_pk, [])))
        return result

    def stats(self) -> dict[str, int]:
        """Row counts per level, plus stored bytes."""
        with self._connect(write=False) as conn:
            out = {name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                   for name, t in (("patients", S.patients), ("studies", S.studies),
                                   ("series", S.series), ("instances", S.instances),
                                   ("files", S.files))}
            out["bytes"] = int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(S.files.c.size), 0)))
                               .scalar_one())
        return out

    def file_paths(self, backend: str = "filesystem") -> set[str]:
        """The relative paths of every file row of ``backend`` (``archive check``)."""
        with self._connect(write=False) as conn:
            return set(conn.execute(sa.select(S.files.c.path).where(S.files.c.backend == backend)).scalars())

    def dangling_files(self, storage_root: str | os.PathLike, backend: str = "filesystem",
                       check_size: bool = True) -> list[StoredInstance]:
        """Indexed instances of ``backend`` whose file under ``storage_root`` is missing
        (or, with ``check_size``, has another size than recorded). Empty after any crash
        if acknowledged objects are durable (DESIGN §2 Durability)."""
        root = Path(storage_root)
        out = []
        with self._connect(write=False) as conn:
            rows = conn.execute(_instance_select().where(S.files.c.backend == backend)).all()
        for r in rows:
            path = root / r.path
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                out.append(_stored_from_row(r))
                continue
            if check_size and size != r.size:
                out.append(_stored_from_row(r))
        return out


_shared: dict[tuple[str, float, int], Index] = {}
_shared_lock = threading.Lock()


def shared_index(url: str, *, busy_timeout: float = 10.0, lock_retries: int = 5) -> Index:
    """This process's :class:`Index` for ``url`` with these lock settings, opened
    (and migrated) on first use and shared by every service that asks the same."""
    key = (url, busy_timeout, lock_retries)
    index = _shared.get(key)
    if index is None:
        with _shared_lock:
            index = _shared.get(key)
            if index is None:
                index = _shared[key] = Index(url, busy_timeout=busy_timeout, lock_retries=lock_retries)
    return index


_STATEMENTS: dict[tuple, Any] = {}


def _upsert_statement(dialect: str, table: sa.Table, key: str, columns: tuple[str, ...],
                      always: tuple[str, ...]) -> Any:
    """INSERT .. ON CONFLICT (key) DO UPDATE .. RETURNING id, built once (building it
    costs more than running it). A column is updated only when the new object is at
    least as recent as the row (``updated_at``) — and, for a patient, when its
    demographics were not corrected (``corrected_at``) — and a None keeps the
    stored value unless the column is in ``always``."""
    cache_key = (dialect, table.name, key, columns, always)
    stmt = _STATEMENTS.get(cache_key)
    if stmt is not None:
        return stmt
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    ins = insert(table)
    newer = ins.excluded.updated_at >= table.c.updated_at
    if "corrected_at" in table.c:
        # QRS-7: demographics an operator corrected (`patient update`) are no longer
        # changed by objects received later.
        newer = sa.and_(newer, table.c.corrected_at.is_(None))
    set_: dict[str, Any] = {}
    for col in columns:
        if col == key:
            continue
        new = ins.excluded[col]
        if col not in always:
            new = sa.func.coalesce(new, table.c[col])
        set_[col] = sa.case((newer, new), else_=table.c[col])
    stmt = ins.on_conflict_do_update(index_elements=[table.c[key]], set_=set_).returning(table.c.id)
    _STATEMENTS[cache_key] = stmt
    return stmt


def _instance_select() -> sa.Select:
    stmt = _STATEMENTS.get("instance_select")
    if stmt is None:
        stmt = _STATEMENTS["instance_select"] = _build_instance_select()
    return stmt


def _build_instance_select() -> sa.Select:
    i, se, st, p, f = S.instances, S.series, S.studies, S.patients, S.files
    return (sa.select(i.c.id, i.c.sop_instance_uid, i.c.sop_class_uid, i.c.series_fk,
                      se.c.series_instance_uid, st.c.study_instance_uid, p.c.patient_id,
                      f.c.path, f.c.size, f.c.sha256, f.c.transfer_syntax_uid, f.c.backend,
                      f.c.calling_ae, f.c.called_ae, f.c.received_at, *demographic_columns())
            .join(se, se.c.id == i.c.series_fk).join(st, st.c.id == se.c.study_fk)
            .join(p, p.c.id == st.c.patient_fk).outerjoin(f, f.c.instance_fk == i.c.id))


def _stored_from_row(r: Any, replaced: FileRecord | None = None) -> StoredInstance:
    return StoredInstance(r.sop_instance_uid, r.sop_class_uid, r.study_instance_uid,
                          r.series_instance_uid, r.patient_id, _file_from_row(r), replaced,
                          demographics_of(r))


class Transaction:
    """Index writes inside one database transaction (``Index.transaction()``)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self._cursor: Any = None

    def find_instance(self, sop_instance_uid: str) -> StoredInstance | None:
        row = self.conn.execute(
            _instance_select().where(S.instances.c.sop_instance_uid == sop_instance_uid)).first()
        return _stored_from_row(row) if row is not None else None

    def has_instance(self, sop_instance_uid: str) -> bool:
        """Whether the instance is indexed (one prepared look-up; the store path)."""
        i = S.instances
        return self._scalar("instance_id", lambda: sa.select(i.c.id).where(
            i.c.sop_instance_uid == sa.bindparam("uid")), uid=sop_instance_uid) is not None

    # -- upserts: the row is created or, when this object is at least as recent as
    #    the one the row came from, updated (QRS-7: the latest demographics win).
    #    An attribute the object does not carry (None) keeps the stored value.
    def _upsert(self, table: sa.Table, key: str, values: dict[str, Any], always: tuple[str, ...] = ()) -> int:
        columns = tuple(values)
        return upsert(self.conn, self.cursor, ("upsert", table.name, key, columns, always),
                      lambda: _upsert_statement(self.dialect, table, key, columns, always), values)

    @property
    def cursor(self) -> Any:
        """The driver's cursor in this transaction, for the store path's prepared SQL."""
        if self._cursor is None:
            self._cursor = driver_cursor(self.conn)
        return self._cursor

    def _scalar(self, key: str, build: Any, **params: Any) -> Any:
        rows = prepared(key, self.conn.dialect, build).execute(self.cursor, params).fetchall()
        return rows[0][0] if rows else None

    def store_instance(self, attrs: InstanceAttrs, file: FileRecord) -> StoredInstance:
        """Index one stored object: upsert patient, study, series, instance and its file row.

        An existing instance with the same SOP Instance UID is replaced, row and file
        row (STO-6 overwrite; the caller applies the keep/reject policies before).
        Parents it leaves empty (it moved to another series/study/patient) are removed.
        The statements of a new object run as prepared SQL (gateway.index.prepared).
        """
        now = _utc_naive(file.received_at)
        p, st, se, i, f = S.patients, S.studies, S.series, S.instances, S.files
        c = self.conn

        patient_pk = self._upsert(p, "patient_id", dict(
            patient_id=attrs.patient_id, issuer_of_patient_id=attrs.issuer_of_patient_id,
            patient_name=attrs.patient_name, patient_name_search=normalize_pn(attrs.patient_name),
            birth_date=attrs.birth_date, birth_time=attrs.birth_time, sex=attrs.sex,
            other_patient_ids=attrs.other_patient_ids,
            specific_character_set=attrs.specific_character_set, updated_at=now))

        old_study_parent = self._scalar("study_parent", lambda: sa.select(st.c.patient_fk).where(
            st.c.study_instance_uid == sa.bindparam("uid")), uid=attrs.study_instance_uid)
        study_pk = self._upsert(st, "study_instance_uid", dict(
            study_instance_uid=attrs.study_instance_uid, patient_fk=patient_pk,
            study_date=attrs.study_date, study_time=attrs.study_time,
            accession_number=attrs.accession_number, study_id=attrs.study_id,
            study_description=attrs.study_description,
            referring_physician_name=attrs.referring_physician_name,
            referring_physician_name_search=normalize_pn(attrs.referring_physician_name),
            patient_age=attrs.patient_age, patient_size=attrs.patient_size,
            patient_weight=attrs.patient_weight,
            specific_character_set=attrs.specific_character_set, updated_at=now),
            always=("patient_fk",))

        old_series_parent = self._scalar("series_parent", lambda: sa.select(se.c.study_fk).where(
            se.c.series_instance_uid == sa.bindparam("uid")), uid=attrs.series_instance_uid)
        series_pk = self._upsert(se, "series_instance_uid", dict(
            series_instance_uid=attrs.series_instance_uid, study_fk=study_pk,
            modality=attrs.modality, series_number=attrs.series_number,
            series_description=attrs.series_description, series_date=attrs.series_date,
            series_time=attrs.series_time, body_part_examined=attrs.body_part_examined,
            protocol_name=attrs.protocol_name, updated_at=now),
            always=("study_fk",))

        instance_values = dict(
            series_fk=series_pk, sop_class_uid=attrs.sop_class_uid,
            instance_number=attrs.instance_number, content_date=attrs.content_date,
            content_time=attrs.content_time, number_of_frames=attrs.number_of_frames,
            image_type=attrs.image_type, image_id=attrs.image_id, rows=attrs.rows,
            columns=attrs.columns, specific_character_set=attrs.specific_character_set,
            updated_at=now)
        file_values = dict(path=file.path, size=file.size, sha256=file.sha256,
                           transfer_syntax_uid=file.transfer_syntax_uid, backend=file.backend,
                           received_at=now, calling_ae=file.calling_ae, called_ae=file.called_ae)
        existing = None
        if self.has_instance(attrs.sop_instance_uid):
            # A replacement (rare): the full row, through SQLAlchemy's typed results.
            existing = c.execute(_instance_select().where(
                i.c.sop_instance_uid == attrs.sop_instance_uid)).first()
        replaced = None
        if existing is None:
            values = {"sop_instance_uid": attrs.sop_instance_uid, **instance_values}
            instance_pk = upsert(c, self.cursor, ("insert", "instances", tuple(values)),
                                 lambda: sa.insert(i).returning(i.c.id), values)
            values = {"instance_fk": instance_pk, **file_values}
            prepared(("insert", "files", tuple(values)), c.dialect, lambda: sa.insert(f),
                     column_keys=list(values)).execute(self.cursor, values)
        else:  # STO-6: the new object replaces the instance row and its file row
            instance_pk = existing.id
            replaced = _file_from_row(existing)
            c.execute(sa.update(i).where(i.c.id == instance_pk).values(**instance_values))
            if replaced is None:
                c.execute(sa.insert(f).values(instance_fk=instance_pk, **file_values))
            else:
                c.execute(sa.update(f).where(f.c.instance_fk == instance_pk).values(**file_values))

        # Parents left empty by a move. Order matters: series, then study, then patient.
        if existing is not None and existing.series_fk != series_pk:
            self._prune_series(existing.series_fk)
        if old_series_parent is not None and old_series_parent != study_pk:
            self._prune_study(old_series_parent)
        if old_study_parent is not None and old_study_parent != patient_pk:
            self._prune_patient(old_study_parent)

        return StoredInstance(attrs.sop_instance_uid, attrs.sop_class_uid, attrs.study_instance_uid,
                              attrs.series_instance_uid, attrs.patient_id,
                              FileRecord(**{**file_values, "received_at": now.replace(tzinfo=timezone.utc)}),
                              replaced)

    def delete_instance(self, sop_instance_uid: str) -> FileRecord | None:
        """Remove an instance and its file row; empty parents go too. Returns the
        file row (so the caller can remove the file after commit), or None when
        the instance was not indexed."""
        row = self.conn.execute(_instance_select().where(
            S.instances.c.sop_instance_uid == sop_instance_uid)).first()
        if row is None:
            return None
        self.conn.execute(sa.delete(S.files).where(S.files.c.instance_fk == row.id))
        self.conn.execute(sa.delete(S.instances).where(S.instances.c.id == row.id))
        self._prune_series(row.series_fk)
        return _file_from_row(row)

    def _prune_series(self, series_pk: int) -> None:
        if self.conn.execute(sa.select(S.instances.c.id).where(
                S.instances.c.series_fk == series_pk).limit(1)).first() is not None:
            return
        study_pk = self.conn.execute(sa.delete(S.series).where(S.series.c.id == series_pk)
                                     .returning(S.series.c.study_fk)).scalar()
        if study_pk is not None:
            self._prune_study(study_pk)

    def _prune_study(self, study_pk: int) -> None:
        if self.conn.execute(sa.select(S.series.c.id).where(
                S.series.c.study_fk == study_pk).limit(1)).first() is not None:
            return
        patient_pk = self.conn.execute(sa.delete(S.studies).where(S.studies.c.id == study_pk)
                                       .returning(S.studies.c.patient_fk)).scalar()
        if patient_pk is not None:
            self._prune_patient(patient_pk)

    def _prune_patient(self, patient_pk: int) -> None:
        if self.conn.execute(sa.select(S.studies.c.id).where(
                S.studies.c.patient_fk == patient_pk).limit(1)).first() is not None:
            return
        self.conn.execute(sa.delete(S.patients).where(S.patients.c.id == patient_pk))
