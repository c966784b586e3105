"""Media export jobs (issue 15 item 4) against real peers: a `dicom-gateway serve` with its
own config directory receives studies of the project's corpus from DCMTK storescu; rules
with `action = "media"` write each study as a STD-GEN-CD file-set once it is quiet, through
the durable job queue worked off by the sender; DCMTK dcmdump reads what was written.
Also: a late arrival re-exports, a SIGTERM restart and a killed sender's claim, a target
that cannot be written (retries, dead letter, `media jobs retry`), `media export --queue`,
config errors with file:line, and a site's driver from an entry point."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pydicom
import pytest

from conftest import dcmtk, free_port, third_party_plugins, write_config
from gateway.importer import meta_end

NODELAY = dict(os.environ, TCP_NODELAY="1")
AE = "GW_MEDIA"
MEDIA_TOML = "backoff_initial = 0.2\nbackoff_max = 0.5\npoll_interval = 0.2\nmax_attempts = 3\nlease = 10\n"


def _cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    exe = shutil.which("dicom-gateway")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "gateway.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _config(root: Path, port: int, routes: str, *, modules: tuple[str, ...] = ()) -> Path:
    toml = f"""
[node]
ae_title = "{AE}"
data_dir = "{root / 'data'}"
workers = 1
log_format = "text"
shutdown_grace = 5

[[listeners]]
port = {port}
bind = "127.0.0.1"
ae_titles = ["{AE}"]

[http]
enabled = false

[forwarding]
poll_interval = 0.2

[plugins]
modules = {json.dumps(list(modules))}
"""
    return write_config(root / "cfg", toml, **{"routes/media.toml": routes, "plugins/media.toml": MEDIA_TOML})


def _rule(target: str, *, quiet: float, driver: str | None = None, name: str = "mr-media",
          modality: str = "MR") -> str:
    extra = f'driver = "{driver}"\n' if driver else ""
    return (f'[[rule]]\nname = "{name}"\nmatch = {{ modality = "{modality}" }}\naction = "media"\n\n'
            f'[rule.media]\ntarget = "{target}"\nquiet = {quiet}\n{extra}')


def _storescu(port: int, paths: list[Path]) -> None:
    run = subprocess.run([dcmtk("storescu"), "-aec", AE, "127.0.0.1", str(port), *map(str, paths)],
                         capture_output=True, text=True, timeout=60, env=NODELAY)
    assert run.returncode == 0, run.stdout + run.stderr


def _jobs(cfg: Path) -> list[dict]:
    """The jobs as `media jobs --json` gives them, read in this process (polling the CLI
    would start a Python per poll)."""
    from gateway.config import load_config
    from gateway.index import Index
    from gateway_plugins.media_jobs import MediaQueue

    url = load_config(cfg).effective_database_url()
    if not Path(url.removeprefix("sqlite:///")).exists():
        return []
    index = Index(url, migrate=False)
    try:
        queue = MediaQueue(index)
        return [j.to_dict() for j in queue.list()] if queue.exists() else []
    finally:
        index.close()


def _wait(what, timeout: float, message):
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(0.25)


def _job_in(cfg: Path, states: tuple[str, ...], n: int = 1):
    return lambda: (lambda js: js if len(js) >= n and all(j["state"] in states for j in js) else None)(_jobs(cfg))


def _dataset_sha(path: Path) -> str:
    raw = path.read_bytes()
    return hashlib.sha256(raw[meta_end(raw):]).hexdigest()


def _fileset(root: Path) -> dict[str, str]:
    """SOP Instance UID -> SHA-256 of the dataset, of every file the DICOMDIR at ``root``
    names; DCMTK dcmdump must read the DICOMDIR and every file."""
    subprocess.run([dcmtk("dcmdump"), str(root / "DICOMDIR")], capture_output=True, check=True, timeout=30)
    out = {}
    for record in pydicom.dcmread(root / "DICOMDIR").DirectoryRecordSequence:
        if "ReferencedFileID" not in record:
            continue
        path = root.joinpath(*list(record.ReferencedFileID))
        subprocess.run([dcmtk("dcmdump"), str(path)], capture_output=True, check=True, timeout=30)
        out[str(record.ReferencedSOPInstanceUIDInFile)] = _dataset_sha(path)
    return out


@pytest.fixture(scope="module")
def studies(corpus_small):
    """Two studies of the corpus in Explicit VR LE (what the gateway archives byte-exact, and
    what the medium holds after the transcoder, so dataset digests compare directly)."""
    def of(kind: str) -> list[Path]:
        return sorted((corpus_small / "explicit-le" / kind).glob("*.dcm"))

    mr, mfs = of("MR"), of("MFGRAY") + of("MFRGB")
    first = pydicom.dcmread(mr[0], stop_before_pixels=True)
    return dict(mr=mr, mr_uid=str(first.StudyInstanceUID), mr_patient=str(first.PatientID),
                mr_date=str(first.StudyDate), mf=mfs,
                mf_uid=str(pydicom.dcmread(mfs[0], stop_before_pixels=True).StudyInstanceUID),
                mf_sops={str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in mfs},
                sha={str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): _dataset_sha(p)
                     for p in mr + mfs})


def test_study_written_once_quiet_then_rewritten_on_a_late_arrival(tmp_path, gateway_process, studies):
    """A study from storescu is written only after `quiet` seconds without an arrival, as a
    file-set DCMTK reads whose objects have the digests of what was sent; `media jobs` shows
    the job done with its progress. An instance arriving later queues a new job that replaces
    the file-set with the whole study."""
    port = free_port()
    cfg = _config(tmp_path, port, _rule(f"{tmp_path}/media/{{patient_id}}/{{date}}-{{study_uid}}", quiet=3))
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    _storescu(port, studies["mr"][:3])
    target = tmp_path / "media" / studies["mr_patient"] / f"{studies['mr_date']}-{studies['mr_uid']}"
    pending = _jobs(cfg)
    assert [j["state"] for j in pending] == ["pending"] and pending[0]["arrivals"] == 3, pending
    assert not target.exists()  # not before the study was quiet
    jobs = _wait(_job_in(cfg, ("done",)), 30, lambda: f"not exported: {_jobs(cfg)}\n{gp.output()[-3000:]}")
    got = _fileset(target)
    sent = {u: s for u, s in studies["sha"].items() if u in got}
    assert len(got) == 3 and got == sent
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no partial left
    listed = json.loads(_cli("media", "jobs", "--json", "--config", str(cfg)).stdout)
    assert listed[0]["id"] == jobs[0]["id"] and listed[0]["progress"] == "3/3" and listed[0]["attempts"] == 1
    assert listed[0]["study"] == studies["mr_uid"] and listed[0]["written_to"] == str(target)
    assert "1 volume(s), 3 instances, verified" in listed[0]["result"]

    _storescu(port, studies["mr"][3:])  # late: the first export ran already
    jobs = _wait(_job_in(cfg, ("done",), 2), 30, lambda: f"no re-export: {_jobs(cfg)}\n{gp.output()[-3000:]}")
    assert [j["arrivals"] for j in jobs] == [3, 1]
    got = _fileset(target)
    assert len(got) == 4 and got == {u: studies["sha"][u] for u in got}
    text = _cli("media", "jobs", "--config", str(cfg))
    assert text.returncode == 0 and text.stdout.count(" done ") == 2 and "4/4" in text.stdout, text.stdout
    log = gp.output()  # other plugins' troubles are theirs: no frame of the media plugin, no failed try
    assert "gateway_plugins/media" not in log and "media job failed" not in log


def test_pending_job_survives_sigterm_and_a_killed_senders_claim_runs_again(tmp_path, gateway_process, studies):
    """A job still waiting for its quiet time when the gateway is stopped (SIGTERM) runs after
    the restart; a `media export --queue` job left claimed by a sender that was killed is
    released by the next sender and exported."""
    import sqlalchemy as sa

    from gateway.config import load_config
    from gateway.index import Index
    from gateway_plugins.media_jobs import media_jobs

    port = free_port()
    cfg = _config(tmp_path, port, _rule(f"{tmp_path}/media", quiet=6))
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    _storescu(port, studies["mf"])  # not MR: archived, no rule job
    _storescu(port, studies["mr"])
    assert gp.stop() == 0  # within the rule's quiet time
    # Queued while the gateway is down (the command needs only the index): due at once,
    # so it is still pending when the next sender starts.
    queued_out = tmp_path / "queued" / "OUT"
    q = _cli("media", "export", str(queued_out), "--study", studies["mf_uid"], "--queue", "--config", str(cfg))
    assert q.returncode == 0 and "queued media job" in q.stdout, q.stdout + q.stderr
    jobs = _jobs(cfg)
    assert sorted(j["state"] for j in jobs) == ["pending", "pending"], jobs
    rule_job = next(j for j in jobs if j["rule"] == "mr-media")
    queued_job = next(j for j in jobs if j["rule"] is None)
    assert queued_job["selection"]["studies"] == [studies["mf_uid"]] and queued_job["target"] == str(queued_out)
    # As a sender killed mid-export leaves it: claimed by a process of this host that is gone,
    # its lease far from over (only the dead-claim release can free it).
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=10)
    index = Index(load_config(cfg).effective_database_url(), migrate=False)
    with index.engine.begin() as conn:
        conn.execute(sa.update(media_jobs).where(media_jobs.c.id == queued_job["id"]).values(
            state="claimed", claimed_by=f"{os.uname().nodename}:{dead.pid}",
            lease_until=datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(days=1)))
    index.close()

    gp2 = gateway_process(["serve", "--config", str(cfg)], port)
    done = _wait(_job_in(cfg, ("done",), 2), 40, lambda: f"not exported: {_jobs(cfg)}\n{gp2.output()[-3000:]}")
    assert {j["id"] for j in done} == {rule_job["id"], queued_job["id"]}
    assert len(_fileset(tmp_path / "media" / studies["mr_uid"])) == len(studies["mr"])  # plain folder: one per study
    assert _fileset(queued_out) == {u: s for u, s in studies["sha"].items() if u in studies["mf_sops"]}
    assert "released media jobs claimed by a sender that is gone" in gp2.output()


def test_target_that_cannot_be_written_retries_goes_dead_and_retry_brings_it_back(tmp_path, gateway_process,
                                                                                  studies):
    """A file where the target's folder should be: each try fails with an error naming the
    target, is retried with backoff and goes dead after max_attempts (3), all visible in
    `media jobs`; once the file is gone, `media jobs retry ID` exports it."""
    blocker = tmp_path / "usb"
    blocker.write_text("a file in the way of the target folder\n")
    port = free_port()
    cfg = _config(tmp_path, port, _rule(f"{blocker}/{{study_uid}}", quiet=0.5))
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    _storescu(port, studies["mr"][:2])
    jobs = _wait(_job_in(cfg, ("dead",)), 40, lambda: f"not dead: {_jobs(cfg)}\n{gp.output()[-3000:]}")
    job = jobs[0]
    assert job["attempts"] == 3 and job["error"].startswith(f"cannot write target {blocker}/"), job
    assert "Not a directory" in job["error"], job
    text = _cli("media", "jobs", "--config", str(cfg))
    assert text.returncode == 0 and " dead " in text.stdout and "cannot write target" in text.stdout, text.stdout

    inproc = _cli("media", "export", str(blocker / "OUT"), "--study", studies["mr_uid"], "--config", str(cfg))
    assert inproc.returncode == 1 and "cannot write" in inproc.stderr and "Not a directory" in inproc.stderr, \
        inproc.stdout + inproc.stderr  # the in-process export says so too

    blocker.unlink()
    again = _cli("media", "jobs", "retry", str(job["id"]), "999", "--config", str(cfg))
    assert again.returncode == 1 and "1 media job(s) queued again" in again.stdout, again.stdout + again.stderr
    assert "job 999: no such job" in again.stderr
    done = _wait(_job_in(cfg, ("done",)), 30, lambda: f"not exported after retry: {_jobs(cfg)}")
    assert done[0]["attempts"] == 1 and done[0]["error"] is None
    assert len(_fileset(blocker / studies["mr_uid"])) == 2
    not_dead = _cli("media", "jobs", "retry", str(job["id"]), "--config", str(cfg))
    assert not_dead.returncode == 1 and "is done, not dead or failed" in not_dead.stderr
    drop = _cli("media", "jobs", "drop", str(job["id"]), "--config", str(cfg))
    assert drop.returncode == 0 and "1 media job(s) dropped" in drop.stdout and _jobs(cfg) == []


def test_config_check_refuses_media_rule_errors_with_file_and_line(tmp_path):
    """`dicom-gateway config check` names file:line and key: an unknown driver (listing the
    registered ones), a [rule.media] without target, an unknown placeholder, a relative
    target, an unknown key, a bad capacity; and plugins/media.toml's own keys."""
    routes = textwrap.dedent("""\
        [[rule]]
        name = "burn"
        action = "media"
        [rule.media]
        target = "/srv/media/{study_uid}"
        driver = "burner"

        [[rule]]
        name = "no-target"
        action = "media"
        [rule.media]
        driver = "iso"

        [[rule]]
        name = "bad"
        action = "media"
        [rule.media]
        target = "/srv/{study}"
        capacity = "floppy"
        colour = "blue"

        [[rule]]
        name = "relative"
        action = "media"
        [rule.media]
        target = "media/out"
        """)
    cfg = write_config(tmp_path / "cfg", f'[node]\ndata_dir = "{tmp_path / "d"}"\n',
                       **{"routes/r.toml": routes, "plugins/media.toml": "max_attempts = 0\nretries = 2\n"})
    run = _cli("config", "check", str(cfg))
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert ("routes/r.toml:6: key 'rule.media.driver': unknown media driver 'burner'; registered: folder, iso "
            "(rule 'burn')") in out, out
    assert "routes/r.toml:11: key 'rule.media.target': required key is missing" in out, out
    assert "routes/r.toml:18: key 'rule.media.target': unknown placeholder {study}; known: {study_uid}" in out, out
    assert "routes/r.toml:19: key 'rule.media.capacity': capacity 'floppy': expected cd650" in out, out
    assert "routes/r.toml:20: key 'rule.media.colour': unknown key" in out, out
    assert "routes/r.toml:26: key 'rule.media.target': must be an absolute path, got 'media/out'" in out, out
    assert "plugins/media.toml:1: key 'max_attempts'" in out and "plugins/media.toml:2: key 'retries'" in out, out
    # The same problems refuse `serve` (the runtime's plugin checks), once each.
    from gateway.config import load_config
    from gateway.runtime import PluginConfigError, build_runtime

    with pytest.raises(PluginConfigError) as err:
        build_runtime(load_config(cfg), 1)
    assert str(err.value).count("unknown media driver 'burner'") == 1


SITE_DRIVER = '''
import shutil
from pathlib import Path

from gateway.hookspecs import hookimpl
from gateway_plugins.media_drivers import digests_of_folder

LOG = Path({log!r})


class SiteUsb:
    """A site's USB target: copies the volume, notes what it wrote."""

    name, suffix = "site-usb", ""

    def __init__(self, config):
        self.config = config

    def write(self, staged, target, label):
        shutil.copytree(staged, target, dirs_exist_ok=True)
        with LOG.open("a") as f:
            f.write(f"{{label}} {{target}}\\n")

    def read_back(self, target):
        return digests_of_folder(target)


@hookimpl
def gateway_register_media_drivers(registry):
    registry.add("site-usb", SiteUsb)
'''


def test_a_site_driver_from_an_entry_point_is_used_by_rule_and_command(tmp_path, gateway_process, studies):
    """A third-party plugin (installed distribution, entry point) registers `site-usb` through
    gateway_register_media_drivers; a rule naming it writes through it, config check accepts
    it, and `media export --format` lists it among the registered drivers when a name is wrong."""
    log = tmp_path / "site-usb.log"
    env = third_party_plugins(tmp_path / "site", {"sitemedia": SITE_DRIVER.format(log=str(log))})
    port = free_port()
    cfg = _config(tmp_path, port, _rule(f"{tmp_path}/usb/{{study_uid}}", quiet=0.5, driver="site-usb"))
    check = _cli("config", "check", str(cfg), env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    gp = gateway_process(["serve", "--config", str(cfg)], port, env={"PYTHONPATH": env["PYTHONPATH"]})
    _storescu(port, studies["mr"][:2])
    jobs = _wait(_job_in(cfg, ("done",)), 30, lambda: f"not exported: {_jobs(cfg)}\n{gp.output()[-3000:]}")
    target = tmp_path / "usb" / studies["mr_uid"]
    assert jobs[0]["driver"] == "site-usb" and len(_fileset(target)) == 2
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("GW0001 ") and ".partial-" in lines[0]  # moved into place after
    wrong = _cli("media", "export", str(tmp_path / "o"), "--study", studies["mr_uid"], "--format", "usb",
                 "--config", str(cfg), env=env)
    assert wrong.returncode == 2, wrong.stdout + wrong.stderr
    assert "unknown media driver 'usb' (registered: folder, iso, site-usb" in wrong.stderr


def test_target_patterns():
    from gateway_plugins.media_rule import placeholders, resolve_target

    uid = "1.2.840.1"
    assert resolve_target("/m/{patient_id}/{date}_{study_uid}", study_uid=uid, patient_id="A/../B",
                          study_date="20240131", accession=None) == Path("/m/A_.._B/20240131_1.2.840.1")
    assert resolve_target("/m", study_uid=uid, patient_id="P", study_date="", accession=None) == Path("/m/1.2.840.1")
    assert resolve_target("/m/{patient_id}/{date}/{accession}", study_uid=uid, patient_id="..", study_date=None,
                          accession="") == Path("/m/no-patient-id/undated/none")
    with pytest.raises(ValueError, match="unknown placeholder {date:%Y}"):
        placeholders("/m/{date:%Y}")
    with pytest.raises(ValueError, match="malformed pattern"):
        placeholders("/m/{study_uid")


# ---- the queue's SQL on both index databases, and the worker in this process -------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def queue(request, tmp_path):
    from gateway.index import Index
    from gateway_plugins.media_jobs import MediaQueue

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'index.db'}"
    else:
        import uuid

        import psycopg

        base = request.getfixturevalue("pg_server")
        name = "media_" + uuid.uuid4().hex[:12]
        with psycopg.connect(base.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        url = f"{base}/{name}"
    index = Index(url)
    q = MediaQueue(index)
    q.ensure()
    yield q
    index.close()


def _arrive(queue, study: str, quiet: float = 0.0) -> None:
    from gateway_plugins.media_jobs import record_arrival

    with queue.index.transaction() as tx:  # as the store's transaction calls the rule action
        record_arrival(tx.conn, rule="r", study_uid=study, target="/m", options={"driver": "folder"}, quiet=quiet)


def test_one_pending_job_per_study_a_late_arrival_queues_another(queue):
    """Arrivals while a study's job waits reschedule that job (one UPSERT each); one arriving
    while it runs queues a second job; the first one's failure then cannot go back to
    pending beside it, and `retry` says why it leaves it."""
    _arrive(queue, "1.1", quiet=3600)
    _arrive(queue, "1.1", quiet=3600)
    _arrive(queue, "1.2")
    jobs = queue.list()
    assert [(j.study_instance_uid, j.arrivals, j.state) for j in jobs] == [("1.1", 2, "pending"), ("1.2", 1, "pending")]
    running = queue.claim("host:1", 60)
    assert running.study_instance_uid == "1.2" and queue.claim("host:1", 60) is None  # 1.1 is not quiet yet
    _arrive(queue, "1.2")  # while 1.2 is being exported
    jobs = queue.list()  # ids in order, not consecutive (PostgreSQL's upsert takes a sequence value)
    assert [(j.study_instance_uid, j.state) for j in jobs][1:] == [("1.2", "claimed"), ("1.2", "pending")]
    later = jobs[2].id
    assert queue.fail(running.id, "boom", retry=True, max_attempts=5, backoff_initial=1, backoff_max=1) == "failed"
    first = queue.list(ids=[running.id])[0]
    assert first.last_error == "boom; superseded by a newer pending job of the study" and first.attempts == 1
    assert "already has a pending job of rule 'r'" in queue.retry(running.id)
    assert queue.drop(later) == "" and queue.retry(running.id) == ""
    assert queue.list(ids=[running.id])[0].state == "pending"


def test_a_dead_senders_claim_is_released_a_live_ones_kept(queue):
    import sqlalchemy as sa

    from gateway_plugins.media_jobs import media_jobs

    _arrive(queue, "2.1")
    _arrive(queue, "2.2")
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=10)
    host = os.uname().nodename
    ids = [j.id for j in queue.list()]
    for job_id, pid in ((ids[0], dead.pid), (ids[1], os.getppid())):
        with queue.index.transaction() as tx:
            tx.conn.execute(sa.update(media_jobs).where(media_jobs.c.id == job_id).values(
                state="claimed", claimed_by=f"{host}:{pid}",
                lease_until=datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(days=1)))
    assert queue.release_dead_claims() == 1
    assert [j.state for j in queue.list()] == ["pending", "claimed"]
    # Progress renews the lease, and only for the claimant.
    queue.progress(ids[1], "someone:else", 9, 30)
    queue.progress(ids[1], f"{host}:{os.getppid()}", 5, 30)
    job = queue.list(ids=[ids[1]])[0]
    with queue.index.engine.connect() as conn:
        lease = conn.execute(sa.select(media_jobs.c.lease_until).where(media_jobs.c.id == ids[1])).scalar()
    soon = datetime.now(timezone.utc).replace(tzinfo=None) + timedelta(seconds=31)
    assert job.written == 5 and lease < soon  # the day-long lease set above is now 30 s
    assert queue.drop(ids[1]) == f"job {ids[1]}: is being exported now: left as it is"


@pytest.fixture
def archive(tmp_path, studies):
    """A gateway config whose archive holds the MR study, imported by `dicom-gateway import`."""
    cfg = _config(tmp_path, free_port(), "")
    run = _cli("import", *map(str, studies["mr"]), "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    return cfg


class _StopAfter:
    """A `stopping` event that turns set after ``n`` looks: the sender stopping mid-export."""

    def __init__(self, n: int) -> None:
        self.left = n

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0


def _run_one(cfg: Path, target: Path, stopping, driver: str = "folder") -> dict:
    """Queue a job for the MR study and let a worker of this process try it once."""
    from gateway.config import load_config
    from gateway.index import Index
    from gateway_plugins.media_jobs import MediaQueue, insert_command_job
    from gateway_plugins.media_worker import MediaWorker

    config = load_config(cfg)
    index = Index(config.effective_database_url())
    try:
        queue = MediaQueue(index)
        queue.ensure()
        with index.transaction() as tx:
            job_id = insert_command_job(tx.conn, selection={"studies": [_mr_study(index)]}, target=str(target),
                                        options={"driver": driver})
        worker = MediaWorker(config, index, stopping)
        worker._work(queue.claim(worker.claimant, 60))
        return queue.list(ids=[job_id])[0].to_dict()
    finally:
        index.close()


def _mr_study(index) -> str:
    return index.tree()[0].studies[0].study_instance_uid


def test_worker_refuses_a_target_it_did_not_write_and_gives_a_job_back_when_stopping(archive, tmp_path):
    """A target holding someone else's files, or a file where the folder should be, fails the
    try with the reason (retried); a sender stopping between two objects gives the job back
    untried and leaves neither a partial file-set nor the target."""
    import threading

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "NOTES.TXT").write_text("not ours\n")
    job = _run_one(archive, foreign, threading.Event())
    assert job["state"] == "pending" and job["attempts"] == 1
    assert "is not empty and no earlier export of this job wrote it" in job["error"]
    assert sorted(p.name for p in foreign.iterdir()) == ["NOTES.TXT"]

    a_file = tmp_path / "a-file"
    a_file.write_text("in the way\n")
    job = _run_one(archive, a_file, threading.Event())
    assert job["error"] == f"target {a_file} exists and is not a folder: move it away or change the target"

    target = tmp_path / "stopped"
    job = _run_one(archive, target, _StopAfter(2))
    assert job["state"] == "pending" and job["attempts"] == 0 and job["error"] is None, job
    assert not target.exists() and [p.name for p in tmp_path.iterdir() if ".partial-" in p.name] == []


def test_worker_writes_an_iso_image_job(archive, tmp_path):
    """The same job through the `iso` driver: OUT/VOL001.iso, verified through pycdlib."""
    import threading

    from gateway_plugins.media_drivers import IsoDriver

    job = _run_one(archive, tmp_path / "iso", threading.Event(), driver="iso")
    assert job["state"] == "done" and job["progress"] == "4/4", job
    back = IsoDriver().read_back(tmp_path / "iso" / "VOL001.iso")
    assert "DICOMDIR" in back and len(back) == 5
