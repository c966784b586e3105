"""Query/Retrieve SCU (QRU-1..QRU-5) against real peers: DCMTK dcmqrscp loaded with the
project's test corpus through DCMTK storescu, a gateway started here as the move
destination, Orthanc as a second archive, and small pynetdicom SCPs for the statuses
an archive rarely gives on purpose (A700 / A900 / C000) and for C-CANCEL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt

from conftest import basic_toml, dcmtk, free_port, missing_component, wait_port, write_config, stop_process

NODELAY = dict(os.environ, TCP_NODELAY="1")
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
ORTHANC = Path("/usr/sbin/Orthanc")
GW_AE = "GW_QRU"
#: DCMTK storescu proposes neither (the GENIE private class is unknown to it, Standalone
#: Curve is retired): the archives hold the rest of the corpus.
NOT_STORABLE = ("GENIE", "CURVE")


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    exe = shutil.which("dicom-gateway")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "gateway.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _no_traceback(run: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in run.stderr + run.stdout, run.stderr


# ---- peers ------------------------------------------------------------------------------------


class Archive:
    """dcmqrscp on loopback with its own config and storage area, loaded with the corpus."""

    def __init__(self, root: Path, corpus: Path, gateway_port: int) -> None:
        self.root = root
        self.corpus = corpus
        self.port = free_port()
        self.gateway_port = gateway_port
        self.aet = "QRSCP"
        db = root / "db"
        db.mkdir(parents=True)
        cfg = root / "dcmqrscp.cfg"
        cfg.write_text(f"""\
NetworkTCPPort  = {self.port}
MaxPDUSize      = 16384
MaxAssociations = 16

HostTable BEGIN
gateway = ({GW_AE}, 127.0.0.1, {gateway_port})
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
{self.aet}  {db}  RW  (200, 1024mb)  ANY
AETable END
""")
        self.log_path = root / "dcmqrscp.log"
        self.log = open(self.log_path, "wb")
        # --fork (the default): its single-process mode crashes on A-RELEASE (DCMTK 3.6.7).
        self.proc = subprocess.Popen([dcmtk("dcmqrscp"), "-v", "-c", str(cfg), str(self.port)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=NODELAY)
        wait_port(self.port)
        manifest = json.loads((corpus / "manifest.json").read_text())
        self.files = [f for f in manifest["files"] if f["syntax"] == "explicit-le" and f["type"] not in NOT_STORABLE]
        self.studies = manifest["studies"]
        self.patients = manifest["patients"]
        run = subprocess.run([dcmtk("storescu"), "-aec", self.aet, "127.0.0.1", str(self.port),
                              *[str(corpus / f["path"]) for f in self.files]],
                             capture_output=True, text=True, timeout=60, env=NODELAY)
        assert run.returncode == 0, run.stderr

    @property
    def spec(self) -> str:
        return f"{self.aet}@127.0.0.1:{self.port}"

    def associations(self) -> int:
        self.log.flush()
        return self.log_path.read_text(errors="replace").count("Association Received")

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


@pytest.fixture(scope="module")
def archive(tmp_path_factory, corpus_small):
    a = Archive(tmp_path_factory.mktemp("dcmqrscp"), corpus_small, free_port())
    yield a
    a.stop()


@pytest.fixture
def client():
    from gateway_plugins.qr_scu import QueryRetrieveSCU

    return QueryRetrieveSCU()


class ScriptedSCP:
    """A Q/R SCP (pynetdicom) that answers every C-FIND with ``answers`` then ``final``,
    waiting ``delay`` seconds before each answer and honouring C-CANCEL; it records the
    identifiers it received and how many associations it had."""

    def __init__(self, answers=(), final: int = 0x0000, delay: float = 0.0, move_final: int = 0x0000) -> None:
        self.port = free_port()
        self.answers = list(answers)
        self.final = final
        self.delay = delay
        self.move_final = move_final
        self.identifiers: list[Dataset] = []
        self.associations = 0
        self.cancelled = threading.Event()
        self.started = threading.Event()
        self.ae = AE("SCRIPTED")
        for uid in (STUDY_FIND, STUDY_MOVE):
            self.ae.add_supported_context(uid, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        self.ae.dimse_timeout = 10

    @property
    def spec(self) -> str:
        return f"SCRIPTED@127.0.0.1:{self.port}"

    def on_find(self, event):
        self.identifiers.append(event.identifier)
        self.started.set()
        for answer in self.answers:
            if self.delay:
                time.sleep(self.delay)
            if event.is_cancelled:
                self.cancelled.set()
                yield 0xFE00, None
                return
            yield 0xFF00, answer
        yield self.final, None

    def on_move(self, event):
        self.identifiers.append(event.identifier)
        yield 1  # one sub-operation
        yield self.move_final, None

    def on_open(self, event):
        self.associations += 1

    def __enter__(self) -> "ScriptedSCP":
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_FIND, self.on_find), (evt.EVT_C_MOVE, self.on_move),
                                                         (evt.EVT_CONN_OPEN, self.on_open)])
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()


def _study_answer(uid: str, name: str = "Doe^John", charset: str | None = None, **extra) -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = uid
    ds.PatientName = name
    for k, v in extra.items():
        setattr(ds, k, v)
    return ds


# ---- C-FIND against dcmqrscp ---------------------------------------------------------------------


def test_find_each_level_matches_the_corpus(archive, client):
    """QRU-1: Study Root C-FIND at STUDY, SERIES and IMAGE level; what dcmqrscp holds is the
    corpus it was loaded with; names in Latin-1 and UTF-8 decoded with the answers' own
    Specific Character Set (QRU-3)."""
    studies = list(client.find(archive.spec, []))
    want = {s["study_instance_uid"] for s in archive.studies}
    assert {s.uid for s in studies} == want
    names = {s.value("PatientID"): s.value("PatientName") for s in studies}
    assert names == {p["patient_id"]: p["patient_name"] for p in archive.patients}
    assert all(s.status in (0xFF00, 0xFF01) and s.level == "STUDY" for s in studies)

    by_series = Counter(f["series_instance_uid"] for f in archive.files)
    study = "2.25.192577320259874216277952495715153949241"  # PET-CT WB FDG
    series = list(client.find(archive.spec, [f"StudyInstanceUID={study}", "Modality"], level="series"))
    assert {s.uid for s in series} == {f["series_instance_uid"] for f in archive.files if f["study_instance_uid"] == study}
    ct = next(s for s in series if s.value("Modality") == "CT")
    images = list(client.find(archive.spec, [f"StudyInstanceUID={study}", f"0020,000E={ct.uid}"], level="image"))
    assert {i.uid for i in images} == {f["sop_instance_uid"] for f in archive.files
                                      if f["series_instance_uid"] == ct.uid}
    assert len(images) == by_series[ct.uid] == 4

    # A matching key (findscu vocabulary, wildcard, non-ASCII: sent as ISO_IR 192)
    hits = list(client.find(archive.spec, ["PatientName=Müller*"]))
    assert [h.value("PatientID") for h in hits] == ["GWT0000002"]


def test_find_recursive_one_association_tree_json_csv(archive, tmp_path):
    """QRU-2: `find --recursive`: STUDY, SERIES per study, IMAGE per series on ONE
    association; the tree's counts and the JSON/CSV are what the corpus implies."""
    before = archive.associations()
    run = _cli("find", archive.spec, "--recursive", "--json")
    assert run.returncode == 0, run.stderr
    assert archive.associations() - before == 1, "the recursion must stay on one association"
    tree = json.loads(run.stdout)
    got = {s["StudyInstanceUID"]: (len(s.get("children", [])), sum(len(se.get("children", [])) for se in s.get("children", [])))
           for s in tree}
    want = {}
    for s in archive.studies:
        files = [f for f in archive.files if f["study_instance_uid"] == s["study_instance_uid"]]
        want[s["study_instance_uid"]] = (len({f["series_instance_uid"] for f in files}), len(files))
    assert got == want

    text = _cli("find", archive.spec, "--recursive")
    assert text.returncode == 0, text.stderr
    n_series = len({f["series_instance_uid"] for f in archive.files})
    assert text.stdout.strip().splitlines()[-1] == (
        f"4 studies, {n_series} series, {len(archive.files)} images at {archive.spec}")
    assert "PET-CT WB FDG" in text.stdout and "4 series, 13 images" in text.stdout
    assert "Sato^Hanako=佐藤^花子=さとう^はなこ" in text.stdout

    csv_run = _cli("find", archive.spec, "--recursive", "--csv", "-k", "Modality=CT")
    assert csv_run.returncode == 0, csv_run.stderr
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(csv_run.stdout)))
    # -k Modality=CT is a series key: it goes to the series queries, every study is listed
    assert Counter(r["QueryRetrieveLevel"] for r in rows) == {"STUDY": 4, "SERIES": 1, "IMAGE": 4}
    assert {r["Modality"] for r in rows if r["QueryRetrieveLevel"] == "SERIES"} == {"CT"}


# ---- C-MOVE to a gateway started here --------------------------------------------------------------


def _gateway_config(tmp_path: Path, archive: Archive) -> str:
    return basic_toml(archive.gateway_port, tmp_path / "gw-data", ae_titles=(GW_AE,))


def test_move_series_arrives_in_our_index(archive, inprocess_gateway, tmp_path):
    """QRU-4: `move --series` (study UID looked up on the same association) to our own AE
    (the default destination): progress and summary, then the objects are in our index
    (`ls`)."""
    gw = inprocess_gateway(_gateway_config(tmp_path, archive), sender=False,
                           **{"remotes/archive.toml": f'ae_title = "{archive.aet}"\nhost = "127.0.0.1"\n'
                                                      f'port = {archive.port}\ndimse_timeout = 20\n'})
    pt = next(f for f in archive.files if f["type"] == "PT")
    run = _cli("move", "archive", "--series", pt["series_instance_uid"], "--config", str(gw.config_dir), "-v")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"to {GW_AE}: 0x0000 complete, no failures" in run.stdout
    assert "4 completed, 0 failed, 0 with warning" in run.stdout
    assert "in our index: 4 instances of the series (4 reported moved)" in run.stdout
    assert "pending: remaining" in run.stderr  # -v: the pending responses' counts
    ls = _cli("ls", "--config", str(gw.config_dir))
    assert ls.returncode == 0, ls.stderr
    assert pt["series_instance_uid"] in ls.stdout or "PT" in ls.stdout, ls.stdout


def test_move_to_unknown_destination_is_a801(archive, tmp_path):
    """QRU-4 / table 4-30: a destination the archive does not know: A801, said plainly, exit 1."""
    study = archive.studies[2]["study_instance_uid"]
    run = _cli("move", archive.spec, "--study", study, "--dest", "NOBODY_KNOWS", "--data-dir", str(tmp_path / "d"))
    _no_traceback(run)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "0xA801 refused: move destination unknown" in run.stdout
    assert "0 completed" in run.stdout


def test_get_series_imported_into_the_archive(archive, tmp_path):
    """C-GET (an option beside C-MOVE): the objects come back on our association and are
    imported into the gateway's archive through the import path."""
    cfg = write_config(tmp_path / "cfg", f'[node]\ndata_dir = "{tmp_path / "data"}"\nlog_format = "text"\n')
    mr = [f for f in archive.files if f["type"] == "MR"]
    run = _cli("get", archive.spec, "--series", mr[0]["series_instance_uid"], "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "imported into the archive: 4" in run.stdout
    ls = _cli("ls", "--config", str(cfg))
    assert "GWT0000002" in ls.stdout, ls.stdout


def _record_associations(monkeypatch) -> list:
    """The association each Session of gateway_plugins.qr_scu opens, as it opened it."""
    from gateway_plugins import qr_scu

    opened: list = []
    real_open = qr_scu.Session.open

    def open_and_record(self):
        real_open(self)
        opened.append(self.assoc)
        return self

    monkeypatch.setattr(qr_scu.Session, "open", open_and_record)
    return opened


@pytest.mark.parametrize("receive_path", ["rust", "pynetdicom"])
def test_get_api_on_both_requestor_paths(archive, client, tmp_path, monkeypatch, receive_path):
    """C-GET on the Rust requestor (the default) and on plain pynetdicom: the C-STORE
    sub-operations on our association are answered as they come, so every object of the
    series is written, byte-for-byte dcmqrscp's data set, well within the DIMSE timeout
    (the Rust path once queued them for its paused reactor: both sides waited it out)."""
    from pydicom import dcmread

    from gateway.config import load_config
    from gateway.net.requestor import GatewayRequestor

    cfg = write_config(tmp_path / "cfg", f'[node]\ndata_dir = "{tmp_path / "data"}"\nreceive_path = "{receive_path}"\n',
                       **{"remotes/archive.toml": f'ae_title = "{archive.aet}"\nhost = "127.0.0.1"\n'
                                                  f'port = {archive.port}\ndimse_timeout = 15\n'})
    opened = _record_associations(monkeypatch)
    ct = [f for f in archive.files if f["type"] == "CT"]
    started = time.monotonic()
    result = client.get("archive", "series", [ct[0]["series_instance_uid"]], tmp_path / "out",
                        config=load_config(cfg), study_uid=ct[0]["study_instance_uid"])
    took = time.monotonic() - started
    assert [isinstance(a, GatewayRequestor) for a in opened] == [receive_path == "rust"]
    assert result.ok, result.message
    assert (result.completed, result.failed, result.warning) == (len(ct), 0, 0)
    assert took < 10, f"C-GET took {took:.1f} s: sub-operations waited for a timeout"
    got = {dcmread(p).SOPInstanceUID: p for p in result.stored}
    assert set(got) == {f["sop_instance_uid"] for f in ct}
    for f in ct:  # in whichever uncompressed syntax the archive chose: the same object
        received, original = dcmread(got[f["sop_instance_uid"]]), dcmread(archive.corpus / f["path"])
        assert (received.SOPClassUID, received.PatientID) == (original.SOPClassUID, original.PatientID)
        assert (received.pixel_array == original.pixel_array).all()


class ScriptedGetSCP:
    """A pynetdicom Study Root C-GET SCP that sends ``objects`` back as C-STORE
    sub-operations, ``delay`` seconds apart, and honours C-CANCEL (FE00)."""

    def __init__(self, objects: list, delay: float = 0.0) -> None:
        self.port = free_port()
        self.objects = objects
        self.delay = delay
        self.cancelled = threading.Event()
        self.ae = AE("GETSCP")
        self.ae.add_supported_context("1.2.840.10008.5.1.4.1.2.2.3", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        self.ae.add_supported_context(STUDY_FIND, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        # The role the requester proposes (Storage SCP for the C-STORE sub-operations) is accepted.
        self.ae.add_supported_context("1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"],
                                      scu_role=True, scp_role=True)
        self.ae.dimse_timeout = 10

    @property
    def spec(self) -> str:
        return f"GETSCP@127.0.0.1:{self.port}"

    def on_get(self, event):
        yield len(self.objects)
        for ds in self.objects:
            if event.is_cancelled:
                self.cancelled.set()
                yield 0xFE00, None
                return
            time.sleep(self.delay)
            yield 0xFF00, ds

    def __enter__(self) -> "ScriptedGetSCP":
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_GET, self.on_get)])
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()


def test_cancel_during_get_on_the_rust_path(client, tmp_path, monkeypatch):
    """QRU-5 for C-GET on the Rust requestor: cancelled after two objects, the archive ends
    with FE00, the objects that came are written, and the association is still usable
    (a second C-GET on it brings everything)."""
    from pydicom import dcmread

    from conftest import write_cts
    from gateway.net.requestor import GatewayRequestor
    from gateway_plugins.qr_scu import RetrieveResult
    from gateway_plugins.qr_scu_keys import build_identifier

    objects = [dcmread(p) for p in write_cts(tmp_path / "src", 12)]
    opened = _record_associations(monkeypatch)
    with ScriptedGetSCP(objects, delay=0.1) as scp:
        s = client.session(scp.spec, operations=("find", "get"), store_dir=tmp_path / "out",
                           store_classes=["1.2.840.10008.5.1.4.1.1.2"])
        (tmp_path / "out").mkdir()
        with s:
            assert isinstance(opened[0], GatewayRequestor)
            ident = build_identifier("STUDY", [], upper={"StudyInstanceUID": str(objects[0].StudyInstanceUID)},
                                     defaults=False)

            def cancel_after_two(progress: RetrieveResult) -> None:
                if progress.completed == 2:
                    threading.Thread(target=s.cancel).start()

            started = time.monotonic()
            first = s.retrieve("get", ident, on_progress=cancel_after_two)
            assert first.cancelled, first.message
            assert scp.cancelled.is_set() and 2 <= first.completed < len(objects)
            assert time.monotonic() - started < 8
            assert len(first.stored) == first.completed
            s.stored.clear()
            scp.delay = 0.0
            again = s.retrieve("get", ident)
            assert again.ok and again.completed == len(objects), again.message
            assert s.assoc.is_established
    assert {dcmread(p).SOPInstanceUID for p in (tmp_path / "out").iterdir()} == {o.SOPInstanceUID for o in objects}


# ---- failures an operator must understand -------------------------------------------------------------


def test_remote_down_is_one_line_exit_3(tmp_path):
    port = free_port()  # nothing listens there
    for cmd in (["find", f"NOONE@127.0.0.1:{port}"], ["move", f"NOONE@127.0.0.1:{port}", "--study", "1.2.3"]):
        run = _cli(*cmd, "--data-dir", str(tmp_path / "d"))
        _no_traceback(run)
        assert run.returncode == 3, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "no association" in lines[0] and str(port) in lines[0], run.stderr


@pytest.mark.parametrize("status, words", [(0xA700, "refused: out of resources"),
                                           (0xA900, "failed: identifier does not match SOP class"),
                                           (0xC000, "failed: unable to process")])
def test_find_failure_statuses(tmp_path, status, words):
    """Table 4-28: A700 / A900 / Cxxx end the query: the answers before it are kept (API),
    the command says what it means in one line and exits 1."""
    from gateway_plugins.qr_scu import QueryRetrieveError, QueryRetrieveSCU

    with ScriptedSCP([_study_answer("1.2.3.1")], final=status) as scp:
        got = []
        with pytest.raises(QueryRetrieveError) as info:
            for r in QueryRetrieveSCU().find(scp.spec, []):
                got.append(r.uid)
        assert got == ["1.2.3.1"] and info.value.status == status
        run = _cli("find", scp.spec, "--data-dir", str(tmp_path / "d"))
    _no_traceback(run)
    assert run.returncode == 1
    assert f"0x{status:04X} {words}" in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_charset_sent_at_every_level_extra_keys_kept(client):
    """QRU-3: Specific Character Set in every identifier of a recursive query (ISO_IR 192
    when a key is non-ASCII, else ISO_IR 100); an answer in Latin-1 decoded with its own
    character set; keys nobody asked for, and answers that do not match, are kept."""
    answers = [_study_answer("1.2.3.1", "Müller^Jürgen", "ISO_IR 100", InstitutionName="Extra Klinik"),
               _study_answer("1.2.3.2", "Other^Not^Matching")]
    with ScriptedSCP(answers) as scp:
        found = list(client.find(scp.spec, ["PatientName=Mü*"], recursive=True))
        assert scp.associations == 1
        levels = [str(i.QueryRetrieveLevel) for i in scp.identifiers]
        assert levels == ["STUDY", "SERIES", "SERIES"]  # the scripted SCP answers studies at every level...
        assert {str(i.SpecificCharacterSet) for i in scp.identifiers} == {"ISO_IR 192"}
        assert [f.value("PatientName") for f in found] == ["Müller^Jürgen", "Other^Not^Matching"]
        assert found[0].value("InstitutionName") == "Extra Klinik"
        scp.identifiers.clear()
        list(client.find(scp.spec, ["PatientID=P1"]))
        assert str(scp.identifiers[0].SpecificCharacterSet) == "ISO_IR 100"


def test_ctrl_c_during_find_sends_c_cancel_exit_130(tmp_path):
    """QRU-5: Ctrl-C while answers are pending: C-CANCEL, the SCP ends with FE00, exit 130."""
    answers = [_study_answer(f"1.2.3.{i}") for i in range(200)]
    with ScriptedSCP(answers, delay=0.05) as scp:
        exe = shutil.which("dicom-gateway")
        cmd = [exe] if exe else [sys.executable, "-m", "gateway.cli"]
        proc = subprocess.Popen(cmd + ["find", scp.spec, "--data-dir", str(tmp_path / "d")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert scp.started.wait(20), "the C-FIND never arrived"
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, err
        assert scp.cancelled.wait(5), "the SCP saw no C-CANCEL"
    assert "C-CANCEL" in err and "Traceback" not in err


def test_cancel_from_another_thread(client):
    """QRU-5 in the API: Session.cancel() from another thread ends the answers (FE00)."""
    answers = [_study_answer(f"1.2.3.{i}") for i in range(200)]
    with ScriptedSCP(answers, delay=0.02) as scp:
        from gateway_plugins.qr_scu_keys import build_identifier

        with client.session(scp.spec) as s:
            got = []
            for r in s.find(build_identifier("STUDY", [])):
                got.append(r)
                if len(got) == 3:
                    threading.Thread(target=s.cancel).start()
            assert 3 <= len(got) < 200 and scp.cancelled.is_set()
            # leaving the loop early cancels too, and the association goes on after either
            scp.cancelled.clear()
            for n, _r in enumerate(s.find(build_identifier("STUDY", []))):
                if n == 1:
                    break
            assert scp.cancelled.wait(5) and s.assoc.is_established
        assert scp.associations == 1


# ---- Orthanc as a second archive ------------------------------------------------------------------------


class Orthanc:
    """Orthanc on loopback, loaded with the corpus by DCMTK storescu; C-FIND and C-GET
    allowed from any AE (C-GET answers on the requesting association)."""

    def __init__(self, root: Path, corpus: Path) -> None:
        self.port, http_port = free_port(), free_port()
        root.mkdir(parents=True)
        (root / "orthanc.json").write_text(json.dumps({
            "Name": "qr-scu-test", "DicomAet": "ORTHANC", "DicomPort": self.port, "HttpPort": http_port,
            "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True, "DicomAlwaysAllowGet": True,
            "DicomModalities": {"gateway": ["DICOM_GATEWAY", "127.0.0.1", 4]}, "Plugins": [],
        }))
        self.log = open(root / "orthanc.log", "wb")
        self.proc = subprocess.Popen([str(ORTHANC), str(root / "orthanc.json")], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=NODELAY)
        try:
            wait_port(self.port)
            manifest = json.loads((corpus / "manifest.json").read_text())
            self.files = [f for f in manifest["files"] if f["syntax"] == "explicit-le" and f["type"] not in NOT_STORABLE]
            run = subprocess.run([dcmtk("storescu"), "-aec", "ORTHANC", "127.0.0.1", str(self.port),
                                  *[str(corpus / f["path"]) for f in self.files]],
                                 capture_output=True, text=True, timeout=60, env=NODELAY)
            assert run.returncode == 0, run.stderr
        except BaseException:
            self.stop()
            raise

    @property
    def spec(self) -> str:
        return f"ORTHANC@127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, corpus_small):
    if not ORTHANC.exists():
        missing_component("Orthanc not installed (scripts/test.sh installs it)")
    o = Orthanc(tmp_path_factory.mktemp("orthanc") / "orthanc", corpus_small)
    yield o
    o.stop()


def test_find_orthanc(orthanc):
    """QRU-1/QRU-2 against Orthanc loaded with the corpus by storescu: the recursive tree."""
    tree = _cli("find", orthanc.spec, "--recursive", "--json")
    assert tree.returncode == 0, tree.stderr
    got = {s["StudyInstanceUID"]: sum(len(se.get("children", [])) for se in s.get("children", []))
           for s in json.loads(tree.stdout)}
    assert got == dict(Counter(f["study_instance_uid"] for f in orthanc.files))
    names = {s["PatientID"]: s["PatientName"] for s in json.loads(tree.stdout)}
    assert names["GWT0000002"] == "Müller^Jürgen"


def test_get_orthanc_imported_on_the_rust_path(orthanc, tmp_path):
    """`get` from Orthanc on the default (Rust) requestor path: a whole study comes back on
    our association — several SOP classes — and is imported into the archive."""
    cfg = write_config(tmp_path / "cfg", f'[node]\ndata_dir = "{tmp_path / "data"}"\nlog_format = "text"\n',
                       **{"remotes/orthanc.toml": f'ae_title = "ORTHANC"\nhost = "127.0.0.1"\n'
                                                  f'port = {orthanc.port}\ndimse_timeout = 15\n'})
    study = Counter(f["study_instance_uid"] for f in orthanc.files).most_common(1)[0][0]
    files = [f for f in orthanc.files if f["study_instance_uid"] == study]
    assert len({f["sop_class_uid"] for f in files}) > 1
    run = _cli("get", "orthanc", "--study", study, "--config", str(cfg), "-q", timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(files)} completed, 0 failed, 0 with warning" in run.stdout
    assert f"imported into the archive: {len(files)}," in run.stdout
    ls = _cli("ls", "--config", str(cfg))
    assert ls.returncode == 0, ls.stderr
    assert files[0]["patient_id"] in ls.stdout, ls.stdout
