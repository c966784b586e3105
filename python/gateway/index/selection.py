"""The stored files of a selection — studies, series, patients — located through
the storage service (``gateway_stored_file_path``): what ``send --study`` sends
and ``media export`` writes, in patient, study, series and instance order (so a
volume split keeps a study together, MED-2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["SelectionError", "StoredFile", "stored_files"]


class SelectionError(Exception):
    """The selection cannot be made: no index, a UID it does not hold, a file no plugin locates."""


@dataclass(frozen=True)
class StoredFile:
    path: Path
    size: int
    sha256: str | None
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    patient_id: str
    transfer_syntax_uid: str = ""
    #: QRS-7: the patient's corrected demographics a sent copy carries (None: never corrected)
    demographics: tuple[tuple[str, str], ...] | None = None


def stored_files(config: Any, *, studies: Sequence[str] = (), series: Sequence[str] = (),
                 patients: Sequence[str] = ()) -> list[StoredFile]:
    """One file per stored instance of the given studies, series and patients."""
    import sqlalchemy as sa

    from gateway.index import FileRecord, Index, IndexUnavailable
    from gateway.index import schema as t
    from gateway.index.demographics import demographic_columns, demographics_of
    from gateway.index.store import index_missing
    from gateway.plugins import HookError, load_host

    url = config.effective_database_url()
    if why := index_missing(url):
        raise SelectionError(why)
    host = load_host(config.disabled_plugins, config.plugins.modules)
    try:
        index = Index(url)
    except IndexUnavailable as exc:
        raise SelectionError(f"index unavailable: {exc}") from exc
    try:
        query = (
            sa.select(t.instances.c.sop_instance_uid, t.instances.c.sop_class_uid, t.files.c.path, t.files.c.size,
                      t.files.c.sha256, t.files.c.backend, t.files.c.transfer_syntax_uid,
                      t.series.c.series_instance_uid, t.studies.c.study_instance_uid, t.patients.c.patient_id,
                      *demographic_columns())
            .select_from(t.files.join(t.instances, t.files.c.instance_fk == t.instances.c.id)
                         .join(t.series, t.instances.c.series_fk == t.series.c.id)
                         .join(t.studies, t.series.c.study_fk == t.studies.c.id)
                         .join(t.patients, t.studies.c.patient_fk == t.patients.c.id))
            .where(sa.or_(t.studies.c.study_instance_uid.in_(list(studies)),
                          t.patients.c.patient_id.in_(list(patients)),
                          t.series.c.series_instance_uid.in_(list(series))))
            .order_by(t.patients.c.patient_id, t.studies.c.study_instance_uid, t.series.c.series_number,
                      t.series.c.series_instance_uid, t.instances.c.instance_number, t.instances.c.sop_instance_uid)
        )
        with index.engine.connect() as conn:
            rows = conn.execute(query).all()
    except sa.exc.SQLAlchemyError as exc:
        raise SelectionError(f"cannot read the index {index}: {exc}") from exc
    finally:
        index.close()
    missing = ([f"study {u}" for u in studies if u not in {r.study_instance_uid for r in rows}]
               + [f"patient {u}" for u in patients if u not in {r.patient_id for r in rows}]
               + [f"series {u}" for u in series if u not in {r.series_instance_uid for r in rows}])
    if missing:
        raise SelectionError(f"not in the index ({url}): {', '.join(missing)}")
    out: list[StoredFile] = []
    seen: set[str] = set()
    for r in rows:
        if r.sop_instance_uid in seen:
            continue
        seen.add(r.sop_instance_uid)
        record = FileRecord(r.path, r.size, r.sha256, r.transfer_syntax_uid, backend=r.backend)
        try:
            path = host.call("gateway_stored_file_path", file=record, config=config)
        except HookError as exc:
            raise SelectionError(f"cannot locate the stored file {r.path}: {exc}") from exc
        if path is None:
            raise SelectionError(f"no storage service can locate files of backend {r.backend!r} ({r.path})")
        out.append(StoredFile(Path(path), int(r.size or 0), r.sha256, r.sop_class_uid, r.sop_instance_uid,
                              r.series_instance_uid, r.study_instance_uid, r.patient_id, r.transfer_syntax_uid or "",
                              demographics_of(r)))
    return out
