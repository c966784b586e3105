"""Import server (STO-1..STO-11, DAT-1..DAT-4) against real senders:
DCMTK storescu/dcmsend and pynetdicom, with the project's test corpus (gateway.testing.corpus)."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pynetdicom import AE, _config

from conftest import basic_toml, dcmtk, free_port
from gateway.index import Index

NODELAY = dict(os.environ, TCP_NODELAY="1")
SYNTAX_UID = {"implicit": "1.2.840.10008.1.2", "explicit-le": "1.2.840.10008.1.2.1", "explicit-be": "1.2.840.10008.1.2.2"}
STORESCU_OPT = {"implicit": "-xi", "explicit-le": "-xe", "explicit-be": "-xb"}
GENIE = "1.2.840.113619.4.27"
CT = "1.2.840.10008.5.1.4.1.1.2"


def dataset_part(path: Path) -> bytes:
    """The bytes after a Part-10 file's File Meta group."""
    raw = path.read_bytes()
    assert raw[128:132] == b"DICM"
    group_length = struct.unpack("<I", raw[140:144])[0]
    return raw[144 + group_length:]


def storage_toml(port, data, **settings) -> tuple[str, dict]:
    files = {}
    if settings:
        body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
        files["plugins/storage.toml"] = body + "\n"
    return basic_toml(port, data), files


def start(inprocess_gateway, tmp_path, **settings):
    port = free_port()
    data = tmp_path / "data"
    toml, files = storage_toml(port, data, **settings)
    gw = inprocess_gateway(toml, **files)
    gw.data = data
    return gw


def stored_path(gw, study, series, sop) -> Path:
    return gw.data / "archive" / study / series / f"{sop}.dcm"


def send_files(port, paths, syntax_uid=None, calling="PYNETDICOM", called="DICOM_GATEWAY"):
    """pynetdicom, sending each file's bytes as they are (no re-encoding)."""
    ae = AE(ae_title=calling)
    metas = [dcmread(p, stop_before_pixels=True) for p in paths]
    for m in metas:
        ae.add_requested_context(m.file_meta.MediaStorageSOPClassUID, [syntax_uid or m.file_meta.TransferSyntaxUID])
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        return [int(assoc.send_c_store(p).Status) for p in paths]
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
        assoc.release()


def send_dataset(port, ds: Dataset, sop_class: str, syntax="1.2.840.10008.1.2.1"):
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
    assert assoc.is_established
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    try:
        rsp = assoc.send_c_store(ds)
        return int(rsp.Status), rsp.get("ErrorComment")
    finally:
        assoc.release()


def manifest(corpus) -> dict:
    return json.loads((corpus / "manifest.json").read_text())


@pytest.mark.parametrize("syntax", ["implicit", "explicit-le", "explicit-be"])
def test_corpus_from_dcmtk_storescu_is_kept_byte_exact_and_indexed(inprocess_gateway, tmp_path, corpus_small, syntax):
    # STO-3: GENIE order (proposer's priority) so storescu's first proposal is kept.
    gw = start(inprocess_gateway, tmp_path, syntax_policy="proposer-order")
    out = subprocess.run([dcmtk("storescu"), "-aec", "DICOM_GATEWAY", STORESCU_OPT[syntax], "-R", "-nh", "+sd", "+r",
                          "127.0.0.1", str(gw.port), str(corpus_small / syntax)],
                         capture_output=True, text=True, timeout=120, env=NODELAY)
    assert out.returncode == 0, out.stderr
    files = [f for f in manifest(corpus_small)["files"] if f["syntax"] == syntax]
    # storescu does not know the GENIE private SOP class (it skips those files): send them as they are.
    genie = [corpus_small / f["path"] for f in files if f["sop_class_uid"] == GENIE]
    assert send_files(gw.port, genie, calling="STORESCU") == [0, 0]
    for f in files:
        stored = stored_path(gw, f["study_instance_uid"], f["series_instance_uid"], f["sop_instance_uid"])
        assert stored.exists(), f["path"]
        assert dataset_part(stored) == dataset_part(corpus_small / f["path"]), f["path"]  # STO-5
        meta = dcmread(stored, stop_before_pixels=True).file_meta
        assert meta.TransferSyntaxUID == SYNTAX_UID[syntax]
        assert meta.SourceApplicationEntityTitle.strip() in ("STORESCU", "DCMSEND")
    idx = Index(gw.worker.runtime.config.effective_database_url())
    m = manifest(corpus_small)
    assert idx.stats()["instances"] == len(files)
    tree = {p.patient_id: p for p in idx.tree()}
    assert set(tree) == {p["patient_id"] for p in m["patients"]}
    assert len(tree["ANC0000001"].studies) == 2  # DAT-4
    for study in m["studies"]:
        node = next(s for p in tree.values() for s in p.studies if s.study_instance_uid == study["study_instance_uid"])
        assert node.number_of_instances == study["instances"]
        assert node.number_of_series == study["series"]
        assert node.accession_number == study["accession_number"]
    names = {p.patient_name for p in tree.values()}
    assert "Müller^Jürgen" in names and "Sato^Hanako=佐藤^花子=さとう^はなこ" in names  # DAT-3


@pytest.mark.parametrize("syntax", ["implicit", "explicit-le", "explicit-be"])
def test_corpus_from_dcmtk_dcmsend_is_kept_byte_exact(inprocess_gateway, tmp_path, corpus_small, syntax):
    """dcmsend proposes each file's own syntax (and the uncompressed others):
    whatever it sends must be kept as sent, with the accepted syntax in the File Meta."""
    gw = start(inprocess_gateway, tmp_path, syntax_policy="proposer-order")
    out = subprocess.run([dcmtk("dcmsend"), "-aec", "DICOM_GATEWAY", "-aet", "DCMSEND", "-nh", "+sd", "+r",
                          "127.0.0.1", str(gw.port), str(corpus_small / syntax)],
                         capture_output=True, text=True, timeout=120, env=NODELAY)
    assert out.returncode == 0, out.stdout + out.stderr
    files = [f for f in manifest(corpus_small)["files"] if f["syntax"] == syntax]  # GENIE too: dcmsend proposes it
    for f in files:
        stored = stored_path(gw, f["study_instance_uid"], f["series_instance_uid"], f["sop_instance_uid"])
        assert stored.exists(), f"{f['path']} not stored:\n{out.stdout}{out.stderr}"
        meta = dcmread(stored, stop_before_pixels=True).file_meta
        assert meta.SourceApplicationEntityTitle.strip() == "DCMSEND"
        if meta.TransferSyntaxUID == SYNTAX_UID[syntax]:
            assert dataset_part(stored) == dataset_part(corpus_small / f["path"]), f["path"]  # STO-5
        else:  # dcmsend proposed Explicit LE first and converted the file itself: same values
            ours, theirs = dcmread(stored), dcmread(corpus_small / f["path"])
            assert ours.PatientName == theirs.PatientName and ours.SOPClassUID == theirs.SOPClassUID
            if "PixelData" in theirs:
                assert (ours.pixel_array == theirs.pixel_array).all(), f["path"]
    idx = Index(gw.worker.runtime.config.effective_database_url())
    assert idx.stats()["instances"] == len(files)


def test_pynetdicom_sends_every_class_in_every_syntax(inprocess_gateway, tmp_path, corpus_small):
    gw = start(inprocess_gateway, tmp_path, syntax_policy="proposer-order")
    for syntax in ("implicit", "explicit-le", "explicit-be"):
        files = [f for f in manifest(corpus_small)["files"] if f["syntax"] == syntax]
        statuses = send_files(gw.port, [corpus_small / f["path"] for f in files])
        assert statuses == [0] * len(files), syntax
        for f in files:
            stored = stored_path(gw, f["study_instance_uid"], f["series_instance_uid"], f["sop_instance_uid"])
            assert dataset_part(stored) == dataset_part(corpus_small / f["path"])


@pytest.mark.parametrize("policy,accepted", [("prefer-explicit-le", "explicit-le"), ("proposer-order", "explicit-be")])
def test_syntax_selection_policy(inprocess_gateway, tmp_path, corpus_small, policy, accepted):
    """STO-3: Philips order (Explicit LE > Explicit BE > Implicit LE, the default)
    or GENIE's (the proposer's first), for one context proposing BE, LE, implicit."""
    gw = start(inprocess_gateway, tmp_path, syntax_policy=policy)
    ct = sorted((corpus_small / "explicit-be" / "CT").glob("*.dcm"))[0]
    # +C: one context with all three syntaxes (storescu otherwise proposes one
    # context per syntax, and every one of them is accepted).
    out = subprocess.run([dcmtk("storescu"), "-aec", "DICOM_GATEWAY", "-xb", "+C", "-R", "127.0.0.1", str(gw.port), str(ct)],
                         capture_output=True, text=True, timeout=60, env=NODELAY)
    assert out.returncode == 0, out.stderr
    ds = dcmread(ct, stop_before_pixels=True)
    stored = stored_path(gw, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert dcmread(stored, stop_before_pixels=True).file_meta.TransferSyntaxUID == SYNTAX_UID[accepted]
    if accepted == "explicit-be":
        assert dataset_part(stored) == dataset_part(ct)


def _ct(uid="1.2.826.0.1.3680043.10.1472.97.1", value=1, pixels=True) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = uid
    ds.PatientID = "DUP"
    ds.PatientName = "DUP^TEST"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.1472.97.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1472.97.3"
    ds.Modality = "CT"
    ds.InstanceNumber = value
    if pixels:
        ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 2, 2, 16, 16, 15
        ds.SamplesPerPixel, ds.PixelRepresentation, ds.PhotometricInterpretation = 1, 0, "MONOCHROME2"
        ds.PixelData = struct.pack("<4H", value, value, value, value)
    return ds


@pytest.mark.parametrize("policy,second_status,kept", [("overwrite", 0, 2), ("keep-first", 0, 1), ("reject", 0x0111, 1)])
def test_duplicate_policies(inprocess_gateway, tmp_path, policy, second_status, kept):
    gw = start(inprocess_gateway, tmp_path, duplicate_policy=policy)
    assert send_dataset(gw.port, _ct(value=1), CT)[0] == 0
    status, comment = send_dataset(gw.port, _ct(value=2), CT)
    assert status == second_status
    if policy == "reject":
        assert "duplicate" in comment
    ds = _ct()
    stored = dcmread(stored_path(gw, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID))
    assert stored.InstanceNumber == kept
    idx = Index(gw.worker.runtime.config.effective_database_url())
    assert idx.stats()["instances"] == 1


@pytest.mark.parametrize("policy,second_status,kept_series", [
    ("overwrite", 0, "moved"), ("keep-first", 0, "first"), ("reject", 0x0111, "first")])
def test_duplicate_policies_when_the_resend_moved_series(inprocess_gateway, tmp_path, policy, second_status,
                                                         kept_series):
    """A resend under another Series Instance UID lands on a new path, so the store
    finds the duplicate only in its index transaction (the look-up folded into the
    write, issue 10): the policy still decides, and nothing is left at the path
    the refused copy was put in."""
    gw = start(inprocess_gateway, tmp_path, duplicate_policy=policy)
    first = _ct(value=1)
    assert send_dataset(gw.port, first, CT)[0] == 0
    moved = _ct(value=2)
    moved.SeriesInstanceUID = first.SeriesInstanceUID + ".9"
    status, _ = send_dataset(gw.port, moved, CT)
    assert status == second_status
    old = stored_path(gw, first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID)
    new = stored_path(gw, moved.StudyInstanceUID, moved.SeriesInstanceUID, moved.SOPInstanceUID)
    idx = Index(gw.worker.runtime.config.effective_database_url())
    row = idx.find_instance(first.SOPInstanceUID)
    assert idx.stats()["instances"] == 1 and idx.stats()["series"] == 1
    if kept_series == "first":
        assert old.exists() and not new.exists()
        assert row.series_instance_uid == first.SeriesInstanceUID and dcmread(old).InstanceNumber == 1
    else:
        assert new.exists() and not old.exists()  # the replaced file went with its row
        assert row.series_instance_uid == moved.SeriesInstanceUID and dcmread(new).InstanceNumber == 2


def test_identical_resend_is_a_no_op(inprocess_gateway, tmp_path):
    gw = start(inprocess_gateway, tmp_path, duplicate_policy="reject")
    assert send_dataset(gw.port, _ct(), CT)[0] == 0
    ds = _ct()
    path = stored_path(gw, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    before = path.stat().st_mtime_ns
    time.sleep(0.01)
    assert send_dataset(gw.port, _ct(), CT)[0] == 0  # not a rejected duplicate: same bytes
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize("codes,expected", [("standard", 0xA900), ("genie", 0xA900)])
def test_header_lying_about_sop_class(inprocess_gateway, tmp_path, codes, expected):
    from gateway_plugins.storage import file_meta
    from pynetdicom.dsutils import encode

    gw = start(inprocess_gateway, tmp_path, status_codes=codes)
    ds = _ct(uid="1.2.826.0.1.3680043.10.1472.97.9")
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"  # says MR inside, sent as CT:
    path = tmp_path / "liar.dcm"
    path.write_bytes(file_meta(CT, ds.SOPInstanceUID, "1.2.840.10008.1.2.1", "1.2.3", "T", "") + encode(ds, False, True))
    assert send_files(gw.port, [path]) == [expected]
    assert Index(gw.worker.runtime.config.effective_database_url()).stats()["instances"] == 0


@pytest.mark.parametrize("codes,expected", [("standard", 0xA900), ("genie", 0xA740)])
def test_image_without_pixel_data(inprocess_gateway, tmp_path, codes, expected):
    gw = start(inprocess_gateway, tmp_path, status_codes=codes)
    status, _ = send_dataset(gw.port, _ct(pixels=False), CT)
    assert status == expected


@pytest.mark.parametrize("codes,expected", [("standard", 0xC000), ("genie", 0xA730)])
def test_unparseable_object(inprocess_gateway, tmp_path, codes, expected):
    gw = start(inprocess_gateway, tmp_path, status_codes=codes)
    ae = AE(ae_title="RAW")
    ae.add_requested_context(CT, ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", gw.port, ae_title="DICOM_GATEWAY")
    # A dataset whose first element claims a length far past the end.
    junk = tmp_path / "junk.dcm"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CT, "1.2.3.4.5.6"
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    empty = Dataset()
    empty.file_meta = meta
    from pydicom.filewriter import dcmwrite

    dcmwrite(junk, empty, enforce_file_format=True)
    junk.write_bytes(junk.read_bytes() + b"\x08\x00\x18\x00UI\xff\x7f1.2")
    old = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assert int(assoc.send_c_store(junk).Status) == expected
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = old
        assoc.release()


@pytest.mark.parametrize("codes,expected", [("standard", 0xA700), ("genie", 0xA710)])
def test_index_unavailable(inprocess_gateway, tmp_path, codes, expected):
    port = free_port()
    data = tmp_path / "data"
    toml = basic_toml(port, data, extra_node=f'database_url = "postgresql+psycopg://gw@127.0.0.1:{free_port()}/gw"')
    gw = inprocess_gateway(toml, **{"plugins/storage.toml": f'status_codes = "{codes}"\n'})
    status, comment = send_dataset(gw.port, _ct(), CT)
    assert status == expected and "index unavailable" in comment


@pytest.mark.parametrize("codes,expected", [("standard", 0xA700), ("genie", 0xA710)])
def test_index_locked_by_another_process(inprocess_gateway, tmp_path, codes, expected):
    """Another process holds the SQLite index's write lock (an operator's
    sqlite3 session, a backup): the store is refused within index_timeout,
    long before the peer's DIMSE timeout, and works again once the lock is gone."""
    import sqlite3

    gw = start(inprocess_gateway, tmp_path, status_codes=codes, index_timeout=1)
    assert send_dataset(gw.port, _ct(), CT)[0] == 0  # creates the index
    db = sqlite3.connect(gw.data / "index.db", isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        status, comment = send_dataset(gw.port, _ct(uid="1.2.826.0.1.3680043.10.1472.97.40", value=5), CT)
        assert status == expected and "index unavailable" in comment
        assert time.monotonic() - started < 10
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert send_dataset(gw.port, _ct(uid="1.2.826.0.1.3680043.10.1472.97.40", value=5), CT)[0] == 0
    assert Index(gw.worker.runtime.config.effective_database_url()).stats()["instances"] == 2


def test_overwrite_refused_by_a_locked_index_keeps_the_acknowledged_version(inprocess_gateway, tmp_path):
    """STO-6 overwrite, but the index cannot be written: the new version is
    refused and the stored one, file and row, stays as it was acknowledged."""
    import hashlib
    import sqlite3

    gw = start(inprocess_gateway, tmp_path, index_timeout=1)
    assert send_dataset(gw.port, _ct(value=1), CT)[0] == 0
    ds = _ct()
    path = stored_path(gw, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    first = path.read_bytes()
    db = sqlite3.connect(gw.data / "index.db", isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        assert send_dataset(gw.port, _ct(value=2), CT)[0] == 0xA700
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert path.read_bytes() == first
    assert not list(path.parent.glob(".*.tmp"))
    idx = Index(gw.worker.runtime.config.effective_database_url())
    assert idx.find_instance(ds.SOPInstanceUID).file.sha256 == hashlib.sha256(dataset_part(path)).hexdigest()
    assert send_dataset(gw.port, _ct(value=2), CT)[0] == 0  # the resend, once the index is back
    assert dcmread(path).InstanceNumber == 2
    assert idx.find_instance(ds.SOPInstanceUID).file.sha256 == hashlib.sha256(dataset_part(path)).hexdigest()


def test_sender_aborting_mid_object_leaves_nothing(inprocess_gateway, tmp_path):
    from gateway import _rust
    from pynetdicom.dsutils import encode
    from test_malformed import read_pdu

    gw = start(inprocess_gateway, tmp_path)
    ds = _ct(uid="1.2.826.0.1.3680043.10.1472.97.20")
    ds.PixelData = b"\x00" * 3_000_000
    ds.Rows = ds.Columns = 1000
    cmd = Dataset()
    cmd.AffectedSOPClassUID, cmd.CommandField, cmd.MessageID = CT, 1, 1
    cmd.Priority, cmd.CommandDataSetType, cmd.AffectedSOPInstanceUID = 0, 0, ds.SOPInstanceUID
    body = encode(cmd, True, True)
    command = struct.pack("<HHII", 0, 0, 4, len(body)) + body
    s = socket.create_connection(("127.0.0.1", gw.port))
    # An association proposing CT (context 1) in implicit LE.
    from pynetdicom.pdu import A_ASSOCIATE_RQ
    from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
    from pynetdicom.presentation import build_context
    from pynetdicom.transport import AddressInformation

    prim = A_ASSOCIATE()
    prim.application_context_name = "1.2.840.10008.3.1.1.1"
    prim.calling_ae_title, prim.called_ae_title = "ABORTER", "DICOM_GATEWAY"
    prim.calling_presentation_address = AddressInformation("127.0.0.1", 1)
    prim.called_presentation_address = AddressInformation("127.0.0.1", 2)
    cx = build_context(CT, ["1.2.840.10008.1.2"])
    cx.context_id = 1
    prim.presentation_context_definition_list = [cx]
    ml = MaximumLengthNotification()
    ml.maximum_length_received = 16384
    prim.user_information = [ml]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(prim)
    s.sendall(pdu.encode())
    assert read_pdu(s)[0] == 0x02
    pdus = _rust.fragment_message(1, command, encode(ds, True, True), 16384)
    for p in pdus[: len(pdus) // 2]:
        s.sendall(p)
    time.sleep(0.3)
    s.sendall(bytes([7, 0, 0, 0, 0, 4, 0, 0, 0, 0]))  # A-ABORT mid-object
    s.close()
    time.sleep(0.5)
    assert not stored_path(gw, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID).exists()
    assert Index(gw.worker.runtime.config.effective_database_url()).stats()["instances"] == 0
    assert list((gw.data / "spool").iterdir()) == []
    assert send_dataset(gw.port, _ct(uid="1.2.826.0.1.3680043.10.1472.97.21"), CT)[0] == 0


def test_genie_private_dictionary_names_and_vrs(corpus_small):
    """DAT-1: with the dictionaries registered, implicit GENIE files read by name with real VRs."""
    from gateway import dictionaries

    dictionaries.register()
    ds = dcmread(corpus_small / "implicit" / "GENIE" / "GENIE_0001.dcm")
    block = ds.private_block(0x0033, "GEMS_GENIE_2")
    assert block[0x1E].VR == "FD" and block[0x1E].name == "[DoubleData]"
    pt = dcmread(sorted((corpus_small / "implicit" / "PT").glob("*.dcm"))[0], stop_before_pixels=True)
    assert pt.private_block(0x7053, "Philips PET Private Group")[0x00].VR == "DS"


def test_accept_any_storage_sop_class(inprocess_gateway, tmp_path):
    gw = start(inprocess_gateway, tmp_path, sop_classes="any")
    us = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound, not in STO-1
    ds = _ct(uid="1.2.826.0.1.3680043.10.1472.97.30")
    ds.SOPClassUID = us
    assert send_dataset(gw.port, ds, us)[0] == 0


def test_private_dictionary_module_is_current():
    """python/gateway/private_dict.py is generated from seed 003's text by scripts/gen_private_dict.py;
    regenerate it after changing either. The seed text is not part of the repository: where it is
    absent this check cannot run, and the skip says so."""
    import glob
    import runpy
    import sys

    from conftest import REPO

    script = REPO / "scripts" / "gen_private_dict.py"
    seed = runpy.run_path(str(script))["SEED"]  # where the script itself looks
    if not glob.glob(str(seed)):
        pytest.skip(f"seed text is not part of the repository: looked for {seed}, not found, "
                    "so the private-dictionary staleness check did not run")
    out = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, (f"python/gateway/private_dict.py is not what {seed} gives "
                                 f"({out.stderr.strip() or 'stale'}); regenerate it with: {sys.executable} {script}")
