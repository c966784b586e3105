"""Query/Retrieve C-FIND SCP (QRS-1..QRS-5) against DCMTK findscu, over objects
stored through the gateway's own receive path."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pydicom
import pytest

from conftest import basic_toml, dcmtk, write_cts

NODELAY = dict(os.environ, TCP_NODELAY="1")
MODELS = {"patient": "-P", "study": "-S", "psonly": "-O"}


@pytest.fixture(scope="module", params=["rust", "pynetdicom"])
def archive(request, tmp_path_factory):
    """A gateway holding two patients: 'Müller^Jürgen' (study A: 3 CT, 2024-01-05 08:30) and
    'Test^CT' (study B: 2 CT + 1 PT, 2024-02-10 12:00; study C: 4 CT, 2024-03-01 23:59:59)."""
    from conftest import InProcessGateway, free_port, write_config

    tmp = tmp_path_factory.mktemp("qr")
    port = free_port()
    cfg = write_config(tmp / "cfg", basic_toml(port, tmp / "data", receive_path=request.param))
    gw = InProcessGateway(cfg, sender=False)
    files = []
    files += write_cts(tmp / "a", 3, study="1.2.3.1", series="1.2.3.1.1", patient_id="P-1",
                       patient_name="Müller^Jürgen")
    files += write_cts(tmp / "b", 2, study="1.2.3.2", series="1.2.3.2.1", patient_id="P-2")
    pt = write_cts(tmp / "b2", 1, study="1.2.3.2", series="1.2.3.2.2", patient_id="P-2")[0]
    ds = pydicom.dcmread(pt)
    ds.Modality = "PT"  # study B: CT and PT, so Modalities in Study is per study (QRS-3)
    ds.save_as(pt)
    files.append(pt)
    files += write_cts(tmp / "c", 4, study="1.2.3.3", series="1.2.3.3.1", patient_id="P-2")
    # study D: one series of 300, enough that a C-CANCEL lands while responses are still pending
    files += write_cts(tmp / "d", 300, study="1.2.3.4", series="1.2.3.4.1", patient_id="P-3",
                       patient_name="Other^Bulk")
    dates = {"1.2.3.4": ("20250101", "000000"), "1.2.3.1": ("20240105", "083000"), "1.2.3.2": ("20240210", "120000"), "1.2.3.3": ("20240301", "235959")}
    for f in files:
        ds = pydicom.dcmread(f)
        ds.StudyDate, ds.StudyTime = dates[ds.StudyInstanceUID]
        ds.save_as(f)
    out = subprocess.run([dcmtk("storescu"), "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port), *map(str, files)],
                         capture_output=True, text=True, timeout=60, env=NODELAY)
    assert out.returncode == 0, out.stderr
    yield gw, tmp
    gw.stop()


def findscu(archive, model: str, *keys: str | bytes, extra=()) -> tuple[list[pydicom.Dataset], str]:
    gw, tmp = archive
    out_dir = Path(tmp) / f"rsp{len(list(Path(tmp).glob('rsp*')))}"
    out_dir.mkdir()
    args = [dcmtk("findscu"), "-v", MODELS[model], "-aec", "DICOM_GATEWAY", "-X", "-od", str(out_dir), *extra]
    for k in keys:
        args += ["-k", k]
    out = subprocess.run([*args, "127.0.0.1", str(gw.port)], capture_output=True, timeout=30, env=NODELAY)
    text = (out.stdout + out.stderr).decode("utf-8", "replace")
    return [pydicom.dcmread(p) for p in sorted(out_dir.glob("*"))], text


def test_study_level_wildcard_pn_and_computed(archive):
    # QRS-3 PN wildcard ignoring case; computed study attributes (NumberOf…, ModalitiesInStudy)
    rsp, log = findscu(archive, "study", "QueryRetrieveLevel=STUDY", "PatientName=test*", "StudyInstanceUID",
                       "NumberOfStudyRelatedInstances", "NumberOfStudyRelatedSeries", "ModalitiesInStudy")
    assert "Success" in log
    got = {r.StudyInstanceUID: r for r in rsp}
    assert set(got) == {"1.2.3.2", "1.2.3.3"}
    assert got["1.2.3.3"].NumberOfStudyRelatedInstances == 4
    assert got["1.2.3.2"].NumberOfStudyRelatedSeries == 2
    assert got["1.2.3.2"].NumberOfStudyRelatedInstances == 3
    assert sorted(got["1.2.3.2"].ModalitiesInStudy) == ["CT", "PT"]
    assert got["1.2.3.3"].ModalitiesInStudy == "CT"
    # only requested keys (QRS-2)
    assert "PatientID" not in got["1.2.3.2"] and "StudyDate" not in got["1.2.3.2"]


def test_patient_root_levels_and_uid_list(archive):
    rsp, _ = findscu(archive, "patient", "QueryRetrieveLevel=PATIENT", "PatientID", "PatientName",
                     "NumberOfPatientRelatedStudies")
    assert {r.PatientID: r.NumberOfPatientRelatedStudies for r in rsp} == {"P-1": 1, "P-2": 2, "P-3": 1}
    # QRS-3: UID list at the query level
    rsp, _ = findscu(archive, "patient", "QueryRetrieveLevel=STUDY", "PatientID=P-2",
                     "StudyInstanceUID=1.2.3.2\\1.2.3.1")
    assert [r.StudyInstanceUID for r in rsp] == ["1.2.3.2"]
    rsp, _ = findscu(archive, "patient", "QueryRetrieveLevel=IMAGE", "PatientID=P-2", "StudyInstanceUID=1.2.3.3",
                     "SeriesInstanceUID=1.2.3.3.1", "SOPInstanceUID", "InstanceNumber=3")
    assert len(rsp) == 1 and rsp[0].InstanceNumber == 3


def test_series_level_and_exact_case_sensitive(archive):
    rsp, _ = findscu(archive, "study", "QueryRetrieveLevel=SERIES", "StudyInstanceUID=1.2.3.3", "Modality=CT",
                     "SeriesInstanceUID", "NumberOfSeriesRelatedInstances")
    assert [(r.SeriesInstanceUID, r.NumberOfSeriesRelatedInstances) for r in rsp] == [("1.2.3.3.1", 4)]
    rsp, _ = findscu(archive, "study", "QueryRetrieveLevel=SERIES", "StudyInstanceUID=1.2.3.3", "Modality=ct")
    assert rsp == []  # non-PN strings match case-sensitively (PS3.4 C.2.2.2.1)


def test_charset_utf8_returned(archive):
    # QRS-3: a non-ASCII name comes back with the Specific Character Set that carries it
    # the key in Latin-1 bytes, as the query's character set says
    rsp, _ = findscu(archive, "study", "QueryRetrieveLevel=STUDY", "SpecificCharacterSet=ISO_IR 100",
                     "PatientName=MÜLLER*".encode("latin-1"))
    assert len(rsp) == 1
    assert rsp[0].SpecificCharacterSet == "ISO_IR 100"
    assert str(rsp[0].PatientName) == "Müller^Jürgen"


def test_bad_identifiers_a900(archive):
    # QRS-4: a level the model does not have; a UID list above the query level
    _, log = findscu(archive, "psonly", "QueryRetrieveLevel=SERIES", "PatientID=P-2", "StudyInstanceUID=1.2.3.3")
    assert "DataSetDoesNotMatchSOPClass" in log
    _, log = findscu(archive, "study", "QueryRetrieveLevel=SERIES", "StudyInstanceUID=1.2.3.3\\1.2.3.2")
    assert "DataSetDoesNotMatchSOPClass" in log


def test_date_ranges_and_combined_datetime(archive):
    # QRS-3: closed and open date ranges
    def studies(*keys):
        return sorted(r.StudyInstanceUID for r in findscu(archive, "study", "QueryRetrieveLevel=STUDY",
                                                          "StudyInstanceUID", *keys)[0])
    assert studies("StudyDate=20240101-20240215") == ["1.2.3.1", "1.2.3.2"]
    assert studies("StudyDate=20240201-") == ["1.2.3.2", "1.2.3.3", "1.2.3.4"]
    assert studies("StudyDate=-20240105") == ["1.2.3.1"]
    assert studies("StudyTime=1200") == ["1.2.3.2"]
    # PS3.4 C.2.2.2.5.1: date and time ranges together are one date+time range
    assert studies("StudyDate=20240105-20240301", "StudyTime=1300-0100") == ["1.2.3.2"]


def test_unindexed_key_ff01_and_patient_study_only(archive):
    # QRS-4: matching on a key the index does not hold → FF01, the key returned empty
    rsp, log = findscu(archive, "psonly", "QueryRetrieveLevel=PATIENT", "PatientID=P-1", "EthnicGroup=X")
    assert len(rsp) == 1 and rsp[0].EthnicGroup in (None, "")
    assert "Pending: WarningUnsupportedOptionalKeys" in log, log
    # Patient/Study Only: the STUDY level needs the Patient ID (its patient level, PS3.4 C.6.3)
    rsp, _ = findscu(archive, "psonly", "QueryRetrieveLevel=STUDY", "PatientID=P-2", "StudyInstanceUID")
    assert sorted(r.StudyInstanceUID for r in rsp) == ["1.2.3.2", "1.2.3.3"]
