"""The prefetch worker: one daemon thread in the sender process working off the job queue.

``query``: C-FIND STUDY for the patient at the archive (Patient ID matched
exactly), SERIES queries when a filter needs Modality or Body Part Examined the
study answer lacks, then :func:`select_priors` and one ``pull`` job per chosen
prior that we do not hold and nobody is pulling. ``pull``: C-MOVE of the study
to our own storage AE (or the rule's ``destination``), or C-GET imported
through the import path when the rule or the remote says ``retrieve = "get"``;
then the study must be in our index (as many instances as reported moved), and
its instances are queued as forward jobs to the rule's ``forward_to``.

Failures are retried with backoff (``plugins/prefetch.toml``); a C-MOVE refused
with A801 (the archive does not know the destination AE) can never work as
configured: ``failed`` at once. A job in flight when the sender stops is left
claimed; the next sender on this host frees it (its claimant is gone) or its
lease expires, and it runs again — a C-MOVE of a study twice is harmless (the
second copy is a byte-identical resend, STO-6).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gateway_plugins.prefetch_queue import PrefetchJob, PrefetchQueue, worker_id

log = logging.getLogger("gateway.prefetch")

STUDY_KEYS = ("StudyInstanceUID", "PatientID", "StudyDate", "StudyTime", "ModalitiesInStudy", "StudyDescription",
              "NumberOfStudyRelatedInstances", "AccessionNumber")


class _Permanent(Exception):
    """A failure that retrying cannot fix (``failed``, not retried)."""


def select_priors(answers: list[dict[str, Any]], settings: Any, *, trigger_study: str, patient_id: str,
                  today: date | None = None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The priors to fetch from study answers (keyword → text; ``modalities`` and
    ``body_parts`` as sets when known): the patient's other studies within the age
    limit with a wanted modality / body part, most recent first, at most
    ``max_studies``. Returns them and how many each filter left out."""
    today = today or date.today()
    left_out = {"other patient": 0, "too old": 0, "modality": 0, "body part": 0, "beyond max_studies": 0}
    wanted_mod = {m.upper() for m in settings.modalities}
    wanted_body = {b.upper() for b in settings.body_parts}
    cutoff = (today - timedelta(days=settings.max_age)).strftime("%Y%m%d") if settings.max_age else None
    kept = []
    for a in answers:
        uid = a.get("StudyInstanceUID")
        if not uid or uid == trigger_study:
            continue
        if a.get("PatientID", patient_id) != patient_id:
            left_out["other patient"] += 1
            continue
        when = (a.get("StudyDate") or "")[:8]
        if cutoff and (len(when) != 8 or when < cutoff):
            left_out["too old"] += 1  # an undated study cannot be shown to be recent
            continue
        if wanted_mod and not ({m.upper() for m in a.get("modalities") or ()} & wanted_mod):
            left_out["modality"] += 1
            continue
        if wanted_body and not ({b.upper() for b in a.get("body_parts") or ()} & wanted_body):
            left_out["body part"] += 1
            continue
        kept.append(a)
    kept.sort(key=lambda a: ((a.get("StudyDate") or "")[:8], (a.get("StudyTime") or "")[:6]), reverse=True)
    if settings.max_studies is not None and len(kept) > settings.max_studies:
        left_out["beyond max_studies"] = len(kept) - settings.max_studies
        kept = kept[:settings.max_studies]
    return kept, {k: v for k, v in left_out.items() if v}


class PrefetchWorker(threading.Thread):
    def __init__(self, config: Any, index: Any, stopping: threading.Event) -> None:
        super().__init__(name="prefetch-worker", daemon=True)
        self.config = config
        self.index = index
        self.stopping = stopping
        self.queue = PrefetchQueue(index)
        self.claimant = worker_id()
        self._wake = threading.Event()
        self._runtime: Any = None

    def update(self, config: Any) -> None:
        if config is not self.config:
            self.config = config
            self._runtime = None
        self._wake.set()

    @property
    def settings(self) -> Any:
        from gateway_plugins.prefetch import settings_of

        return settings_of(self.config)

    def run(self) -> None:
        started = False
        while not self.stopping.is_set():
            try:
                if not started:
                    self.queue.ensure()
                    freed = self.queue.release_dead_claims()
                    if freed:
                        log.warning("released prefetch jobs claimed by a sender that is gone", extra={"jobs": freed})
                    started = True
                jobs = self.queue.claim(self.claimant, self.settings.lease)
            except Exception as exc:  # the index is unavailable: try again later
                log.warning("prefetch queue unavailable", extra={"error": str(exc)})
                self._wait(5.0)
                continue
            if not jobs:
                self._wait(self.settings.poll_interval)
                continue
            for job in jobs:
                if self.stopping.is_set():
                    self.queue.release(job.id)
                    break
                self._work(job)

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    # ---- one job -------------------------------------------------------------------------

    def _work(self, job: PrefetchJob) -> None:
        from gateway.net.failures import AssociationFailed
        from gateway_plugins.prefetch import PrefetchAction
        from gateway_plugins.qr_scu import QueryRetrieveError

        s = self.settings
        started = time.monotonic()
        try:
            settings = PrefetchAction.model_validate(job.options.get("settings") or {})
            result, status = (self._query if job.kind == "query" else self._pull)(job, settings)
        except _Permanent as exc:
            self.queue.fail(job.id, str(exc), retry=False)
            log.error("prefetch job failed", extra={"job": job.id, "kind": job.kind, "error": str(exc)})
            return
        except (AssociationFailed, QueryRetrieveError, OSError, Exception) as exc:
            status = getattr(exc, "status", None)
            error = str(exc) if isinstance(exc, (AssociationFailed, QueryRetrieveError)) else f"{type(exc).__name__}: {exc}"
            state = self.queue.fail(job.id, error, status=status, max_attempts=s.max_attempts,
                                    backoff_initial=s.backoff_initial, backoff_max=s.backoff_max)
            log.warning("prefetch job failed; " + ("retried later" if state == "pending" else f"now {state}"),
                        extra={"job": job.id, "kind": job.kind, "remote": job.remote, "error": error})
            return
        self.queue.done(job.id, result, status)
        log.info("prefetch job done", extra={"job": job.id, "kind": job.kind, "remote": job.remote,
                                             "study_instance_uid": job.study_instance_uid, "result": result,
                                             "s": round(time.monotonic() - started, 2)})

    def _query(self, job: PrefetchJob, settings: Any) -> tuple[str, int | None]:
        from pydicom.dataset import Dataset

        from gateway_plugins.qr_scu import QueryRetrieveSCU

        scu = QueryRetrieveSCU()
        ident = Dataset()
        ident.SpecificCharacterSet = "ISO_IR 100"
        ident.QueryRetrieveLevel = "STUDY"
        for key in STUDY_KEYS:
            setattr(ident, key, "")
        ident.PatientID = job.patient_id
        with scu.session(job.remote, self.config) as session:
            answers = []
            for a in session.find_all(ident):
                row = {k: a.value(k) for k in STUDY_KEYS}
                row["modalities"] = set(filter(None, row["ModalitiesInStudy"].split("\\"))) or None
                answers.append(row)
            if settings.modalities or settings.body_parts:
                for row in answers:
                    if row["StudyInstanceUID"] == job.trigger_study_uid:
                        continue
                    if settings.body_parts or row["modalities"] is None:
                        self._series_facts(session, row)
        chosen, left_out = select_priors(answers, settings, trigger_study=job.trigger_study_uid,
                                         patient_id=job.patient_id)
        held = queued = busy = 0
        for row in chosen:
            expected = int(row["NumberOfStudyRelatedInstances"]) if row["NumberOfStudyRelatedInstances"].isdigit() else None
            if self._held(row["StudyInstanceUID"], expected):
                held += 1
            elif self.queue.queue_pull(job, row["StudyInstanceUID"]):
                queued += 1
            else:
                busy += 1
        others = sum(1 for a in answers if a["StudyInstanceUID"] != job.trigger_study_uid)
        parts = [f"{others} other studies at the archive", f"{len(chosen)} chosen", f"{queued} queued to pull"]
        if held:
            parts.append(f"{held} already held")
        if busy:
            parts.append(f"{busy} already being pulled")
        if left_out:
            parts.append("left out: " + ", ".join(f"{n} {why}" for why, n in left_out.items()))
        return "; ".join(parts), 0

    @staticmethod
    def _series_facts(session: Any, row: dict[str, Any]) -> None:
        from pydicom.dataset import Dataset

        ident = Dataset()
        ident.SpecificCharacterSet = "ISO_IR 100"
        ident.QueryRetrieveLevel = "SERIES"
        ident.StudyInstanceUID = row["StudyInstanceUID"]
        ident.SeriesInstanceUID = ""
        ident.Modality = ""
        ident.BodyPartExamined = ""
        series = session.find_all(ident)
        row["modalities"] = {s.value("Modality") for s in series if s.value("Modality")} | (row["modalities"] or set())
        row["body_parts"] = {s.value("BodyPartExamined") for s in series if s.value("BodyPartExamined")}

    def _held(self, study_uid: str, expected: int | None) -> bool:
        """Whether our index has the study (all ``expected`` instances when the archive said how many)."""
        from gateway.index import schema as S

        st, se, i = S.studies, S.series, S.instances
        with self.index._connect(write=False) as conn:
            n = conn.execute(sa.select(sa.func.count()).select_from(i).join(se, se.c.id == i.c.series_fk)
                             .join(st, st.c.id == se.c.study_fk).where(st.c.study_instance_uid == study_uid)).scalar()
        return n > 0 and (expected is None or n >= expected)

    def _pull(self, job: PrefetchJob, settings: Any) -> tuple[str, int | None]:
        from gateway_plugins.qr_scu import QueryRetrieveSCU

        uid = job.study_instance_uid
        if self._held(uid, None):  # arrived another way since the query
            text = "already held"
            if settings.forward_to:
                text += f"; {self._forward(job, settings.forward_to)} forward jobs to {', '.join(settings.forward_to)}"
            return text, None
        remote = self.config.remote(job.remote)
        method = settings.retrieve or (remote[1].retrieve if remote else "move")
        scu = QueryRetrieveSCU()
        last = [time.monotonic()]
        lease = self.settings.lease

        def progress(_r: Any) -> None:  # a long retrieval keeps its lease
            if time.monotonic() - last[0] > lease / 3:
                last[0] = time.monotonic()
                self.queue.extend(job.id, self.claimant, lease)

        ours = settings.destination is None or settings.destination == scu.local_ae_title(self.config)
        if method == "get":
            result = self._get(scu, job, progress)
        else:
            result = scu.move(job.remote, "study", [uid], settings.destination, config=self.config,
                              on_progress=progress)
            if result.status == 0xA801:
                raise _Permanent(f"{job.remote}: {result.message} — the archive must know our AE "
                                 f"{result.destination!r} (its list of DICOM peers)")
        if result.status is None:
            raise RuntimeError(f"{job.remote}: C-{method.upper()} ended without a final response: {result.comment}")
        if result.status != 0x0000:
            from gateway_plugins.qr_scu import QueryRetrieveError

            raise QueryRetrieveError(f"{job.remote}: C-{method.upper()} {result.message}; "
                                     f"{result.completed} completed, {result.failed} failed", result.status,
                                     result.comment)
        arrived = self._count(uid)
        if ours and arrived < result.completed:
            raise RuntimeError(f"{result.completed} reported {'moved' if method == 'move' else 'sent'} but "
                               f"{arrived} in our index: does the archive have the right address for our AE?")
        text = f"{result.completed} instances {'moved' if method == 'move' else 'retrieved'}, {arrived} in our index"
        if settings.forward_to and ours:
            queued = self._forward(job, settings.forward_to)
            text += f"; {queued} forward jobs to {', '.join(settings.forward_to)}"
        return text, result.status

    def _get(self, scu: Any, job: PrefetchJob, progress: Any) -> Any:
        from gateway.importer import import_paths
        from gateway.runtime import build_runtime

        out = Path(tempfile.mkdtemp(prefix="prefetch-get-", dir=Path(self.config.node.data_dir) / "spool"))
        try:
            result = scu.get(job.remote, "study", [job.study_instance_uid], out, config=self.config,
                             on_progress=progress)
            if result.stored:
                if self._runtime is None:
                    self._runtime = build_runtime(self.config, 1)
                summary = import_paths([str(out)], self._runtime)
                if summary.failed:
                    raise RuntimeError(f"C-GET: {len(summary.failed)} objects not imported: {summary.failed[0][1]}")
            return result
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def _count(self, study_uid: str) -> int:
        from gateway.index import schema as S

        st, se, i = S.studies, S.series, S.instances
        with self.index._connect(write=False) as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(i).join(se, se.c.id == i.c.series_fk)
                                .join(st, st.c.id == se.c.study_fk).where(st.c.study_instance_uid == study_uid)).scalar()

    def _forward(self, job: PrefetchJob, destinations: list[str]) -> int:
        """Forward jobs for every instance of the pulled study not yet queued to each destination."""
        from gateway.index import schema as S
        from gateway.index.queue import ForwardPlan, enqueue

        st, se, i, fj = S.studies, S.series, S.instances, S.forward_jobs
        uid = job.study_instance_uid
        queued = 0
        with self.index._connect(write=True) as conn:
            rows = conn.execute(sa.select(i.c.sop_instance_uid, i.c.sop_class_uid, se.c.series_instance_uid)
                                .join(se, se.c.id == i.c.series_fk).join(st, st.c.id == se.c.study_fk)
                                .where(st.c.study_instance_uid == uid)).all()
            for dest in destinations:
                have = set(conn.execute(sa.select(fj.c.sop_instance_uid).where(
                    fj.c.destination == dest, fj.c.study_instance_uid == uid,
                    fj.c.state.notin_(("failed", "dead")))).scalars())
                plan = ForwardPlan(destination=dest, rule=f"{job.rule} (prefetch)")
                for r in rows:
                    if r.sop_instance_uid in have:
                        continue
                    queued += enqueue(conn, [plan], sop_instance_uid=r.sop_instance_uid, sop_class_uid=r.sop_class_uid,
                                      series_instance_uid=r.series_instance_uid, study_instance_uid=uid)
        return queued
