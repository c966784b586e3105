"""Latest demographics (QRS-7): ``dicom-gateway patient update`` corrects a patient in the
index; DCMTK findscu answers the corrected values; every object leaving by C-MOVE (movescu →
storescp), C-GET (getscu) and forwarding (a route to storescp) carries them, checked with
dcmdump; the archived files keep their SHA-256; objects of a patient never corrected still
leave byte for byte. The gateway holds the project's generated corpus."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from conftest import InProcessGateway, basic_toml, dcmtk, free_port, wait_port, write_config, write_cts
from test_qr_move import STORED_AS, _dataset_bytes, store

NODELAY = dict(os.environ, TCP_NODELAY="1")
PETCT_PATIENT, NEW_NAME = "ANC0000001", "CORRECTED^PATIENT^NEW"
MR_PATIENT = "GWT0000002"  # never corrected here: leaves byte for byte


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=60)


def _dcmdump_name(path: Path) -> str:
    out = subprocess.run([dcmtk("dcmdump"), "+P", "PatientName", "+P", "PatientSex", str(path)],
                         capture_output=True, text=True, timeout=30)
    return out.stdout


def _storescp(out: Path, port: int, ae: str) -> subprocess.Popen:
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([dcmtk("storescp"), "-aet", ae, "-od", str(out), "+uf", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=NODELAY)
    wait_port(port)
    return proc


def _wait_files(directory: Path, n: int, timeout: float = 20.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(p for p in directory.iterdir() if p.is_file())
        if len(files) >= n:
            time.sleep(0.2)  # the last one written completely
            return files
        time.sleep(0.05)
    raise AssertionError(f"{len(list(directory.iterdir()))} of {n} files arrived in {directory}")


@pytest.fixture(scope="module")
def qr(tmp_path_factory, corpus_small):
    from gateway.config import load_config
    from gateway.index.selection import stored_files

    tmp = tmp_path_factory.mktemp("qrdemo")
    port, dest_port, fwd_port = free_port(), free_port(), free_port()
    route = ('[[rule]]\nname = "fwd"\nmatch = { calling_ae = "FWDSRC" }\nforward = ["fwd"]\n')
    cfg = write_config(
        tmp / "cfg", basic_toml(port, tmp / "data", extra="[forwarding]\npoll_interval = 0.1\nidle_close = 0.5\n"),
        **{"remotes/dest.toml": f'ae_title = "DEST"\nhost = "127.0.0.1"\nport = {dest_port}\n',
           "remotes/fwd.toml": f'ae_title = "FWD"\nhost = "127.0.0.1"\nport = {fwd_port}\n',
           "routes/fwd.toml": route})
    gw = InProcessGateway(cfg, sender=True)
    manifest = json.loads((corpus_small / "manifest.json").read_text())
    files = [corpus_small / f["path"] for f in manifest["files"]
             if f["syntax"] == STORED_AS.get(f["type"], "explicit-le") and f["type"] != "GENIE"]
    store(port, files)
    config = load_config(cfg)
    archived = {f.sop_instance_uid: (f.path, hashlib.sha256(f.path.read_bytes()).hexdigest())
                for f in stored_files(config, patients=[PETCT_PATIENT, MR_PATIENT])}
    update = _cli("patient", "update", PETCT_PATIENT, "--name", NEW_NAME, "--sex", "O", "--by", "test",
                  "--config", str(cfg))
    yield {"gw": gw, "port": port, "cfg": cfg, "config": config, "manifest": manifest, "tmp": tmp,
           "dest_port": dest_port, "fwd_port": fwd_port, "archived": archived, "update": update}
    gw.stop()


def _study(qr, description: str) -> str:
    return next(s["study_instance_uid"] for s in qr["manifest"]["studies"] if s["study_description"] == description)


def _files(qr, **where) -> list[dict]:
    return [f for f in qr["manifest"]["files"] if f["syntax"] == STORED_AS.get(f["type"], "explicit-le")
            and all(f[k] == v for k, v in where.items())]


def test_patient_update_command_and_audit_line(qr):
    upd = qr["update"]
    assert upd.returncode == 0, upd.stderr
    assert f"PatientName: ANCHOR^PETCT^TEST -> {NEW_NAME}" in upd.stdout
    assert "PatientSex:" in upd.stdout and "-> O" in upd.stdout
    # the audit line in the log (stderr), naming who, the patient and the change
    assert "gateway.audit" in upd.stderr and PETCT_PATIENT in upd.stderr and "patient update (test)" in upd.stderr
    assert "'ANCHOR^PETCT^TEST' -> 'CORRECTED^PATIENT^NEW'" in upd.stderr
    # errors: unknown patient (1), invalid values (2)
    assert _cli("patient", "update", "NOPE", "--name", "X^Y", "--config", str(qr["cfg"])).returncode == 1
    bad = _cli("patient", "update", PETCT_PATIENT, "--birth-date", "20241341", "--config", str(qr["cfg"]))
    assert bad.returncode == 2 and "not a date" in bad.stderr
    bad = _cli("patient", "update", PETCT_PATIENT, "--sex", "X", "--config", str(qr["cfg"]))
    assert bad.returncode == 2 and "M, F or O" in bad.stderr
    assert _cli("patient", "update", PETCT_PATIENT, "--config", str(qr["cfg"])).returncode == 2  # nothing to change


def test_findscu_answers_the_corrected_name(qr, tmp_path):
    out = subprocess.run([dcmtk("findscu"), "-S", "-aec", "DICOM_GATEWAY", "-X", "-od", str(tmp_path),
                          "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=corrected*", "-k", "PatientID",
                          "-k", "PatientSex", "-k", "StudyInstanceUID", "127.0.0.1", str(qr["port"])],
                         capture_output=True, text=True, timeout=30, env=NODELAY)
    assert out.returncode == 0, out.stderr
    answers = [pydicom.dcmread(p) for p in sorted(tmp_path.glob("rsp*.dcm"))]
    assert len(answers) == 2  # the PET-CT and the renogram study of the patient
    assert {str(a.PatientName) for a in answers} == {NEW_NAME}
    assert {a.PatientSex for a in answers} == {"O"} and {a.PatientID for a in answers} == {PETCT_PATIENT}
    (tmp_path / "old").mkdir()
    old = subprocess.run([dcmtk("findscu"), "-S", "-aec", "DICOM_GATEWAY", "-X", "-od", str(tmp_path / "old"),
                          "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=ANCHOR*", "-k", "StudyInstanceUID",
                          "127.0.0.1", str(qr["port"])], capture_output=True, text=True, timeout=30, env=NODELAY)
    assert old.returncode == 0 and not list((tmp_path / "old").iterdir())  # the old name no longer matches


def _archive_untouched(qr) -> None:
    for uid, (path, digest) in qr["archived"].items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"archived file of {uid} changed"


def test_movescu_to_storescp_carries_the_correction(qr, tmp_path):
    proc = _storescp(tmp_path / "in", qr["dest_port"], "DEST")
    try:
        study = _study(qr, "PET-CT WB FDG")
        expected = _files(qr, study_instance_uid=study)
        out = subprocess.run([dcmtk("movescu"), "-v", "-S", "-aec", "DICOM_GATEWAY", "-aem", "DEST",
                              "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                              "127.0.0.1", str(qr["port"])], capture_output=True, text=True, timeout=60, env=NODELAY)
        assert "Received Final Move Response (Success)" in out.stdout + out.stderr, out.stdout + out.stderr
        got = _wait_files(tmp_path / "in", len(expected))
        for path in got:
            dump = _dcmdump_name(path)
            assert f"[{NEW_NAME}]" in dump and "[O]" in dump, dump
            ds = pydicom.dcmread(path)
            stored = pydicom.dcmread(qr["archived"][str(ds.SOPInstanceUID)][0])
            assert str(stored.PatientName) == "ANCHOR^PETCT^TEST"
            # everything else as stored (values; CT and PT are converted to Explicit VR LE on the way)
            for elem in stored:
                if elem.keyword not in ("PatientName", "PatientSex") and elem.tag != 0x7FE00010:
                    assert ds[elem.tag].value == elem.value, (ds.SOPInstanceUID, elem.keyword)
            if "PixelData" in stored:
                assert (ds.pixel_array == stored.pixel_array).all()
        assert {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in got} == \
            {f["sop_instance_uid"] for f in expected}
        # a patient never corrected: byte for byte after the File Meta
        for p in got:
            p.unlink()
        mr = _files(qr, type="MR")
        out = subprocess.run([dcmtk("movescu"), "-S", "-aec", "DICOM_GATEWAY", "-aem", "DEST",
                              "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={mr[0]['study_instance_uid']}",
                              "127.0.0.1", str(qr["port"])], capture_output=True, text=True, timeout=60, env=NODELAY)
        got = _wait_files(tmp_path / "in", len(mr))
        for path in got:
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            assert _dataset_bytes(path) == _dataset_bytes(qr["archived"][uid][0])
    finally:
        proc.terminate()
        proc.wait(10)
    _archive_untouched(qr)


def test_getscu_carries_the_correction(qr, tmp_path):
    sc = _files(qr, type="SC")
    out = subprocess.run([dcmtk("getscu"), "-v", "-S", "-aec", "DICOM_GATEWAY", "-od", str(tmp_path),
                          "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={sc[0]['study_instance_uid']}",
                          "-k", f"SeriesInstanceUID={sc[0]['series_instance_uid']}", "127.0.0.1", str(qr["port"])],
                         capture_output=True, text=True, timeout=60, env=NODELAY)
    assert "Received C-GET Response (Success)" in out.stdout + out.stderr, out.stdout + out.stderr
    got = sorted(tmp_path.iterdir())
    assert len(got) == len(sc)
    for path in got:
        assert f"[{NEW_NAME}]" in _dcmdump_name(path)
    _archive_untouched(qr)


def test_forwarding_carries_the_correction_and_later_objects_do_not_undo_it(qr, tmp_path):
    from gateway.index import Index

    proc = _storescp(tmp_path / "fwd", qr["fwd_port"], "FWD")
    try:
        # a late CT of the corrected patient, still with the old name, and one of a new patient
        late = write_cts(tmp_path / "late", 2, patient_id=PETCT_PATIENT, patient_name="ANCHOR^PETCT^TEST")
        other = write_cts(tmp_path / "other", 1, patient_id="NEVER-CORRECTED", patient_name="Plain^Patient")
        subprocess.run([dcmtk("storescu"), "-aet", "FWDSRC", "-aec", "DICOM_GATEWAY", "127.0.0.1", str(qr["port"]),
                        *map(str, late + other)], check=True, capture_output=True, timeout=60, env=NODELAY)
        got = _wait_files(tmp_path / "fwd", 3)
        by_uid = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in got}
        for src in late:
            uid = str(pydicom.dcmread(src, stop_before_pixels=True).SOPInstanceUID)
            assert f"[{NEW_NAME}]" in _dcmdump_name(by_uid[uid])
        uid = str(pydicom.dcmread(other[0], stop_before_pixels=True).SOPInstanceUID)
        assert _dataset_bytes(by_uid[uid]) == _dataset_bytes(other[0])  # no correction: as received
    finally:
        proc.terminate()
        proc.wait(10)
    [patient] = Index(qr["config"].effective_database_url()).tree(patient_id=PETCT_PATIENT)
    assert patient.patient_name == NEW_NAME  # the late object's old name did not undo the correction


def test_update_patient_api_and_character_sets(tmp_path, corpus_small):
    """The Python API; a name the object's character set cannot carry switches the copy to
    ISO_IR 192 without changing any other text value."""
    from gateway.index import FileRecord, Index, extract_attributes
    from gateway.index.demographics import apply_demographics, update_patient
    from test_index import split_part10

    manifest = json.loads((corpus_small / "manifest.json").read_text())
    mr = next(f for f in manifest["files"] if f["type"] == "MR" and f["syntax"] == "explicit-le")
    idx = Index(f"sqlite:///{tmp_path / 'index.db'}")
    raw, ts = split_part10(corpus_small / mr["path"])
    with idx.transaction() as tx:
        tx.store_instance(extract_attributes(raw, ts), FileRecord(mr["path"], mr["size"], mr["sha256"], ts))
    with pytest.raises(LookupError):
        update_patient(idx, "NOPE", name="A^B")
    with pytest.raises(ValueError):
        update_patient(idx, MR_PATIENT, name="A^B^C^D^E^F")
    change = idx.update_patient(MR_PATIENT, name="Sato^Jürgen=佐藤^ユルゲン", other_ids=["X1", "X2"], actor="api-test")
    assert change.changed["PatientName"] == ("Müller^Jürgen", "Sato^Jürgen=佐藤^ユルゲン")
    stored = idx.find_instance(mr["sop_instance_uid"])
    assert dict(stored.demographics)["PatientName"] == "Sato^Jürgen=佐藤^ユルゲン"
    assert dict(stored.demographics)["OtherPatientIDs"] == "X1\\X2"
    ds = pydicom.dcmread(corpus_small / mr["path"])
    before = {e.keyword: e.value for e in ds if e.VR in ("LO", "SH", "PN", "ST", "LT") and e.keyword}
    assert ds.SpecificCharacterSet == "ISO_IR 100"
    assert apply_demographics(ds, stored.demographics)
    out = tmp_path / "out.dcm"
    ds.save_as(out, enforce_file_format=True)
    back = pydicom.dcmread(out)
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert str(back.PatientName) == "Sato^Jürgen=佐藤^ユルゲン" and list(back.OtherPatientIDs) == ["X1", "X2"]
    for keyword, value in before.items():
        if keyword not in ("PatientName", "OtherPatientIDs"):
            assert str(back[keyword].value) == str(value), keyword
    # already as corrected: nothing to change, the stored file would go byte for byte
    assert not apply_demographics(back, stored.demographics)
