"""Query/Retrieve C-GET SCP (issue 12; QRS-5 statuses) against DCMTK getscu, and pynetdicom
as the requester where the test must choose the SCP/SCU role selection, read exact statuses
or cancel: the C-STORE sub-operations come back on the requesting association."""

from __future__ import annotations

import json
import subprocess
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, build_role, evt
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pynetdicom.sop_class import (CTImageStorage, PatientRootQueryRetrieveInformationModelGet,
                                  SecondaryCaptureImageStorage, StudyRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelGet)

from conftest import InProcessGateway, basic_toml, dcmtk, free_port, write_config
from gateway.index.selection import stored_files
from test_qr_move import (NODELAY, STORED_AS, _dataset_bytes, _ident, _nodelay, assert_received_equal_index,
                          store)


@pytest.fixture(scope="module", params=["rust", "pynetdicom"])
def qr(request, tmp_path_factory, corpus_small):
    from gateway.config import load_config

    tmp = tmp_path_factory.mktemp("qrget")
    port = free_port()
    cfg = write_config(tmp / "cfg", basic_toml(port, tmp / "data", receive_path=request.param))
    gw = InProcessGateway(cfg, sender=False)
    manifest = json.loads((corpus_small / "manifest.json").read_text())
    pet_ct = next(s["study_instance_uid"] for s in manifest["studies"] if s["study_id"] == "PETCT1")
    files = [f for f in manifest["files"] if f["syntax"] == STORED_AS.get(f["type"], "explicit-le")
             and f["study_instance_uid"] == pet_ct]
    store(port, [corpus_small / f["path"] for f in files])
    yield {"gw": gw, "port": port, "tmp": tmp, "config": load_config(cfg), "study": pet_ct, "files": files}
    gw.stop()


def getscu(qr, out: Path, *keys: str) -> str:
    args = [dcmtk("getscu"), "-v", "-S", "-aec", "DICOM_GATEWAY", "-od", str(out)]
    for k in keys:
        args += ["-k", k]
    run = subprocess.run([*args, "127.0.0.1", str(qr["port"])], capture_output=True, text=True, timeout=60,
                         env=NODELAY)
    return run.stdout + run.stderr


def test_getscu_series(qr, tmp_path):
    # the CT series (stored Implicit VR LE) arrives in getscu's output directory
    ct = [f for f in qr["files"] if f["type"] == "CT"]
    series = ct[0]["series_instance_uid"]
    log = getscu(qr, tmp_path, "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={qr['study']}",
                 f"SeriesInstanceUID={series}")
    assert "Received C-GET Response (Success)" in log, log
    assert log.count("Received C-STORE Request") == len(ct)
    assert_received_equal_index(qr, tmp_path, series=[series], exact=False)


def test_getscu_study(qr, tmp_path):
    # every SOP class of the PET-CT study: CT, PET, Secondary Capture, RT Structure Set
    log = getscu(qr, tmp_path, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={qr['study']}")
    assert "Received C-GET Response (Success)" in log, log
    assert_received_equal_index(qr, tmp_path, studies=[qr["study"]], exact=False)  # getscu re-encodes sequences


class Requester:
    """pynetdicom as a C-GET SCU taking the Storage SCP role for ``roles`` only."""

    def __init__(self, qr, roles=(), cancel_after: int | None = None) -> None:
        self.received: list[str] = []
        self.data: dict[str, tuple[str, bytes]] = {}  # SOP Instance UID → (syntax, data set as on the wire)
        self.cancel_after = cancel_after
        self.msg_id = 9
        ae = AE(ae_title="GETTER")
        for cx in (StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelGet,
                   PatientRootQueryRetrieveInformationModelGet, *roles):
            ae.add_requested_context(cx)
        self.assoc = ae.associate("127.0.0.1", qr["port"], ae_title="DICOM_GATEWAY",
                                  ext_neg=[build_role(r, scp_role=True) for r in roles],
                                  evt_handlers=[(evt.EVT_C_STORE, self._stored)])
        assert self.assoc.is_established
        _nodelay(self.assoc)

    def _stored(self, event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        self.received.append(uid)
        self.data[uid] = (str(event.context.transfer_syntax), event.request.DataSet.getvalue())
        if self.cancel_after is not None and len(self.received) == self.cancel_after:
            cx = self.assoc._get_valid_context(StudyRootQueryRetrieveInformationModelGet, "", "scu")
            self.assoc.send_c_cancel(self.msg_id, cx.context_id)  # before this C-STORE's response
        return 0x0000

    def get(self, ident, model=StudyRootQueryRetrieveInformationModelGet) -> list:
        return [(int(st.Status), st, rsp) for st, rsp in self.assoc.send_c_get(ident, model, msg_id=self.msg_id)
                if "Status" in st]


def test_get_statuses_and_role_selection(qr):
    """Only contexts where the requester took the SCP role carry sub-operations: with the role for
    CT only, CT arrives and every other instance fails → B000 naming them; Pending counts after
    each sub-operation; A900 for a UID list above the level; more requests on the same association."""
    ct = {f["sop_instance_uid"] for f in qr["files"] if f["type"] == "CT"}
    sc = {f["sop_instance_uid"] for f in qr["files"] if f["type"] == "SC"}
    others = {f["sop_instance_uid"] for f in qr["files"]} - ct - sc
    req = Requester(qr, roles=[CTImageStorage, SecondaryCaptureImageStorage])
    try:
        (code, _, _), = req.get(_ident("SERIES", StudyInstanceUID=f"{qr['study']}\\1.2.3", SeriesInstanceUID="1.2"))
        assert code == 0xA900
        (code, _, _), = req.get(_ident("STUDY", StudyInstanceUID=qr["study"]), PatientRootQueryRetrieveInformationModelGet)
        assert code == 0xA900  # Patient Root: no Patient ID above the STUDY level
        answers = req.get(_ident("STUDY", StudyInstanceUID=qr["study"]))
        pending = [st for code, st, _ in answers if code == 0xFF00]
        total = len(qr["files"])
        assert [p.NumberOfRemainingSuboperations for p in pending] == list(range(total - 1, -1, -1))
        code, final, ident = answers[-1]
        assert code == 0xB000
        assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (len(ct | sc), len(others))
        assert set(ident.FailedSOPInstanceUIDList) == others
        assert set(req.received) == ct | sc
        # on the wire: SC (stored Explicit VR LE) byte for byte; CT (stored Implicit) converted, equal decoded
        stored = {f.sop_instance_uid: f for f in stored_files(qr["config"], studies=[qr["study"]])}
        for uid, (syntax, data) in req.data.items():
            stored_syntax, stored_data = _dataset_bytes(stored[uid].path)
            if uid in sc:
                assert (syntax, data) == (stored_syntax, stored_data), uid
            else:
                assert syntax != stored_syntax
                got = dcmread(BytesIO(data), force=True)  # a bare data set in `syntax`
                got.file_meta = FileMetaDataset()
                got.file_meta.TransferSyntaxUID = syntax
                want = pydicom.dcmread(stored[uid].path)
                assert [e.tag for e in got] == [e.tag for e in want] and got.PixelData == want.PixelData
        found = [r for st, r in req.assoc.send_c_find(_ident("STUDY", StudyInstanceUID=qr["study"]),
                                                      StudyRootQueryRetrieveInformationModelFind)
                 if st.Status == 0xFF00]
        assert len(found) == 1
    finally:
        req.assoc.release()


def test_get_without_any_storage_role_a702(qr):
    # no context with the requester as Storage SCP: every sub-operation fails → A702
    req = Requester(qr)
    try:
        code, final, ident = req.get(_ident("STUDY", StudyInstanceUID=qr["study"]))[-1]
    finally:
        req.assoc.release()
    assert code == 0xA702
    assert final.NumberOfFailedSuboperations == len(qr["files"]) and final.NumberOfCompletedSuboperations == 0
    assert set(ident.FailedSOPInstanceUIDList) == {f["sop_instance_uid"] for f in qr["files"]}


def test_get_cancel_fe00(qr):
    # C-CANCEL-GET sent while the first C-STORE is being answered: FE00, the rest not sent
    req = Requester(qr, roles=[CTImageStorage], cancel_after=1)
    ct = [f for f in qr["files"] if f["type"] == "CT"]
    try:
        answers = req.get(_ident("SERIES", StudyInstanceUID=qr["study"], SeriesInstanceUID=ct[0]["series_instance_uid"]))
    finally:
        req.assoc.release()
    code, final, _ = answers[-1]
    assert code == 0xFE00
    assert (final.NumberOfCompletedSuboperations, final.NumberOfRemainingSuboperations) == (1, len(ct) - 1)
    assert len(req.received) == 1
