"""Query/Retrieve C-MOVE SCP (QRS-1, QRS-5, QRS-6, QRS-8) against real peers: DCMTK movescu
as the requester, DCMTK storescp (and Orthanc) as the move destination, pynetdicom as the
requester where the test must read exact statuses, cancel or abort. The gateway holds the
project's generated corpus (CT stored Implicit VR LE and PT Explicit VR BE, so those are
converted on the way out; the rest Explicit VR LE, sent byte for byte) plus a bulk series."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import (PatientRootQueryRetrieveInformationModelMove,
                                  StudyRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelMove)

from conftest import InProcessGateway, basic_toml, dcmtk, free_port, missing_component, wait_port, write_config, \
    write_cts

NODELAY = dict(os.environ, TCP_NODELAY="1")
STORED_AS = {"CT": "implicit", "PT": "explicit-be"}  # every other type: explicit-le
BULK_STUDY, BULK_SERIES, BULK_N = "1.2.826.0.1.3680043.8.498.77.1", "1.2.826.0.1.3680043.8.498.77.1.1", 150


def _nodelay(assoc):
    """pynetdicom leaves Nagle on: 40 ms of delayed ACK per request on loopback."""
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return assoc


def store(port: int, files: list[Path]) -> None:
    """C-STORE every file to the gateway, each SOP class in its stored syntax (pynetdicom:
    storescu refuses the GENIE private SOP class)."""
    ae = AE(ae_title="LOADER")
    for key in sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID))
                       for d in (pydicom.dcmread(f, stop_before_pixels=True) for f in files)}):
        ae.add_requested_context(*key)
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
    assert assoc.is_established
    _nodelay(assoc)
    try:
        for f in files:
            assert assoc.send_c_store(f).Status == 0, f
    finally:
        assoc.release()


@pytest.fixture(scope="module", params=["rust", "pynetdicom"])
def qr(request, tmp_path_factory, corpus_small):
    from gateway.config import load_config

    tmp = tmp_path_factory.mktemp("qrmove")
    port, dest_port, down_port, orthanc_port = free_port(), free_port(), free_port(), free_port()
    remotes = {
        "remotes/dest.toml": f'ae_title = "DEST"\nhost = "127.0.0.1"\nport = {dest_port}\n',
        "remotes/closed.toml": f'ae_title = "CLOSED"\nhost = "127.0.0.1"\nport = {dest_port}\nmove_destination = false\n',
        "remotes/down.toml": f'ae_title = "DOWN"\nhost = "127.0.0.1"\nport = {down_port}\nassociation_timeout = 5\n',
        "remotes/orthanc.toml": f'ae_title = "ORTHANC"\nhost = "127.0.0.1"\nport = {orthanc_port}\n',
    }
    cfg = write_config(tmp / "cfg", basic_toml(port, tmp / "data", receive_path=request.param), **remotes)
    gw = InProcessGateway(cfg, sender=False)
    manifest = json.loads((corpus_small / "manifest.json").read_text())
    files = [corpus_small / f["path"] for f in manifest["files"]
             if f["syntax"] == STORED_AS.get(f["type"], "explicit-le")]
    files += write_cts(tmp / "bulk", BULK_N, study=BULK_STUDY, series=BULK_SERIES, patient_id="BULK-1")
    store(port, files)
    yield {"gw": gw, "port": port, "dest_port": dest_port, "orthanc_port": orthanc_port, "tmp": tmp,
           "config": load_config(cfg), "manifest": manifest}
    gw.stop()


@pytest.fixture
def storescp(qr, tmp_path):
    """DCMTK storescp as the move destination DEST (not promiscuous: the GENIE private
    SOP class is not accepted, so its sub-operations fail)."""
    out = tmp_path / "received"
    out.mkdir()
    proc = subprocess.Popen([dcmtk("storescp"), "-aet", "DEST", "-od", str(out), str(qr["dest_port"])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=NODELAY)
    wait_port(qr["dest_port"])
    yield out
    proc.terminate()
    proc.wait(10)


def _study(qr, description: str) -> str:
    return next(s["study_instance_uid"] for s in qr["manifest"]["studies"] if s["study_description"] == description)


def _files(qr, **where: str) -> list[dict]:
    return [f for f in qr["manifest"]["files"] if f["syntax"] == STORED_AS.get(f["type"], "explicit-le")
            and all(f[k] == v for k, v in where.items())]


def _dataset_bytes(path: Path) -> tuple[str, bytes]:
    from gateway.net.storescu import read_file_meta

    meta, offset = read_file_meta(path)
    return str(meta["TransferSyntaxUID"]), path.read_bytes()[offset:]


def assert_received_equal_index(qr, received: Path, *, studies=(), series=(), uids=None, timeout=10.0,
                                exact=True) -> None:
    """What arrived is what the index holds: the same SOP Instance UIDs; an object sent in its
    stored syntax is byte-identical after the File Meta (``exact``: a peer that writes what it
    received, as storescp does; getscu re-encodes sequences), any other decodes equal."""
    import numpy as np

    from gateway.index.selection import stored_files

    expected = {f.sop_instance_uid: f for f in stored_files(qr["config"], studies=studies, series=series)}
    if uids is not None:
        expected = {u: f for u, f in expected.items() if u in uids}
    deadline = time.monotonic() + timeout
    while len(list(received.iterdir())) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.05)  # storescp writes each file as it comes
    got = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in received.iterdir()}
    assert set(got) == set(expected), f"{len(set(expected) - set(got))} missing, {len(set(got) - set(expected))} extra"
    for uid, stored in expected.items():
        (ts_in, data_in), (ts_out, data_out) = _dataset_bytes(stored.path), _dataset_bytes(got[uid])
        if ts_in == ts_out and exact:
            assert data_in == data_out, uid
            continue
        a, b = pydicom.dcmread(stored.path), pydicom.dcmread(got[uid])
        assert [e.tag for e in a] == [e.tag for e in b]
        for elem in a:
            if elem.tag != 0x7FE00010:
                assert elem.value == b[elem.tag].value, (uid, elem.tag)
        if "PixelData" in a:
            assert np.array_equal(a.pixel_array, b.pixel_array), uid


def movescu(qr, model: str, *keys: str, dest="DEST") -> str:
    args = [dcmtk("movescu"), "-v", model, "-aec", "DICOM_GATEWAY", "-aem", dest]
    for k in keys:
        args += ["-k", k]
    out = subprocess.run([*args, "127.0.0.1", str(qr["port"])], capture_output=True, text=True, timeout=60,
                         env=NODELAY)
    return out.stdout + out.stderr


# ---- movescu at each level, storescp as the destination --------------------------------------

def test_movescu_study_level(qr, storescp):
    # QRS-1/QRS-5: Study Root, STUDY level: CT, PT, SC, RTSTRUCT of the PET-CT study
    study = _study(qr, "PET-CT WB FDG")
    log = movescu(qr, "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}")
    assert "Received Final Move Response (Success)" in log, log
    assert log.count("(Pending)") == 13
    assert_received_equal_index(qr, storescp, studies=[study])


def test_movescu_series_and_image_levels(qr, storescp):
    # Patient Root, SERIES level (the unique keys above it named)
    mr = _files(qr, type="MR")
    log = movescu(qr, "-P", "QueryRetrieveLevel=SERIES", f"PatientID={mr[0]['patient_id']}",
                  f"StudyInstanceUID={mr[0]['study_instance_uid']}", f"SeriesInstanceUID={mr[0]['series_instance_uid']}")
    assert "Received Final Move Response (Success)" in log, log
    assert_received_equal_index(qr, storescp, series=[mr[0]["series_instance_uid"]])
    for p in storescp.iterdir():
        p.unlink()
    # Study Root, IMAGE level with a UID list at the level (two of the four converted PT images)
    pt = _files(qr, type="PT")[:2]
    uids = {f["sop_instance_uid"] for f in pt}
    log = movescu(qr, "-S", "QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={pt[0]['study_instance_uid']}",
                  f"SeriesInstanceUID={pt[0]['series_instance_uid']}", "SOPInstanceUID=" + "\\".join(sorted(uids)))
    assert "Received Final Move Response (Success)" in log, log
    assert_received_equal_index(qr, storescp, series=[pt[0]["series_instance_uid"]], uids=uids)


# ---- statuses, read exactly with pynetdicom as the requester ---------------------------------

def _requester(qr, *contexts) -> object:
    ae = AE(ae_title="MOVER")
    for cx in contexts:
        ae.add_requested_context(cx)
    assoc = ae.associate("127.0.0.1", qr["port"], ae_title="DICOM_GATEWAY")
    assert assoc.is_established
    return _nodelay(assoc)


def _ident(level: str, **keys: str) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def _move(assoc, dest: str, ident, model=StudyRootQueryRetrieveInformationModelMove) -> list:
    return [(int(st.Status), st, rsp) for st, rsp in assoc.send_c_move(ident, dest, model) if "Status" in st]


def test_statuses_and_several_requests_on_one_association(qr, storescp):
    """QRS-8: C-FINDs and C-MOVEs one after the other on one association; QRS-5: A801 for an
    unknown or refused destination with an Error Comment, A900 for a UID list above the level
    and a missing unique key, Pending counts after each sub-operation, B000 naming the failed."""
    assoc = _requester(qr, StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelMove,
                       PatientRootQueryRetrieveInformationModelMove)
    try:
        found = [rsp for st, rsp in assoc.send_c_find(_ident("STUDY", StudyInstanceUID=""),
                                                      StudyRootQueryRetrieveInformationModelFind)
                 if st.Status in (0xFF00, 0xFF01)]
        assert len(found) == 5
        study = _study(qr, "NM Renogram MAG3")
        (code, st, _), = _move(assoc, "NOWHERE", _ident("STUDY", StudyInstanceUID=study))
        assert code == 0xA801 and "NOWHERE" in st.ErrorComment
        (code, st, _), = _move(assoc, "CLOSED", _ident("STUDY", StudyInstanceUID=study))
        assert code == 0xA801 and "not a move destination" in st.ErrorComment
        two = f"{study}\\{_study(qr, 'MRT Schädel nativ')}"
        (code, _, _), = _move(assoc, "DEST", _ident("SERIES", StudyInstanceUID=two, SeriesInstanceUID="1.2.3"))
        assert code == 0xA900  # UID list above the query level
        (code, _, _), = _move(assoc, "DEST", _ident("SERIES", StudyInstanceUID=study))
        assert code == 0xA900  # no SeriesInstanceUID at a SERIES retrieve
        (code, _, _), = _move(assoc, "DEST", _ident("STUDY", StudyInstanceUID=study),
                              PatientRootQueryRetrieveInformationModelMove)
        assert code == 0xA900  # Patient Root: the Patient ID above the STUDY level is missing
        # The renogram study: NM, a curve, and two GENIE private objects storescp does not accept
        reno = _files(qr, study_instance_uid=study)
        genie = {f["sop_instance_uid"] for f in reno if f["type"] == "GENIE"}
        answers = _move(assoc, "DEST", _ident("STUDY", StudyInstanceUID=study))
        pending = [st for code, st, _ in answers if code == 0xFF00]
        assert [p.NumberOfRemainingSuboperations for p in pending] == list(range(len(reno) - 1, -1, -1))
        code, final, ident = answers[-1]
        assert code == 0xB000
        assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations,
                final.NumberOfWarningSuboperations) == (len(reno) - len(genie), len(genie), 0)
        failed = ident.FailedSOPInstanceUIDList
        assert set([failed] if isinstance(failed, str) else failed) == genie
        # the same association still answers a C-FIND and a good C-MOVE
        found = [rsp for st, rsp in assoc.send_c_find(_ident("STUDY", StudyInstanceUID=study),
                                                      StudyRootQueryRetrieveInformationModelFind)
                 if st.Status == 0xFF00]
        assert len(found) == 1
        mr = _study(qr, "MRT Schädel nativ")
        code, final, _ = _move(assoc, "DEST", _ident("STUDY", StudyInstanceUID=mr))[-1]
        assert code == 0x0000 and final.NumberOfCompletedSuboperations == 4
        assert final.NumberOfFailedSuboperations == 0
    finally:
        assoc.release()
    reno_ok = {f["sop_instance_uid"] for f in reno} - genie
    mr_uids = {f["sop_instance_uid"] for f in _files(qr, study_instance_uid=mr)}
    assert_received_equal_index(qr, storescp, studies=[study, mr], uids=reno_ok | mr_uids)


def test_all_sub_operations_failed_a702(qr):
    # the destination does not answer: every sub-operation fails → A702 with the Failed SOP Instance UID List
    assoc = _requester(qr, StudyRootQueryRetrieveInformationModelMove)
    try:
        mr = _files(qr, type="MR")
        code, final, ident = _move(assoc, "DOWN", _ident("SERIES", StudyInstanceUID=mr[0]["study_instance_uid"],
                                                       SeriesInstanceUID=mr[0]["series_instance_uid"]))[-1]
    finally:
        assoc.release()
    assert code == 0xA702
    assert final.NumberOfFailedSuboperations == len(mr) and final.NumberOfCompletedSuboperations == 0
    assert set(ident.FailedSOPInstanceUIDList) == {f["sop_instance_uid"] for f in mr}


def test_cancel_fe00(qr, storescp):
    # QRS-5: C-CANCEL-MOVE → FE00 with the counts so far; the rest is not sent
    assoc = _requester(qr, StudyRootQueryRetrieveInformationModelMove)
    try:
        answers = []
        for st, _ in assoc.send_c_move(_ident("SERIES", StudyInstanceUID=BULK_STUDY, SeriesInstanceUID=BULK_SERIES),
                                       "DEST", StudyRootQueryRetrieveInformationModelMove, msg_id=7):
            answers.append(st)
            if len(answers) == 1:
                cx = assoc._get_valid_context(StudyRootQueryRetrieveInformationModelMove, "", "scu")
                assoc.send_c_cancel(7, cx.context_id)
    finally:
        assoc.release()
    final = answers[-1]
    assert final.Status == 0xFE00
    done = final.NumberOfCompletedSuboperations + final.NumberOfFailedSuboperations + final.NumberOfWarningSuboperations
    assert final.NumberOfRemainingSuboperations > 0
    assert done + final.NumberOfRemainingSuboperations == BULK_N
    time.sleep(0.3)
    assert len(list(storescp.iterdir())) == done


def test_requesting_association_aborted_still_delivers(qr, storescp):
    # QRS-6: the requester aborts after the first Pending; every sub-operation still completes
    assoc = _requester(qr, StudyRootQueryRetrieveInformationModelMove)
    for st, _ in assoc.send_c_move(_ident("SERIES", StudyInstanceUID=BULK_STUDY, SeriesInstanceUID=BULK_SERIES),
                                   "DEST", StudyRootQueryRetrieveInformationModelMove):
        assert st.Status == 0xFF00 and st.NumberOfRemainingSuboperations > 0
        assoc.abort()
        break
    assert_received_equal_index(qr, storescp, series=[BULK_SERIES], timeout=30)


# ---- Orthanc as the move destination ---------------------------------------------------------

def test_orthanc_as_move_destination(qr, tmp_path):
    orthanc = Path("/usr/sbin/Orthanc")
    if not orthanc.exists():
        missing_component("Orthanc not installed (scripts/test.sh installs it)")
    http_port = free_port()
    storage = tmp_path / "orthanc"
    storage.mkdir()
    cfg = tmp_path / "orthanc.json"
    cfg.write_text(json.dumps({
        "Name": "move-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
        "DicomAet": "ORTHANC", "DicomPort": qr["orthanc_port"], "HttpPort": http_port,
        "HttpBindAddress": "127.0.0.1", "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": True, "Plugins": [],
    }))
    log = open(tmp_path / "orthanc.log", "wb")
    proc = subprocess.Popen([str(orthanc), str(cfg)], stdout=log, stderr=subprocess.STDOUT, env=NODELAY)
    try:
        wait_port(qr["orthanc_port"])
        study = _study(qr, "PET-CT WB FDG")
        out = movescu(qr, "-S", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}", dest="ORTHANC")
        assert "Received Final Move Response (Success)" in out, out
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/instances?expand", timeout=5) as rsp:
            got = {i["MainDicomTags"]["SOPInstanceUID"] for i in json.load(rsp)}
        assert got == {f["sop_instance_uid"] for f in _files(qr, study_instance_uid=study)}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_sub_operation_store_command_carries_the_move_originator():
    """PS3.7 9.1.1.1: each C-STORE of a C-MOVE names the Move Originator AE title and Message ID;
    the Rust send path's hand-encoded command equals pynetdicom's for the same primitive."""
    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE

    from gateway.net.fastpath import encode_store_command

    req = C_STORE()
    req.MessageID, req.Priority = 7, 2
    req.AffectedSOPClassUID, req.AffectedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4"
    req.MoveOriginatorApplicationEntityTitle, req.MoveOriginatorMessageID = "MOVER", 5
    req._dataset_path = (Path(__file__), 0)
    message = C_STORE_RQ()
    message.primitive_to_message(req)
    pynetdicom_bytes = b"".join(p.presentation_data_value_list[0][1][1:] for p in message.encode_msg(1, 0)
                                if p.presentation_data_value_list[0][1][0] & 0x01)
    assert encode_store_command(7, req.AffectedSOPClassUID, "1.2.3.4", move_originator=("MOVER", 5)) == pynetdicom_bytes
