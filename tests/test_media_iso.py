"""ISO 9660 images as import sources (issue 15 item 3, MED-4): `media ls IMAGE.iso` and
`media import IMAGE.iso`, read through pycdlib without mounting or unpacking the image."""

from __future__ import annotations

import hashlib
import io
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest

from gateway.importer import meta_end
from test_media_import import _cli, _gateway  # the same gateway per test and CLI runner

pycdlib = pytest.importorskip("pycdlib")


def _archived(data: Path) -> dict[str, tuple[str, bytes]]:
    """SOP Instance UID -> (indexed SHA-256, dataset bytes of the archived file)."""
    with sqlite3.connect(data / "index.db") as db:
        rows = db.execute("select i.sop_instance_uid, f.sha256, f.path from instances i "
                          "join files f on f.instance_fk = i.id").fetchall()
    out = {}
    for uid, sha, rel in rows:
        raw = (data / "archive" / rel).read_bytes()
        out[uid] = (sha, raw[meta_end(raw):])
    return out


def _iso_objects(image: Path) -> dict[str, bytes]:
    """SOP Instance UID -> dataset bytes of every object file in the image (DICOMDIR aside)."""
    iso = pycdlib.PyCdlib()
    iso.open(str(image))
    out = {}
    try:
        for dirname, _dirs, files in iso.walk(iso_path="/"):
            for name in files:
                if name.startswith("DICOMDIR"):
                    continue
                buf = io.BytesIO()
                iso.get_file_from_iso_fp(buf, iso_path=dirname.rstrip("/") + "/" + name)
                raw = buf.getvalue()
                meta = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True).file_meta
                out[str(meta.MediaStorageSOPInstanceUID)] = raw[meta_end(raw):]
    finally:
        iso.close()
    return out


@pytest.fixture(scope="module")
def exported(corpus_small, tmp_path_factory):
    """An ISO image the gateway's own exporter wrote (`--format iso`) of the PET/CT study
    (big-endian in the archive, so every object on the image was transcoded)."""
    tmp = tmp_path_factory.mktemp("media_iso")
    cfg, _data = _gateway(tmp, "src")
    imp = _cli("import", str(corpus_small / "explicit-be" / "PT"), str(corpus_small / "explicit-be" / "CT"),
               "--config", str(cfg))
    assert imp.returncode == 0, imp.stdout + imp.stderr
    pt = pydicom.dcmread(sorted((corpus_small / "explicit-be" / "PT").glob("*.dcm"))[0], stop_before_pixels=True)
    out = tmp / "out"
    exp = _cli("media", "export", str(out), "--study", str(pt.StudyInstanceUID), "--format", "iso",
               "--config", str(cfg))
    assert exp.returncode == 0, exp.stdout + exp.stderr
    image = out / "VOL001.iso"
    objects = _iso_objects(image)
    assert len(objects) == 8  # 4 PT + 4 CT
    return SimpleNamespace(image=image, objects=objects, study=str(pt.StudyInstanceUID))


def test_ls_shows_the_dicomdir_tree_of_an_image(exported):
    run = _cli("media", "ls", str(exported.image))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("PATIENT ") and lines[1].startswith("  STUDY ")
    assert sum(l.strip().startswith("IMAGE ") for l in lines) == 8


def test_our_iso_imports_back_byte_identical_then_as_duplicates(exported, tmp_path):
    """Every object of the image is archived with exactly its dataset bytes (and digest);
    a second import of the image stores nothing and counts every object a duplicate."""
    cfg, data = _gateway(tmp_path, "dst")
    run = _cli("media", "import", str(exported.image), "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "imported 8, duplicates 0, skipped 0, failed 0" in run.stdout
    archived = _archived(data)
    assert set(archived) == set(exported.objects)
    for uid, dataset in exported.objects.items():
        sha, stored = archived[uid]
        assert stored == dataset, uid
        assert sha == hashlib.sha256(dataset).hexdigest(), uid
    again = _cli("media", "import", str(exported.image), "--config", str(cfg))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "imported 0, duplicates 8, skipped 0, failed 0" in again.stdout


def test_study_filter_on_an_image(exported, tmp_path):
    cfg, data = _gateway(tmp_path, "dst")
    other = _cli("media", "import", str(exported.image), "--study", "1.2.3.4.5", "--config", str(cfg))
    assert other.returncode == 0 and "imported 0, duplicates 0, skipped 0, failed 0" in other.stdout, other.stdout
    run = _cli("media", "import", str(exported.image), "--study", exported.study, "--config", str(cfg))
    assert run.returncode == 0 and "imported 8," in run.stdout, run.stdout + run.stderr


def test_image_without_dicomdir_is_scanned(corpus_small, tmp_path):
    """MED-4 on an image: no DICOMDIR, files under any names, a non-DICOM file skipped."""
    image = tmp_path / "plain.iso"
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1, vol_ident="PLAIN")
    iso.add_directory("/CT")
    cts = sorted((corpus_small / "implicit" / "CT").glob("*.dcm"))
    for n, f in enumerate(cts):
        iso.add_file(str(f), f"/CT/IMG{n:04d}.DCM;1")
    iso.add_fp(io.BytesIO(b"[autorun]\n"), 10, "/AUTORUN.INF;1")
    iso.write(str(image))
    iso.close()
    assert _cli("media", "ls", str(image)).returncode == 1
    cfg, data = _gateway(tmp_path, "gw")
    run = _cli("media", "import", str(image), "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "imported 4, duplicates 0, skipped 1, failed 0" in run.stdout
    assert f"skipped  {image / 'AUTORUN.INF'}: not DICOM" in run.stdout
    uids = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in cts}
    assert set(_archived(data)) == uids
    assert _cli("media", "import", str(image), "--study", "1.2.3", "--config", str(cfg)).returncode == 2


def test_damaged_images_are_clear_errors(exported, tmp_path):
    """Not an image at all, cut before its directory, or cut in the middle of its files:
    exit 1 and the file named, never a traceback; what the image still holds whole is imported."""
    cfg, data = _gateway(tmp_path, "gw")
    raw = exported.image.read_bytes()
    for name, content in (("junk.iso", b"not an image" * 1000), ("head.iso", raw[:34_000])):
        bad = tmp_path / name
        bad.write_bytes(content)
        for cmd in (("media", "ls", str(bad)), ("media", "import", str(bad), "--config", str(cfg))):
            run = _cli(*cmd)
            assert run.returncode == 1, run.stdout + run.stderr
            assert f"cannot read {bad}: not a readable ISO 9660 image" in run.stderr
            assert "Traceback" not in run.stderr
    cut = tmp_path / "cut.iso"
    cut.write_bytes(raw[:len(raw) * 2 // 3])
    run = _cli("media", "import", str(cut), "--config", str(cfg))
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stdout + run.stderr
    failed = [l for l in run.stderr.splitlines() if l.startswith("  FAILED   ")]
    assert failed and all(l.startswith(f"  FAILED   {cut}/") for l in failed), run.stderr
    assert all("truncated: the image ends inside this file" in l for l in failed), run.stderr
    stored = _archived(data)
    assert 0 < len(stored) == 8 - len(failed), run.stdout + run.stderr
    for uid, (_sha, dataset) in stored.items():  # only whole objects went in
        assert dataset == exported.objects[uid]
