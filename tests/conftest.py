"""Shared fixtures: free ports, gateways in-process and as a real `serve` process."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"
DCMTK = Path("/usr/bin")

# Test plugins (tests/plugins/*.py) load through config `[plugins] modules`.
sys.path.insert(0, str(TEST_PLUGINS))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


# scripts/test.sh installs every optional peer (DCMTK, Orthanc, PostgreSQL, psycopg) and
# sets this, so that there a missing one fails the test instead of skipping it quietly.
REQUIRE_PEERS = os.environ.get("DICOM_GATEWAY_REQUIRE_PEERS") == "1"


def missing_component(why: str) -> None:
    """Skip for a missing optional system component, naming it; a failure where
    scripts/test.sh promised to install it (DICOM_GATEWAY_REQUIRE_PEERS=1)."""
    if REQUIRE_PEERS:
        pytest.fail(f"{why} — scripts/test.sh installs it, so here its absence is a failure", pytrace=False)
    pytest.skip(why)


def dcmtk(tool: str) -> str:
    path = DCMTK / tool
    if not path.exists():
        missing_component(f"DCMTK {tool} not installed (scripts/test.sh installs it)")
    return str(path)


def write_config(directory: Path, gateway_toml: str, **files: str) -> Path:
    """Write gateway.toml and other files (name 'remotes/x.toml' -> content)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "gateway.toml").write_text(textwrap.dedent(gateway_toml))
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content))
    return directory


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` s; reaped either way (a peer a test started)."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):
    """Poll ``predicate`` until it gives a true value (returned); AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def third_party_plugins(root: Path, modules: dict[str, str]) -> dict[str, str]:
    """A minimal installed distribution (a ``.dist-info`` with entry points) in
    ``root`` — what ``pip install`` leaves — holding one plugin module per
    ``{name: source}``, and the environment that finds it."""
    dist = root / "thirdparty_demo-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[dicom_gateway]\n" + "".join(f"{name} = {name}_plugin\n" for name in modules))
    for name, source in modules.items():
        (root / f"{name}_plugin.py").write_text(textwrap.dedent(source))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    return env


def basic_toml(port: int, data_dir: Path, *, ae_titles=("DICOM_GATEWAY",), receive_path="rust",
               modules=(), extra_node="", extra="") -> str:
    return f"""
[node]
ae_title = "{ae_titles[0]}"
data_dir = "{data_dir}"
workers = 1
receive_path = "{receive_path}"
log_format = "text"
{extra_node}

[[listeners]]
port = {port}
bind = "127.0.0.1"
ae_titles = {list(ae_titles)!r}

[http]
enabled = false

[plugins]
modules = {list(modules)!r}
{extra}
""".replace("'", '"')


def write_cts(directory: Path, n: int, *, study: str | None = None, series: str | None = None,
              uid=None, patient_id: str = "TEST-1", patient_name: str = "Test^CT") -> list[Path]:
    """``n`` small CT objects of one series as Part 10 files (Explicit VR LE), named
    by SOP Instance UID; ``uid(i)`` gives the i-th instance's UID (default: fresh)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ct = "1.2.840.10008.5.1.4.1.1.2"
    directory.mkdir(parents=True, exist_ok=True)
    study = study or generate_uid()
    series = series or generate_uid()
    paths = []
    for i in range(n):
        ds = Dataset()
        ds.SOPClassUID = ct
        ds.SOPInstanceUID = uid(i) if uid else generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName, ds.Modality = patient_id, patient_name, "CT"
        ds.InstanceNumber = i + 1
        ds.Rows = ds.Columns = 8
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = bytes([i % 256, 0]) * 64
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ct
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


class InProcessGateway:
    """A Worker running in this process, for tests that inspect internals, and
    (``sender=True``) the forward queue's sender as a thread, so routed objects
    are forwarded as by `serve`'s sender process."""

    def __init__(self, config_dir: Path, sender: bool = True) -> None:
        from gateway.config import load_config
        from gateway.worker import Worker

        self.config_dir = config_dir
        config = load_config(config_dir)
        self.worker = Worker(config, config_dir).start()
        self.port = config.listeners[0].port
        self.sender = None
        if sender:
            from gateway.forward import SenderService

            self.sender = SenderService(config, config_dir,
                                        publish_dir=Path(config.node.data_dir) / "run").start()
        wait_port(self.port)

    def stop(self) -> None:
        if self.sender is not None:
            self.sender.stop(timeout=10)
        self.worker.shutdown(grace=2.0)


@pytest.fixture
def inprocess_gateway(tmp_path):
    started: list[InProcessGateway] = []

    def start(toml: str, sender: bool = True, **files: str) -> InProcessGateway:
        gw = InProcessGateway(write_config(tmp_path / f"config{len(started)}", toml, **files), sender=sender)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()


class GatewayProcess:
    """`dicom-gateway serve` as operators run it."""

    def __init__(self, args: list[str], port: int, env: dict | None = None, cwd: Path | None = None,
                 python: str | None = None) -> None:
        env = dict(env or {})
        path = [env.pop("PYTHONPATH", None), str(TEST_PLUGINS), os.environ.get("PYTHONPATH")]
        full_env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, path)), **env)
        self.log_path = Path(cwd or ".") / "gateway.log"
        self.log = open(self.log_path, "wb")
        exe = python or shutil.which("dicom-gateway") or sys.executable  # python: another environment's
        cmd = [exe] + args if exe.endswith("dicom-gateway") else [exe, "-m", "gateway.cli"] + args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
        self.port = port
        try:
            wait_port(port)
        except TimeoutError:
            self.stop()
            raise AssertionError("gateway did not start:\n" + self.output())

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{text!r} not in gateway output:\n{self.output()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def gateway_process(tmp_path):
    started: list[GatewayProcess] = []

    def start(args: list[str], port: int, **kw) -> GatewayProcess:
        gp = GatewayProcess(args, port, cwd=tmp_path, **kw)
        started.append(gp)
        return gp

    yield start
    for gp in started:
        gp.stop()


# ---- the project's test corpus (gateway.testing.corpus) ----

@pytest.fixture(scope="session")
def corpus_small(tmp_path_factory) -> Path:
    """The project's test corpus (gateway.testing.corpus), small profile, all three syntaxes:
    OUT/{implicit,explicit-le,explicit-be}/TYPE/*.dcm and OUT/manifest.json. Generated here, in
    every checkout: tests never skip for want of test data."""
    from gateway.testing.corpus import generate

    out = tmp_path_factory.mktemp("corpus_small")
    generate(out, profile="small", syntax="all")
    return out


# ---- PostgreSQL: a throwaway cluster on a loopback port ---------------------------------

def _pg_bin(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / tool).exists():
            return str(d / tool)
    return None


@pytest.fixture(scope="session")
def pg_server():
    """Base URL of a PostgreSQL cluster made with initdb/pg_ctl in a temp dir (fsync off)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        missing_component("PostgreSQL binaries (initdb, pg_ctl) not installed: apt-get install -y postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing_component('psycopg not installed: pip install "psycopg[binary]"')
    base = Path(tempfile.mkdtemp(prefix="gw-index-pg-"))
    kw: dict = {"capture_output": True, "text": True, "cwd": base}
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            user = pwd.getpwnam("nobody")
        os.chown(base, user.pw_uid, user.pw_gid)
        kw.update(user=user.pw_uid, group=user.pw_gid)
    port = free_port()
    r = subprocess.run([initdb, "-D", str(base / "data"), "-U", "gw", "-A", "trust", "--no-locale",
                        "-E", "UTF8", "--no-sync"], **kw)
    if r.returncode:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"initdb failed: {r.stderr}")
    r = subprocess.run([pg_ctl, "-D", str(base / "data"), "-l", str(base / "log"), "-w", "-t", "60", "-o",
                        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start"], **kw)
    if r.returncode:
        log = (base / "log").read_text(errors="replace") if (base / "log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {r.stderr}\n{log}")
    try:
        yield f"postgresql+psycopg://gw@127.0.0.1:{port}"
    finally:
        subprocess.run([pg_ctl, "-D", str(base / "data"), "-m", "immediate", "stop"], **kw)
        shutil.rmtree(base, ignore_errors=True)
