"""Prefetch rules (issue 13 item 3) against real peers: Orthanc on loopback (its own JSON
config, a DICOM modality entry for the gateway so it can C-MOVE to us) holds prior studies
of patient P made from the project's corpus and loaded with DCMTK storescu; a new study for
P arrives at a `dicom-gateway serve` from DCMTK storescu; the priors the rule asks for
appear in our index. Also: filters (modality, age, how many), forward_to, the same study
twice → one job, an archive that is down (retried with backoff, in `prefetch ls`), and a
restart of the gateway with the job still queued."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from conftest import dcmtk, free_port, missing_component, wait_port, write_config, stop_process

NODELAY = dict(os.environ, TCP_NODELAY="1")
ORTHANC = Path("/usr/sbin/Orthanc")
GW_AE = "GW_PF"
PATIENT = "PF0000001"


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    exe = shutil.which("dicom-gateway")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "gateway.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _days_ago(n: int) -> str:
    return (date.today() - timedelta(days=n)).strftime("%Y%m%d")


def _study(out: Path, corpus: Path, name: str, sources: list[str], *, days_ago: int, patient: str = PATIENT,
           body_part: str = "CHEST") -> dict:
    """A new study made of corpus files (their series kept apart): new UIDs, patient, date."""
    study_uid = generate_uid()
    series: dict[str, str] = {}
    paths = []
    (out / name).mkdir(parents=True)
    for n, rel in enumerate(sources):
        ds = dcmread(corpus / "explicit-le" / rel)
        series.setdefault(ds.SeriesInstanceUID, generate_uid())
        ds.SeriesInstanceUID = series[ds.SeriesInstanceUID]
        ds.StudyInstanceUID = study_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.PatientName = patient, "Prefetch^Patient"
        ds.StudyDate = ds.SeriesDate = _days_ago(days_ago)
        ds.StudyDescription = name
        ds.BodyPartExamined = body_part
        ds.AccessionNumber = name[:16]
        path = out / name / f"{n}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(str(path))
    return _Study(uid=study_uid, paths=paths, n=len(paths))


class _Study(dict):
    __getattr__ = dict.__getitem__


@pytest.fixture(scope="module")
def data(tmp_path_factory, corpus_small):
    out = tmp_path_factory.mktemp("prefetch-data")
    ct = ["CT/CT_0001.dcm", "CT/CT_0002.dcm"]
    return SimpleNamespace(
        new=_study(out, corpus_small, "new", ct + ["CT/CT_0003.dcm"], days_ago=0),
        a=_study(out, corpus_small, "prior-a-ctpt", ct + ["PT/PT_0001.dcm", "PT/PT_0002.dcm"], days_ago=100),
        b=_study(out, corpus_small, "prior-b-ct", ct, days_ago=400),
        c=_study(out, corpus_small, "prior-c-ct", ct, days_ago=800),        # beyond max_studies = 2
        d=_study(out, corpus_small, "prior-d-mr", ["MR/MR_0001.dcm"], days_ago=50),  # another modality
        e=_study(out, corpus_small, "prior-e-old", ct, days_ago=4000),      # older than max_age_years = 5
        q=_study(out, corpus_small, "other-patient", ct, days_ago=10, patient="PF0000002"),
    )


class Orthanc:
    """Orthanc on loopback with its own config; the gateway is one of its DICOM modalities."""

    def __init__(self, root: Path, gateway_port: int) -> None:
        if not ORTHANC.exists():
            missing_component("Orthanc not installed (scripts/test.sh installs it)")
        self.root = root
        self.port, self.http_port = free_port(), free_port()
        self.config = root / "orthanc.json"
        self.config.write_text(json.dumps({
            "Name": "prefetch-test", "DicomAet": "ORTHANC", "DicomPort": self.port, "HttpPort": self.http_port,
            "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True, "DicomModalities": {"gateway": [GW_AE, "127.0.0.1", gateway_port]},
            "Plugins": [],
        }))
        self.proc = None
        self.log = open(root / "orthanc.log", "ab")

    def start(self) -> None:
        self.proc = subprocess.Popen([str(ORTHANC), str(self.config)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=NODELAY)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc)
        self.proc = None


def _storescu(port: int, aec: str, paths: list[str]) -> None:
    run = subprocess.run([dcmtk("storescu"), "-aec", aec, "127.0.0.1", str(port), *paths],
                         capture_output=True, text=True, timeout=60, env=NODELAY)
    assert run.returncode == 0, run.stderr


@pytest.fixture(scope="module")
def gw_port():
    return free_port()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, data, gw_port):
    o = Orthanc(tmp_path_factory.mktemp("orthanc"), gw_port)
    o.start()
    _storescu(o.port, "ORTHANC", [p for s in (data.a, data.b, data.c, data.d, data.e, data.q) for p in s.paths])
    yield o
    o.stop()
    o.log.close()


RULE = """\
[[rule]]
name = "ct-priors"
match = { modality = "CT" }
action = "prefetch"

[rule.prefetch]
archives = ["orthanc"]
modalities = ["CT", "PT"]
max_age_years = 5
max_studies = 2
forward_to = ["SINK@127.0.0.1:{sink}"]
"""


def _config(tmp_path: Path, name: str, port: int, orthanc_port: int) -> Path:
    data_dir = tmp_path / f"{name}-data"
    toml = f"""
[node]
ae_title = "{GW_AE}"
data_dir = "{data_dir}"
workers = 1
log_format = "text"
shutdown_grace = 5

[[listeners]]
port = {port}
bind = "127.0.0.1"
ae_titles = ["{GW_AE}"]

[http]
enabled = false

[forwarding]
poll_interval = 0.2
breaker_threshold = 1
breaker_cooldown = 600
"""
    return write_config(tmp_path / name, toml, **{
        "remotes/orthanc.toml": f'ae_title = "ORTHANC"\nhost = "127.0.0.1"\nport = {orthanc_port}\n'
                                f'association_timeout = 5\ndimse_timeout = 20\n',
        "routes/prefetch.toml": RULE.replace("{sink}", str(free_port())),
        "plugins/prefetch.toml": "backoff_initial = 0.5\nbackoff_max = 2\npoll_interval = 0.2\nmax_attempts = 50\n",
    })


def _jobs(cfg: Path) -> list[dict]:
    run = _cli("prefetch", "ls", "--json", "--config", str(cfg))
    if run.returncode == 1 and "no index" in run.stderr:
        return []
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _wait(what, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.3)


def _held(cfg: Path) -> set[str]:
    from gateway.config import load_config
    from gateway.index import Index

    index = Index(load_config(cfg).effective_database_url(), migrate=False)
    try:
        return {st.study_instance_uid for p in index.tree(patient_id=PATIENT) for st in p.studies}
    finally:
        index.close()


def _all_done(cfg: Path, pulls: int):
    jobs = _jobs(cfg)
    done = [j for j in jobs if j["state"] == "done"]
    return jobs if len(done) == len(jobs) == 1 + pulls else None


def test_priors_pulled_with_filters_forwarded_and_queued_once(tmp_path, gateway_process, orthanc, data, gw_port):
    """A new CT study for P from DCMTK storescu → the query job (written with the instance)
    asks Orthanc, the two most recent CT/PT priors within five years are C-MOVEd to us (not
    the MR study, not the third CT, not the 11-year-old one, not another patient's), and
    queued on to forward_to. The same study again — resent, and a new instance of it —
    creates no second job."""
    cfg = _config(tmp_path, "gw", gw_port, orthanc.port)
    gp = gateway_process(["serve", "--config", str(cfg)], gw_port)
    _storescu(gw_port, GW_AE, data.new.paths[:2])
    jobs = _wait(lambda: _all_done(cfg, 2), 40, f"prefetch did not finish: {_jobs(cfg)}\n{gp.output()[-3000:]}")

    query = next(j for j in jobs if j["kind"] == "query")
    assert query["study_instance_uid"] == data.new["uid"] and query["patient_id"] == PATIENT
    assert "5 other studies at the archive; 2 chosen; 2 queued to pull" in query["result"], query["result"]
    assert "1 too old" in query["result"] and "1 modality" in query["result"]
    assert "1 beyond max_studies" in query["result"]
    pulls = {j["study_instance_uid"]: j for j in jobs if j["kind"] == "pull"}
    assert set(pulls) == {data.a["uid"], data.b["uid"]}
    assert all(j["attempts"] == 1 and j["trigger_study_uid"] == data.new["uid"] for j in pulls.values())
    assert _held(cfg) == {data.new["uid"], data.a["uid"], data.b["uid"]}
    assert f"{data.a['n']} instances moved, {data.a['n']} in our index" in pulls[data.a["uid"]]["result"]

    # forward_to: every instance of the priors is a forward job to the sink
    import sqlalchemy as sa

    from gateway.config import load_config
    from gateway.index import Index
    from gateway.index import schema as S

    index = Index(load_config(cfg).effective_database_url(), migrate=False)
    with index.engine.connect() as conn:
        fwd = conn.execute(sa.select(S.forward_jobs.c.study_instance_uid, sa.func.count())
                           .group_by(S.forward_jobs.c.study_instance_uid)).all()
    index.close()
    assert dict(fwd) == {data.a["uid"]: data.a["n"], data.b["uid"]: data.b["n"]}

    # The same study again (a resend and a new instance of it): no second job.
    _storescu(gw_port, GW_AE, data.new.paths)
    time.sleep(1.0)
    again = _jobs(cfg)
    assert len(again) == 3 and [j["id"] for j in again] == [j["id"] for j in jobs]

    text = _cli("prefetch", "ls", "--config", str(cfg))
    assert text.returncode == 0 and "query  done" in text.stdout and text.stdout.count("pull   done") == 2, text.stdout
    assert "Traceback" not in gp.output()


def test_archive_down_backoff_then_restart_completes(tmp_path, gateway_process, orthanc, data, gw_port):
    """The archive is down: the query job is retried with backoff, its tries and the error
    visible in `prefetch ls`. The gateway is stopped (SIGTERM) with the job still queued,
    the archive comes back, the gateway starts again: the same job completes and the
    priors arrive."""
    orthanc.stop()
    try:
        cfg = _config(tmp_path, "gw", gw_port, orthanc.port)
        gp = gateway_process(["serve", "--config", str(cfg)], gw_port)
        _storescu(gw_port, GW_AE, data.new.paths[:1])

        def retried():
            jobs = _jobs(cfg)
            return jobs if jobs and jobs[0]["attempts"] >= 2 and jobs[0]["state"] in ("pending", "claimed") else None

        jobs = _wait(retried, 30, f"no retries: {_jobs(cfg)}\n{gp.output()[-3000:]}")
        assert len(jobs) == 1 and jobs[0]["kind"] == "query"
        assert "no association" in jobs[0]["last_error"] or "refused" in jobs[0]["last_error"].lower(), jobs[0]
        text = _cli("prefetch", "ls", "--config", str(cfg))
        assert "query  pending" in text.stdout or "query  claimed" in text.stdout, text.stdout
        job_id = jobs[0]["id"]
        assert gp.stop() == 0
    finally:
        orthanc.start()
    gp2 = gateway_process(["serve", "--config", str(cfg)], gw_port)
    jobs = _wait(lambda: _all_done(cfg, 2), 40, f"not completed after the restart: {_jobs(cfg)}\n{gp2.output()[-3000:]}")
    query = next(j for j in jobs if j["kind"] == "query")
    assert query["id"] == job_id and query["attempts"] >= 3
    assert _held(cfg) == {data.new["uid"], data.a["uid"], data.b["uid"]}


def test_rule_errors_name_file_line_and_key(tmp_path):
    """[rule.prefetch] is validated by the plugin when the config is taken up: file:line:key."""
    from gateway.config import load_config
    from gateway.runtime import PluginConfigError, build_runtime

    routes = """\
[[rule]]
name = "p"
action = "prefetch"
[rule.prefetch]
archives = ["nowhere"]
max_age_days = 10
max_age_years = 1
max_studeis = 3

[[rule]]
name = "typo"
action = "prefech"
"""
    cfg = write_config(tmp_path / "cfg", f'[node]\ndata_dir = "{tmp_path / "d"}"\n',
                       **{"routes/r.toml": routes, "plugins/prefetch.toml": "lease = 1\n"})
    with pytest.raises(PluginConfigError) as err:
        build_runtime(load_config(cfg), 1)
    text = str(err.value)
    assert "routes/r.toml:8: key 'rule.prefetch.max_studeis': unknown key" in text, text
    assert "routes/r.toml:12: key 'rule.action': unknown action 'prefech'" in text, text
    assert "plugins/prefetch.toml:1: key 'lease'" in text, text
    # `config check` refuses the same rules, not only `serve`.
    import subprocess
    import sys

    checked = subprocess.run([sys.executable, "-m", "gateway.cli", "config", "check", str(cfg)],
                             capture_output=True, text=True, timeout=120)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "routes/r.toml:8: key 'rule.prefetch.max_studeis': unknown key" in checked.stdout, checked.stdout
    assert "routes/r.toml:12: key 'rule.action': unknown action 'prefech'" in checked.stdout, checked.stdout

    cfg2 = write_config(tmp_path / "cfg2", f'[node]\ndata_dir = "{tmp_path / "d"}"\n',
                        **{"routes/r.toml": routes.split("\n\n")[0].replace("max_studeis", "max_studies") + "\n"})
    with pytest.raises(PluginConfigError) as err:
        build_runtime(load_config(cfg2), 1)
    text = str(err.value)
    assert "routes/r.toml:4: key 'rule.prefetch': give max_age_days or max_age_years, not both" in text, text
    cfg3 = write_config(tmp_path / "cfg3", f'[node]\ndata_dir = "{tmp_path / "d"}"\n',
                        **{"routes/r.toml": routes.split("\n\n")[0].replace("max_studeis", "max_studies")
                           .replace("max_age_days = 10\n", "") + "\n"})
    with pytest.raises(PluginConfigError) as err:
        build_runtime(load_config(cfg3), 1)
    assert "routes/r.toml:5: key 'rule.prefetch.archives[0]': unknown remote 'nowhere'" in str(err.value)


def test_select_priors_filters():
    from gateway_plugins.prefetch import PrefetchAction
    from gateway_plugins.prefetch_worker import select_priors

    rows = [dict(StudyInstanceUID="new", StudyDate=_days_ago(0), modalities={"CT"}, PatientID="P"),
            dict(StudyInstanceUID="a", StudyDate=_days_ago(10), modalities={"PT", "CT"}, body_parts={"CHEST"}, PatientID="P"),
            dict(StudyInstanceUID="b", StudyDate=_days_ago(20), modalities={"CT"}, body_parts={"HEAD"}, PatientID="P"),
            dict(StudyInstanceUID="c", StudyDate="", modalities={"CT"}, body_parts={"CHEST"}, PatientID="P"),
            dict(StudyInstanceUID="d", StudyDate=_days_ago(5), modalities={"CT"}, body_parts={"CHEST"}, PatientID="X")]
    settings = PrefetchAction(archives=["x"], body_parts=["chest"], max_age_days=30)
    chosen, left = select_priors(rows, settings, trigger_study="new", patient_id="P")
    assert [r["StudyInstanceUID"] for r in chosen] == ["a"]
    assert left == {"other patient": 1, "too old": 1, "body part": 1}
    chosen, _ = select_priors(rows, PrefetchAction(archives=["x"], max_studies=2), trigger_study="new", patient_id="P")
    assert [r["StudyInstanceUID"] for r in chosen] == ["a", "b"]
