"""Import from folders (MED-4), full disk (STO-8 A700) and the low-water mark."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import basic_toml, free_port
from gateway.index import Index
from gateway.net.scu import AssociationFailed, Peer, echo
from test_storage import CT, _ct, dataset_part, manifest, send_dataset


def gateway_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=120)


def test_import_folder_without_dicomdir(tmp_path, corpus_small):
    folder = tmp_path / "media"
    shutil.copytree(corpus_small / "implicit", folder)
    (folder / "README.TXT").write_text("not dicom")
    (folder / "DICOMDIR").write_bytes(b"\0" * 200)
    data = tmp_path / "data"
    out = gateway_cli("import", str(folder), "--data-dir", str(data))
    assert out.returncode == 0, out.stderr
    files = [f for f in manifest(corpus_small)["files"] if f["syntax"] == "implicit"]
    assert f"imported {len(files)}, duplicates 0, skipped 2, failed 0" in out.stdout
    assert "README.TXT: not DICOM" in out.stdout and "DICOMDIR" in out.stdout
    idx = Index("sqlite:///" + str((data / "index.db").resolve()))
    assert idx.stats()["instances"] == len(files)
    for f in files:
        stored = data / "archive" / f["study_instance_uid"] / f["series_instance_uid"] / f"{f['sop_instance_uid']}.dcm"
        assert dataset_part(stored) == dataset_part(corpus_small / f["path"])
    ls = gateway_cli("ls", "--data-dir", str(data), "--patient-name", "m?ller*")
    assert ls.returncode == 0 and "Müller^Jürgen" in ls.stdout and "ANCHOR" not in ls.stdout


def test_import_reports_failures_and_goes_on(tmp_path, corpus_small):
    folder = tmp_path / "media"
    folder.mkdir()
    ct = sorted((corpus_small / "explicit-le" / "CT").glob("*.dcm"))
    shutil.copy(ct[0], folder / "good.dcm")
    raw = ct[1].read_bytes()
    (folder / "broken.dcm").write_bytes(raw[:400])  # cut inside the header
    out = gateway_cli("import", str(folder), "--data-dir", str(tmp_path / "data"))
    assert out.returncode == 1
    assert "imported 1" in out.stdout and "failed 1" in out.stdout and "broken.dcm" in out.stderr


@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here ({res.stderr.strip()}); needs root or CAP_SYS_ADMIN")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _big_ct(n: int):
    ds = _ct(uid=f"1.2.826.0.1.3680043.10.1472.96.{n}", value=n)
    ds.Rows = ds.Columns = 512
    ds.PixelData = bytes([n % 256]) * (512 * 512 * 2)
    return ds


def test_full_disk_answers_a700_and_removes_the_partial_file(inprocess_gateway, tmp_path, tiny_disk):
    port = free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "data"),
                           **{"plugins/storage.toml": f'root = "{tiny_disk}"\nlow_water_mark = 0\n'})
    statuses = [send_dataset(port, _big_ct(n), CT)[0] for n in range(1, 6)]
    assert statuses[:3] == [0, 0, 0] and 0xA700 in statuses[3:], statuses
    stored = sorted(p.name for p in tiny_disk.rglob("*") if p.is_file())
    assert len(stored) == statuses.count(0)
    assert not any(name.endswith(".tmp") for name in stored)  # no partial file
    idx = Index(gw.worker.runtime.config.effective_database_url())
    assert idx.stats()["instances"] == statuses.count(0)
    assert idx.dangling_files(tiny_disk) == []
    assert echo(Peer("127.0.0.1", port, called_ae="DICOM_GATEWAY"))[0].status == 0  # still serving


def test_low_water_mark_refuses_associations_until_space_returns(inprocess_gateway, tmp_path, tiny_disk):
    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "data"),
                      **{"plugins/storage.toml": f'root = "{tiny_disk}"\nlow_water_mark = "50%"\n'})
    filler = tiny_disk / "filler.bin"
    filler.write_bytes(b"\0" * 1_300_000)
    with pytest.raises(AssociationFailed) as info:
        echo(Peer("127.0.0.1", port, called_ae="DICOM_GATEWAY", timeout=10))
    assert "rejected-transient" in str(info.value) and "local-limit-exceeded" in str(info.value)
    filler.unlink()
    assert echo(Peer("127.0.0.1", port, called_ae="DICOM_GATEWAY"))[0].status == 0


def test_import_file_without_meta_group_length(tmp_path, corpus_small):
    """MED-4: (0002,0000) is missing on some media; the dataset still starts
    after the last File Meta element, not at a guessed offset."""
    import struct

    src = sorted((corpus_small / "explicit-le" / "CT").glob("*.dcm"))[0]
    raw = src.read_bytes()
    (length,) = struct.unpack("<I", raw[140:144])
    folder = tmp_path / "media"
    folder.mkdir()
    (folder / "IM0001").write_bytes(raw[:132] + raw[144:])  # the same file without the group length
    data = tmp_path / "data"
    out = gateway_cli("import", str(folder), "--data-dir", str(data))
    assert out.returncode == 0 and "imported 1," in out.stdout, out.stdout + out.stderr
    stored = next((data / "archive").rglob("*.dcm"))
    assert dataset_part(stored) == raw[144 + length:]
