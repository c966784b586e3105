"""Media import (issue 15; MED-3, MED-4): DICOMDIR file-sets, ours and DCMTK's,
and plain folders, into the archive through the one storage path of `import`."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from conftest import dcmtk, write_config


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("dicom-gateway")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "gateway.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _gateway(tmp: Path, name: str) -> tuple[Path, Path]:
    data = tmp / f"{name}-data"
    return write_config(tmp / f"{name}-cfg", f'[node]\ndata_dir = "{data}"\n'), data


def _stored(data: Path) -> set[str]:
    with sqlite3.connect(data / "index.db") as db:
        return {r[0] for r in db.execute("select sop_instance_uid from instances")}


@pytest.fixture(scope="module")
def fileset(corpus_small, tmp_path_factory) -> Path:
    """A file-set as DCMTK writes it: the big-endian PT and CT series converted
    to Explicit VR LE by dcmconv, the DICOMDIR by dcmmkdir -Pgp."""
    root = tmp_path_factory.mktemp("dcmtk_fileset")
    n = 0
    for kind in ("PT", "CT"):
        for f in sorted((corpus_small / "explicit-be" / kind).glob("*.dcm")):
            dst = root / "IMAGES" / kind / f"IM{n:06d}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([dcmtk("dcmconv"), "+te", str(f), str(dst)], check=True, capture_output=True)
            n += 1
    mk = subprocess.run([dcmtk("dcmmkdir"), "-Pgp", "+r", "+id", str(root), "--output-file",
                         str(root / "DICOMDIR"), "IMAGES"], capture_output=True, text=True)
    assert mk.returncode == 0, mk.stderr
    return root


def test_ls_shows_the_dcmtk_dicomdir_tree(fileset):
    """MED-3: `media ls` prints the patient/study/series/image tree of a DICOMDIR DCMTK wrote."""
    run = _cli("media", "ls", str(fileset))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("PATIENT ") and lines[1].startswith("  STUDY ")
    assert sum(l.strip().startswith("SERIES ") for l in lines) == 2
    assert sum(l.strip().startswith("IMAGE ") for l in lines) == 8
    assert all("IMAGES/" in l for l in lines if l.strip().startswith("IMAGE "))


def test_import_dcmtk_file_set_then_duplicates(fileset, tmp_path):
    """MED-3: every instance the DCMTK DICOMDIR names is stored; a second import stores nothing new."""
    cfg, data = _gateway(tmp_path, "gw")
    run = _cli("media", "import", str(fileset), "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "imported 8, duplicates 0, skipped 0, failed 0" in run.stdout
    uids = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID)
            for f in (fileset / "IMAGES").rglob("IM*")}
    assert _stored(data) == uids
    again = _cli("media", "import", str(fileset), "--config", str(cfg))
    assert again.returncode == 0 and _stored(data) == uids


def test_second_import_counts_duplicates_and_imports_nothing(fileset, tmp_path):
    """Issue 15 item 2: the same file-set imported twice reports every object as a
    duplicate the second time (byte-identical, already stored) and imports none."""
    cfg, data = _gateway(tmp_path, "gw")
    first = _cli("media", "import", str(fileset), "--config", str(cfg))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "imported 8, duplicates 0, skipped 0, failed 0" in first.stdout
    with sqlite3.connect(data / "index.db") as db:
        before = sorted(db.execute("select * from files").fetchall())
    again = _cli("media", "import", str(fileset), "--config", str(cfg))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "imported 0, duplicates 8, skipped 0, failed 0" in again.stdout
    with sqlite3.connect(data / "index.db") as db:
        assert sorted(db.execute("select * from files").fetchall()) == before


def test_missing_referenced_file_is_reported_and_the_rest_imported(fileset, tmp_path):
    """A DICOMDIR naming a file that is not there: a clear line, exit 1, the rest stored."""
    broken = tmp_path / "broken"
    shutil.copytree(fileset, broken)
    gone = sorted((broken / "IMAGES" / "CT").iterdir())[0]
    gone_uid = str(pydicom.dcmread(gone, stop_before_pixels=True).SOPInstanceUID)
    gone.unlink()
    cfg, data = _gateway(tmp_path, "gw")
    run = _cli("media", "import", str(broken), "--config", str(cfg))
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"MISSING  {gone}: referenced by the DICOMDIR (SOP Instance {gone_uid})" in run.stderr
    assert "missing 1 referenced file(s)" in run.stdout and "imported 7, duplicates 0, skipped 0, failed 0" in run.stdout
    assert len(_stored(data)) == 7 and gone_uid not in _stored(data)


def test_import_only_chosen_study(corpus_small, tmp_path):
    """MED-3 `--study`: only that study's instances of a file-set with two studies."""
    src = tmp_path / "src"
    for kind in ("MR", "PT"):
        for f in sorted((corpus_small / "explicit-le" / kind).glob("*.dcm")):
            dst = src / kind / f.stem[-8:].upper().replace(".", "")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)
    mk = subprocess.run([dcmtk("dcmmkdir"), "-Pgp", "+r", "+id", str(src), "--output-file", str(src / "DICOMDIR"),
                         "MR", "PT"], capture_output=True, text=True)
    assert mk.returncode == 0, mk.stderr
    mr = pydicom.dcmread(sorted((corpus_small / "explicit-le" / "MR").glob("*.dcm"))[0], stop_before_pixels=True)
    cfg, data = _gateway(tmp_path, "gw")
    run = _cli("media", "import", str(src), "--study", str(mr.StudyInstanceUID), "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "imported 4," in run.stdout and len(_stored(data)) == 4


def test_plain_folder_without_dicomdir_goes_the_import_path(corpus_small, tmp_path):
    """MED-4: a folder without DICOMDIR is scanned like `dicom-gateway import` (the same code):
    non-DICOM files are skipped with a reason; --study needs a DICOMDIR."""
    src = tmp_path / "stick"
    shutil.copytree(corpus_small / "implicit" / "CT", src / "CT")
    (src / "autorun.inf").write_text("[autorun]\n")
    cfg, data = _gateway(tmp_path, "gw")
    run = _cli("media", "import", str(src), "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "imported 4, duplicates 0, skipped 1, failed 0" in run.stdout and "autorun.inf: not DICOM" in run.stdout
    assert len(_stored(data)) == 4
    assert _cli("media", "import", str(src), "--study", "1.2.3", "--config", str(cfg)).returncode == 2
    assert _cli("media", "ls", str(src)).returncode == 1


def test_our_export_imports_back_unchanged(corpus_small, tmp_path):
    """Round trip: import, export as a file-set, import that into a second gateway: same instances."""
    cfg, data = _gateway(tmp_path, "a")
    assert _cli("import", str(corpus_small / "explicit-be" / "PT"), "--config", str(cfg)).returncode == 0
    pt = pydicom.dcmread(sorted((corpus_small / "explicit-be" / "PT").glob("*.dcm"))[0], stop_before_pixels=True)
    out = tmp_path / "disc"
    exp = _cli("media", "export", str(out), "--series", str(pt.SeriesInstanceUID), "--config", str(cfg))
    assert exp.returncode == 0, exp.stdout + exp.stderr
    cfg2, data2 = _gateway(tmp_path, "b")
    run = _cli("media", "import", str(out), "--config", str(cfg2))
    assert run.returncode == 0 and "imported 4," in run.stdout, run.stdout + run.stderr
    assert _stored(data2) == _stored(data)


def test_damaged_dicomdir_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    run = _cli("media", "ls", str(bad))
    assert run.returncode == 1 and "cannot read" in run.stderr and "Traceback" not in run.stderr
    cfg, _ = _gateway(tmp_path, "gw")
    imp = _cli("media", "import", str(bad), "--config", str(cfg))
    assert imp.returncode == 1 and "cannot read" in imp.stderr and "Traceback" not in imp.stderr


def _digests(data: Path) -> dict[str, str]:
    with sqlite3.connect(data / "index.db") as db:
        return dict(db.execute("select i.sop_instance_uid, f.sha256 from instances i join files f "
                               "on f.instance_fk = i.id"))


def test_import_twice_counts_duplicates_from_the_storage_outcome(corpus_small, tmp_path):
    """`dicom-gateway import` of the same folder twice: the second time every object is a
    duplicate, as the storage service answered it (no pre-check), and nothing is written."""
    cfg, data = _gateway(tmp_path, "gw")
    folder = corpus_small / "implicit" / "CT"
    first = _cli("import", str(folder), "--config", str(cfg))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "imported 4, duplicates 0, skipped 0, failed 0" in first.stdout
    before = _digests(data)
    again = _cli("import", str(folder), "--config", str(cfg))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "imported 0, duplicates 4, skipped 0, failed 0" in again.stdout
    assert "kept first" not in again.stdout  # byte-identical copies are counted, not listed
    assert _digests(data) == before


def _changed_copy(src: Path, dst: Path) -> Path:
    """The same SOP Instance (same study and series) with other content."""
    ds = pydicom.dcmread(src)
    ds.SeriesDescription = "changed after the first import"
    dst.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dst)
    return dst


@pytest.mark.parametrize("policy", ["keep-first", "overwrite"])
def test_other_content_under_a_stored_uid_follows_duplicate_policy(corpus_small, tmp_path, policy):
    """STO-6 through `media import`: keep-first keeps the stored version and counts the file as
    a duplicate (listed as kept first); overwrite stores the new version and counts it imported."""
    data = tmp_path / "gw-data"
    cfg = write_config(tmp_path / "gw-cfg", f'[node]\ndata_dir = "{data}"\n',
                       **{"plugins/storage.toml": f'duplicate_policy = "{policy}"\n'})
    original = sorted((corpus_small / "explicit-le" / "MR").glob("*.dcm"))[0]
    assert _cli("import", str(original), "--config", str(cfg)).returncode == 0
    before = _digests(data)
    changed = _changed_copy(original, tmp_path / "stick" / "MR1")
    run = _cli("media", "import", str(changed.parent), "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    uid = str(pydicom.dcmread(original, stop_before_pixels=True).SOPInstanceUID)
    if policy == "keep-first":
        assert "imported 0, duplicates 1, skipped 0, failed 0" in run.stdout
        assert f"kept first  {changed}: other content" in run.stdout
        assert _digests(data) == before
    else:
        assert "imported 1, duplicates 0, skipped 0, failed 0" in run.stdout
        assert _digests(data)[uid] != before[uid]


def test_an_outcome_never_reaches_the_wire():
    """Response.outcome is for callers in this process: the C-STORE-RSP carries only the status
    (and comment / extra when given)."""
    from gateway.messages import Response
    from gateway.net.dispatch import _to_wire

    assert _to_wire(Response(0x0000, outcome="duplicate")) == 0x0000
    wire = _to_wire(Response(0xB000, error_comment="x", outcome="kept-first"))
    assert sorted(e.keyword for e in wire) == ["ErrorComment", "Status"]
