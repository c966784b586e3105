"""The print queue (issue 14 items 3-5; PRN-7), print drivers and the ``print`` rule action,
against real peers: DCMTK dcmprscp instances (each with its own config on its own loopback
port) and, where dcmprscp cannot show it (associations released, a step to cancel before,
a printer that fails on purpose), a pynetdicom Print SCP from tests/test_print.py. Gateways
run as `dicom-gateway serve`; images come from the project's corpus generator."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pydicom
import pytest

from conftest import basic_toml, dcmtk, free_port, stop_process, third_party_plugins, wait_for, wait_port, write_config
from test_print import DCMPRSCP_CFG, FakePrinter, _printer_toml

NODELAY = dict(os.environ, TCP_NODELAY="1")


def _cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env)


def _cmd(*args: str) -> list[str]:
    exe = shutil.which("dicom-gateway")
    return [exe, *args] if exe else [sys.executable, "-m", "gateway.cli", *args]


class Dcmprscp:
    """DCMTK's Print SCP on its own port and folders; ``start()`` again after ``stop()`` reuses them."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root, self.port = root, port or free_port()
        self.db, self.log = root / "db", root / "scp.log"
        self.db.mkdir(parents=True, exist_ok=True)
        (root / "spool").mkdir(exist_ok=True)
        self.cfg = root / "dcmpstat.cfg"
        self.cfg.write_text(DCMPRSCP_CFG.format(db=self.db, spool=root / "spool", port=self.port))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Dcmprscp":
        out = self.log.open("a")
        self.proc = subprocess.Popen([dcmtk("dcmprscp"), "-c", str(self.cfg), "-p", "PRINTSCP", "+d"], stdout=out,
                                     stderr=subprocess.STDOUT, cwd=self.root, env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"})
        out.close()
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def associations(self) -> int:
        """Associations it accepted (its +d log dumps each A-ASSOCIATE-AC)."""
        return self.text().count("BEGIN A-ASSOCIATE-AC")

    def film_sizes(self) -> list[str]:
        """Film Size ID of each N-CREATE Film Box request, in the order received."""
        sizes = []
        for block in self.text().split("Message Type                  : N-CREATE RQ")[1:]:
            found = re.search(r"\(2010,0050\) CS \[([^\]]+)\]", block.split("Message Type", 1)[0])
            if found:
                sizes.append(found.group(1))
        return sizes

    def stored_prints(self) -> list[Path]:
        return sorted(self.db.glob("SP_*.dcm"))


@pytest.fixture
def printers(tmp_path):
    made: list[Dcmprscp] = []

    def make(name: str = "scp", port: int | None = None, start: bool = True) -> Dcmprscp:
        p = Dcmprscp(tmp_path / name, port)
        made.append(p)
        return p.start() if start else p

    yield make
    for p in made:
        p.stop()


class CountingPrinter(FakePrinter):
    """The pynetdicom Print SCP of test_print, also counting associations opened and
    released, holding N-ACTION while ``hold`` is set, and failing the first
    ``fail_sessions`` N-CREATE Film Session requests with 0x0110."""

    def __init__(self, fail_sessions: int = 0, **kw) -> None:
        from pynetdicom import evt

        super().__init__(**kw)
        self.fail_sessions = fail_sessions
        self.hold = threading.Event()
        self.in_action = threading.Event()
        self.opened = self.released = 0
        self.server.bind(evt.EVT_ESTABLISHED, self._opened)
        self.server.bind(evt.EVT_RELEASED, self._released)

    def _opened(self, event) -> None:
        with self.lock:
            self.opened += 1

    def _released(self, event) -> None:
        with self.lock:
            self.released += 1

    def n_create(self, event):
        if str(event.request.AffectedSOPClassUID) == "1.2.840.10008.5.1.1.1" and self.fail_sessions:
            self.fail_sessions -= 1
            self._log("N-CREATE", event, event.attribute_list)
            return 0x0110, None
        return super().n_create(event)

    def n_action(self, event):
        self.in_action.set()
        deadline = time.monotonic() + 8  # below the SCU's dimse_timeout: never a hang
        while self.hold.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        return super().n_action(event)


@pytest.fixture
def fake_printers():
    made: list[CountingPrinter] = []

    def start(**kw) -> CountingPrinter:
        made.append(CountingPrinter(**kw))
        return made[-1]

    yield start
    for p in made:
        p.hold.clear()
        p.stop()


def _config(tmp_path: Path, name: str, port: int, printers: dict[str, str], **files: str) -> Path:
    toml = basic_toml(port, tmp_path / f"{name}-data", ae_titles=("GW_PRINT",),
                      extra_node="shutdown_grace = 5",
                      extra="[forwarding]\npoll_interval = 0.2\nseries_quiet_time = 1\n")
    return write_config(tmp_path / name, toml, **{f"printers/{k}.toml": v for k, v in printers.items()}, **files)


def _jobs(cfg: Path) -> list[dict]:
    run = _cli("print", "ls", "--json", "--config", str(cfg))
    if run.returncode == 1 and "no index" in run.stderr:
        return []
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _all(cfg: Path, state: str, n: int):
    jobs = _jobs(cfg)
    return jobs if len(jobs) == n and all(j["state"] == state for j in jobs) else None


def _queue(cfg: Path, printer: str, *args: str) -> int:
    run = _cli("print", printer, *args, "--queue", "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    return int(re.search(r"queued print job (\d+)", run.stdout).group(1))


@pytest.fixture(scope="module")
def cts(corpus_small) -> list[str]:
    return [str(p) for p in sorted((corpus_small / "explicit-le" / "CT").glob("*.dcm"))]


# ---- the queue against dcmprscp ------------------------------------------------------------


def test_priority_order_fifo_one_association_kept(tmp_path, printers, gateway_process, cts):
    """PRN-7: jobs queued while no gateway serves are printed by `serve` HIGH before LOW and
    first-in first-out within a priority, all on one association (kept between jobs)."""
    scp = printers()
    port = free_port()
    cfg = _config(tmp_path, "gw", port, {"film": _printer_toml(scp.port, idle_release=30)})
    order = [("LOW", "8INX10IN"), ("HIGH", "10INX12IN"), ("LOW", "11INX14IN"), ("HIGH", "14INX17IN")]
    ids = [_queue(cfg, "film", cts[0], "--priority", prio, "--film", film) for prio, film in order]
    assert [j["state"] for j in _jobs(cfg)] == ["pending"] * 4
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    jobs = wait_for(lambda: _all(cfg, "done", 4), 40, f"jobs not done: {_jobs(cfg)}")
    by_start = [j["id"] for j in sorted(jobs, key=lambda j: j["started_at"])]
    assert by_start == [ids[1], ids[3], ids[0], ids[2]]
    assert scp.film_sizes() == ["10INX12IN", "14INX17IN", "8INX10IN", "11INX14IN"]
    assert len(scp.stored_prints()) == 4
    assert scp.associations() == 1  # four film sessions, one association
    assert all(j["attempts"] == 1 and "printed 1 film(s), 1 image(s)" in j["result"] for j in jobs)
    text = _cli("print", "ls", "--config", str(cfg)).stdout
    assert re.search(rf"^{ids[1]}\s+film\s+HIGH\s+done\s", text, re.M), text
    assert "Traceback" not in gp.output()


def test_two_printers_print_at_once(tmp_path, printers, gateway_process, cts):
    """One worker per printer: two dcmprscp instances get their jobs at the same time."""
    a, b = printers("a"), printers("b")
    port = free_port()
    cfg = _config(tmp_path, "gw", port, {"left": _printer_toml(a.port), "right": _printer_toml(b.port)})
    for _ in range(3):
        _queue(cfg, "left", *cts[:3])
        _queue(cfg, "right", *cts[:3])
    gateway_process(["serve", "--config", str(cfg)], port)
    jobs = wait_for(lambda: _all(cfg, "done", 6), 60, f"jobs not done: {_jobs(cfg)}")
    spans = {}
    for name in ("left", "right"):
        mine = [j for j in jobs if j["printer"] == name]
        spans[name] = (min(j["started_at"] for j in mine), max(j["done_at"] for j in mine))
    assert spans["left"][0] < spans["right"][1] and spans["right"][0] < spans["left"][1], spans  # they overlap
    # dcmprscp stores a Stored Print and a Hardcopy image per film: 3 jobs of 3 films each
    assert len(a.stored_prints()) == len(b.stored_prints()) == 9
    assert len(list(a.db.glob("HG_*.dcm"))) == len(list(b.db.glob("HG_*.dcm"))) == 9


def test_printer_down_then_up_retried(tmp_path, printers, cts):
    """retries: the command prints its job itself; the printer is down for the first try,
    comes up, and the retry after the backoff prints the job."""
    scp = printers(start=False)
    cfg = _config(tmp_path, "gw", free_port(),
                  {"film": _printer_toml(scp.port, retries=5, retry_backoff=1, association_timeout=2)})
    proc = subprocess.Popen(_cmd("print", "film", cts[0], "--config", str(cfg)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(j["attempts"] >= 1 for j in _jobs(cfg)), 20, "a first failed try")
        scp.start()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            stop_process(proc)
    assert proc.returncode == 0, out + err
    assert "try 1 failed:" in err and "trying again in" in err
    assert "printed 1 film(s), 1 image(s) on film" in out
    (job,) = _jobs(cfg)
    assert job["state"] == "done" and job["attempts"] >= 2 and "association refused" in job["last_error"]
    assert len(scp.stored_prints()) == 1


def test_restart_with_jobs_queued(tmp_path, printers, gateway_process, cts):
    """Jobs queued with --queue while the printer is down are retried by `serve`; it is
    stopped with SIGTERM with them still queued, the printer comes up, `serve` starts
    again and prints them."""
    scp = printers(start=False)
    port = free_port()
    cfg = _config(tmp_path, "gw", port, {"film": _printer_toml(scp.port, retries=50, retry_backoff=0.5,
                                                              association_timeout=2)})
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    ids = [_queue(cfg, "film", cts[0]), _queue(cfg, "film", *cts[1:3], "--format", "STANDARD\\2,1")]

    def retried():
        jobs = _jobs(cfg)
        return len(jobs) == 2 and all(j["attempts"] >= 1 and j["state"] in ("pending", "claimed") for j in jobs)

    wait_for(retried, 30, "failed tries")
    assert gp.stop() == 0
    queued = _jobs(cfg)
    # A try in flight when the sender exited stays claimed by a process that is gone: released at the next start.
    assert [j["id"] for j in queued] == ids and all(j["state"] in ("pending", "claimed") for j in queued), queued
    scp.start()
    gateway_process(["serve", "--config", str(cfg)], port)
    jobs = wait_for(lambda: _all(cfg, "done", 2), 40, f"not printed after the restart: {_jobs(cfg)}")
    assert [j["id"] for j in jobs] == ids
    assert len(scp.stored_prints()) == 2


def test_job_of_a_killed_command_printed_by_serve(tmp_path, fake_printers, gateway_process, cts):
    """A command killed (SIGKILL) in the middle of its job leaves it claimed by a process that is
    gone; the next `serve` on this host releases it and prints it."""
    fake = fake_printers()
    fake.hold.set()
    port = free_port()
    cfg = _config(tmp_path, "gw", port, {"fake": _printer_toml(fake.port, ae="FAKEPRN")})
    proc = subprocess.Popen(_cmd("print", "fake", cts[0], "--config", str(cfg)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert fake.in_action.wait(30), "the command never reached N-ACTION"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            stop_process(proc)
    fake.hold.clear()
    (job,) = _jobs(cfg)
    assert job["state"] == "claimed"
    gateway_process(["serve", "--config", str(cfg)], port)
    (job,) = wait_for(lambda: _all(cfg, "done", 1), 30, f"not printed: {_jobs(cfg)}")
    assert fake.ops().count("N-ACTION") == 2  # the killed try reached it, the second one printed


# ---- cancel, idle release, retries against the pynetdicom Print SCP ---------------------------


def test_cancel_pending_and_running(tmp_path, fake_printers, cts):
    """A pending job is cancelled at once and never reaches the printer; a running one stops
    before its next N-ACTION: the film box and session are deleted, `print ls` says so."""
    fake = fake_printers()
    cfg = _config(tmp_path, "gw", free_port(), {"fake": _printer_toml(fake.port, ae="FAKEPRN")})
    waiting = _queue(cfg, "fake", cts[0])
    run = _cli("print", "cancel", str(waiting), "--config", str(cfg))
    assert run.returncode == 0 and f"job {waiting}: cancelled" in run.stdout, run.stdout + run.stderr
    again = _cli("print", "cancel", str(waiting), "999", "--config", str(cfg))
    assert again.returncode == 1 and "already cancelled" in again.stdout and "job 999: no such job" in again.stdout

    fake.hold.set()
    proc = subprocess.Popen(_cmd("print", "fake", *cts[:3], "--config", str(cfg)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert fake.in_action.wait(30), "the job never reached N-ACTION"
        running = next(j["id"] for j in _jobs(cfg) if j["state"] == "claimed")
        run = _cli("print", "cancel", str(running), "--config", str(cfg))
        assert "cancelling" in run.stdout, run.stdout + run.stderr
        assert next(j for j in _jobs(cfg) if j["id"] == running)["state"] == "cancelling"
        fake.hold.clear()
        out, err = proc.communicate(timeout=30)
    finally:
        fake.hold.clear()
        if proc.poll() is None:
            stop_process(proc)
    assert proc.returncode == 1, out + err
    assert "cancelled while printing, before film 2: 1 of 3 film(s) printed" in err
    jobs = {j["id"]: j for j in _jobs(cfg)}
    assert jobs[waiting]["result"] == "cancelled before printing" and jobs[running]["state"] == "cancelled"
    # film 1 printed and deleted, film 2 never created, then the session deleted
    assert fake.ops()[-4:] == ["N-SET", "N-ACTION", "N-DELETE", "N-DELETE"], fake.ops()
    assert fake.ops().count("N-ACTION") == 1


def test_association_released_after_idle_release(tmp_path, fake_printers, gateway_process, cts):
    """Two jobs in a row share one association; it is released once the printer has been
    idle for idle_release seconds (seed 003 B 3.1.1.1), not before."""
    fake = fake_printers()
    port = free_port()
    cfg = _config(tmp_path, "gw", port, {"fake": _printer_toml(fake.port, ae="FAKEPRN", idle_release=8)})
    gateway_process(["serve", "--config", str(cfg)], port)
    _queue(cfg, "fake", cts[0])
    wait_for(lambda: _all(cfg, "done", 1), 30, "first job")
    _queue(cfg, "fake", cts[1])
    wait_for(lambda: _all(cfg, "done", 2), 30, "second job")
    finished = time.monotonic()
    assert (fake.opened, fake.released) == (1, 0)
    wait_for(lambda: fake.released == 1, 20, "the idle association released")
    assert time.monotonic() - finished >= 4  # idle_release is 8 s after the last job (seen here late by ≤ 2 s)
    assert fake.opened == 1 and fake.ops().count("N-ACTION") == 2


def test_retry_after_refused_film_session(tmp_path, fake_printers, gateway_process, cts):
    """A printer that refuses the first N-CREATE Film Session (0x0110): the queued job is
    retried after its backoff on a new association (PRN-8 aborted the first) and printed;
    with retries = 0 the same refusal fails the job."""
    fake = fake_printers(fail_sessions=1)
    port = free_port()
    cfg = _config(tmp_path, "gw", port, {"fake": _printer_toml(fake.port, ae="FAKEPRN", retries=2, retry_backoff=0.5),
                                         "once": _printer_toml(fake.port, ae="FAKEPRN")})
    gateway_process(["serve", "--config", str(cfg)], port)
    _queue(cfg, "fake", cts[0])
    (job,) = wait_for(lambda: _all(cfg, "done", 1), 30, f"not retried: {_jobs(cfg)}")
    assert job["attempts"] == 2 and "N-CREATE Film Session failed with 0x0110 (processing failure)" in job["last_error"]
    assert fake.opened == 2
    fake.fail_sessions = 1
    _queue(cfg, "once", cts[0])
    jobs = wait_for(lambda: [j for j in _jobs(cfg) if j["printer"] == "once" and j["state"] == "failed"], 30, "failed")
    assert jobs[0]["attempts"] == 1


# ---- the print rule action ------------------------------------------------------------------


RULE = """\
[[rule]]
name = "nm-sc-film"
match = {{ calling_ae = "NMWS", sop_class = "1.2.840.10008.5.1.4.1.1.7", modality = "NM" }}
action = "print"
[rule.print]
printer = "film"
priority = "HIGH"
copies = 2
format = 'STANDARD\\2,2'
"""


def test_route_action_prints_each_series(tmp_path, printers, gateway_process, corpus_small):
    """NM secondary captures from NMWS (DCMTK storescu) reach dcmprscp as one film per
    series once the series is complete; the same objects from another AE do not print."""
    scp = printers()
    port = free_port()
    cfg = _config(tmp_path, "gw", port, {"film": _printer_toml(scp.port, compose="boxes")},
                  **{"routes/print.toml": RULE.format()})
    from pydicom.uid import generate_uid

    sent: dict[str, list[str]] = {}
    for aet in ("OTHER", "NMWS"):  # a series of NM SCs from each: new UIDs, so neither is a duplicate
        out = tmp_path / aet
        out.mkdir()
        series = generate_uid()
        for n, src in enumerate(sorted((corpus_small / "explicit-le" / "SC").glob("*.dcm"))[:3]):
            ds = pydicom.dcmread(src)
            ds.Modality, ds.InstanceNumber, ds.SeriesInstanceUID = "NM", n + 1, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(out / f"{n}.dcm", enforce_file_format=True)
            sent.setdefault(aet, []).append(str(out / f"{n}.dcm"))
    paths = sent["NMWS"]
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    for aet in ("OTHER", "NMWS"):
        run = subprocess.run([dcmtk("storescu"), "-aet", aet, "-aec", "GW_PRINT", "127.0.0.1", str(port),
                              *sent[aet]], capture_output=True, text=True, timeout=60, env=NODELAY)
        assert run.returncode == 0, run.stderr
    (job,) = wait_for(lambda: _all(cfg, "done", 1), 40, f"no film: {_jobs(cfg)}\n{gp.output()[-2000:]}")
    assert job["rule"] == "nm-sc-film" and job["priority"] == "HIGH"
    assert job["series_instance_uid"] == str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)
    assert "printed 1 film(s), 3 image(s)" in job["result"]
    (sp,) = scp.stored_prints()
    stored = pydicom.dcmread(sp)
    assert stored.FilmBoxContentSequence[0].ImageDisplayFormat == "STANDARD\\2,2"
    assert sorted(int(b.ImageBoxPosition) for b in stored.ImageBoxContentSequence) == [1, 2, 3]
    assert re.search(r"\(2000,0010\) IS \[2\]", scp.text()) and re.search(r"\(2000,0020\) CS \[HIGH\]", scp.text())


# ---- configuration errors ------------------------------------------------------------------


def test_config_errors_name_file_and_line(tmp_path):
    """An unknown driver, a rule naming an unknown printer, a bad priority, a printer called
    like a subcommand: file:line: key messages, the config refused."""
    from gateway.config import load_config
    from gateway.runtime import PluginConfigError, build_runtime

    routes = textwrap.dedent("""\
        [[rule]]
        name = "a"
        action = "print"
        [rule.print]
        printer = "nowhere"

        [[rule]]
        name = "b"
        action = "print"
        [rule.print]
        printer = "film"
        priority = "URGENT"
        colour = true
        """)
    cfg = write_config(tmp_path / "cfg", f'[node]\ndata_dir = "{tmp_path / "d"}"\n', **{
        "printers/film.toml": 'ae_title = "P"\nhost = "127.0.0.1"\nport = 104\n',
        "printers/laser.toml": 'host = "127.0.0.1"\n\ndriver = "laserjet"\n',
        "printers/ls.toml": 'driver = "png"\n',
        "printers/half.toml": 'host = "127.0.0.1"\nport = 104\n',
        "routes/r.toml": routes})
    with pytest.raises(PluginConfigError) as err:
        build_runtime(load_config(cfg), 1)
    text = str(err.value)
    assert ("printers/laser.toml:3: key 'driver': no print driver named 'laserjet' (registered: dicom, png"
            in text), text
    assert "printers/half.toml:1: key 'ae_title': required key is missing (driver \"dicom\"" in text, text
    assert "printers/ls.toml: a printer cannot be called 'ls'" in text, text
    assert "routes/r.toml:5: key 'rule.print.printer': unknown printer 'nowhere'" in text, text
    assert "routes/r.toml:12: key 'rule.print.priority': Input should be 'HIGH', 'MED' or 'LOW'" in text, text
    assert "routes/r.toml:13: key 'rule.print.colour': unknown key" in text, text
    check = _cli("config", "check", str(cfg))
    assert check.returncode == 1 and "printers/laser.toml:3: key 'driver'" in check.stdout, check.stdout
    run = _cli("print", "laser", str(cfg / "gateway.toml"), "--config", str(cfg))
    assert run.returncode == 2 and "no print driver named 'laserjet'" in run.stderr, run.stderr


# ---- drivers ---------------------------------------------------------------------------------


def test_png_driver_writes_the_films_the_printer_gets(tmp_path, printers, cts):
    """driver = "png": one PNG per film, the same pixels dcmprscp stores for the dicom driver."""
    from gateway_plugins.print_render import read_png

    scp = printers()
    cfg = _config(tmp_path, "gw", free_port(), {
        "film": _printer_toml(scp.port, display_format="STANDARD\\2,1"),
        "sheets": _printer_toml(scp.port, display_format="STANDARD\\2,1", driver="png",
                                output=str(tmp_path / "films"))})
    run = _cli("print", "sheets", *cts[:3], "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    pngs = sorted((tmp_path / "films").glob("*.png"))
    assert [p.name for p in pngs] == ["job-1-1.png", "job-1-2.png"]
    run = _cli("print", "film", *cts[:3], "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    images = [pydicom.dcmread(p) for p in sorted(scp.db.glob("HG_*.dcm"), key=lambda p: p.stat().st_mtime_ns)]
    assert len(images) == 2
    for png, img in zip(pngs, images):
        w, h, _, pixels = read_png(png)
        assert (img.Columns, img.Rows) == (w, h) and bytes(img.PixelData)[:w * h] == pixels
    status = _cli("printer", "status", "sheets", "--config", str(cfg))
    assert status.returncode == 0 and status.stdout.startswith("sheets: NORMAL"), status.stdout + status.stderr


SITE_DRIVER = """\
import json
from gateway.hookspecs import hookimpl

class FilmLog:
    '''A site's non-DICOM printer: appends one JSON line per job to options.log.'''
    def __init__(self, printer, config):
        self.printer = printer
        self.log = printer.options["log"]
    def status(self):
        from gateway_plugins.print_scu import PrinterStatus
        return PrinterStatus("NORMAL", "", self.printer.name)
    def print(self, job):
        from gateway_plugins.print_scu import PrintResult
        with open(self.log, "a") as f:
            f.write(json.dumps({"printer": self.printer.name, "job": job.id, "films": len(job.films),
                                "size": [job.films[0].sheet.width, job.films[0].sheet.height],
                                "priority": job.priority, "copies": job.copies}) + "\\n")
        return PrintResult(len(job.films), job.images, [], None, note="logged")
    def close(self):
        pass

@hookimpl
def gateway_register_print_drivers(registry):
    registry.add("filmlog", FilmLog)
"""


def test_third_party_driver_used_when_a_printer_names_it(tmp_path, cts):
    """A plugin's driver (entry point, gateway_register_print_drivers) prints a job of a
    printer that names it; without the plugin the same printer file is refused."""
    log = tmp_path / "films.jsonl"
    env = third_party_plugins(tmp_path / "site", {"filmlog": SITE_DRIVER})
    cfg = _config(tmp_path, "gw", free_port(), {
        "site": f'driver = "filmlog"\nresolution = 10\nfilm_size = "8INX10IN"\n[options]\nlog = "{log}"\n'})
    run = _cli("print", "site", *cts[:2], "--copies", "3", "--priority", "LOW", "--config", str(cfg), env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "printed 2 film(s), 2 image(s) on site" in run.stdout
    (line,) = log.read_text().splitlines()
    assert json.loads(line) == {"printer": "site", "job": 1, "films": 2, "size": [80, 100], "priority": "LOW",
                                "copies": 3}
    assert _cli("config", "check", str(cfg), env=env).returncode == 0
    check = _cli("config", "check", str(cfg))
    assert check.returncode == 1 and "printers/site.toml:1: key 'driver': no print driver named 'filmlog'" in check.stdout
