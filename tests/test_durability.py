"""Durability (STO-7, DESIGN §2): SIGKILL the worker processes while four
senders are storing; every object that got Success must be on disk,
byte-identical, and in the index, and no index row may point at a missing
file."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, _config
from pynetdicom.dsutils import encode

from conftest import basic_toml, free_port, write_config
from gateway.index import Index
from test_storage import CT, dataset_part

N_OBJECTS = 320
N_SENDERS = 4


def make_objects(folder: Path) -> list[tuple[str, Path, bytes]]:
    from gateway_plugins.storage import file_meta

    folder.mkdir()
    out = []
    for n in range(N_OBJECTS):
        ds = Dataset()
        ds.SOPClassUID = CT
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.1472.95.{n}"
        ds.PatientID = f"DUR{n % 7}"
        ds.PatientName = f"DURABLE^{n % 7}"
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1472.94.{n % 7}"
        ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.1472.93.{n % 13}"
        ds.Modality = "CT"
        ds.InstanceNumber = n
        ds.Rows = ds.Columns = 96
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = struct.pack("<H", n) * (96 * 96)
        data = encode(ds, True, True)
        path = folder / f"{n:04d}.dcm"
        path.write_bytes(file_meta(CT, ds.SOPInstanceUID, "1.2.840.10008.1.2", "1.2.3", "T", "") + data)
        out.append((ds.SOPInstanceUID, path, data))
    return out


def workers_of(supervisor_pid: int) -> list[int]:
    kids = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text().split()
    return [int(k) for k in kids]


def sender(port: int, items, acked: set, lock: threading.Lock, deadline: float) -> None:
    queue = list(items)
    while queue and time.monotonic() < deadline:
        ae = AE(ae_title="DURABLE")
        ae.add_requested_context(CT, ["1.2.840.10008.1.2"])
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
        assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
        if not assoc.is_established:
            time.sleep(0.2)  # workers restarting
            continue
        try:
            while queue:
                uid, path, _ = queue[0]
                try:
                    rsp = assoc.send_c_store(path)
                except Exception:
                    break
                if not rsp or "Status" not in rsp:
                    break  # aborted: resend on a new association
                if int(rsp.Status) == 0:
                    with lock:
                        acked.add(uid)
                queue.pop(0)
                if not assoc.is_established:
                    break
        finally:
            if assoc.is_established:
                assoc.release()


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_acknowledged_object(gateway_process, tmp_path, monkeypatch):
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    objects = make_objects(tmp_path / "objects")
    port = free_port()
    data = tmp_path / "data"
    toml = basic_toml(port, data).replace("workers = 1", "workers = 2")
    cfg = write_config(tmp_path / "cfg", toml)
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    gp.wait_for_output("gateway ready")

    acked: set[str] = set()
    lock = threading.Lock()
    deadline = time.monotonic() + 240
    threads = [threading.Thread(target=sender, args=(port, objects[i::N_SENDERS], acked, lock, deadline))
               for i in range(N_SENDERS)]
    for t in threads:
        t.start()
    kills = 0
    for fraction in (0.25, 0.6):
        while len(acked) < N_OBJECTS * fraction and any(t.is_alive() for t in threads):
            time.sleep(0.02)
        for pid in workers_of(gp.proc.pid):
            os.kill(pid, signal.SIGKILL)
            kills += 1
    for t in threads:
        t.join(300)
    assert kills >= 2
    assert len(acked) >= N_OBJECTS * 0.9, f"only {len(acked)} acknowledged"
    assert gp.stop() == 0
    assert "worker died; restarting" in gp.output()

    # Restart on the same data directory: the archive and index survive as they are.
    gp2 = gateway_process(["serve", "--config", str(cfg)], port)
    gp2.wait_for_output("gateway ready")
    idx = Index("sqlite:///" + str((data / "index.db").resolve()))
    archive = data / "archive"
    for uid, _, sent in objects:
        if uid not in acked:
            continue
        row = idx.find_instance(uid)
        assert row is not None, f"{uid} acknowledged but not in the index"
        stored = archive / row.file.path
        assert stored.exists(), f"{uid} acknowledged but its file is missing"
        assert dataset_part(stored) == sent, f"{uid} stored bytes differ from what was sent"
    assert idx.dangling_files(archive) == []
    # Spool files of the killed workers were cleaned when their successors started.
    assert [p for p in (data / "spool").iterdir()] == []


def test_kill_between_file_and_index_commit_is_unacknowledged_unindexed_and_reported(gateway_process, tmp_path):
    """The worker dies after the object's file is durable and in place but before its
    index transaction commits (a rule action that SIGKILLs it, inside that
    transaction): the peer never gets Success, nothing of the object is in the index
    (not its instance, nor a new patient/study/series), `archive check` reports the
    file, and the peer's resend is stored and clears the report."""
    import subprocess

    from conftest import dcmtk, write_cts

    port = free_port()
    data = tmp_path / "d"
    cfg = write_config(tmp_path / "cfg", basic_toml(port, data, modules=["killer"]), **{"routes/die.toml": '[[rule]]\nname = "die"\n'
                                             'match = { calling_ae = "KILLER" }\naction = "die"\n'})
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    fine = write_cts(tmp_path / "fine", 3, patient_id="FINE")
    doomed = write_cts(tmp_path / "doomed", 1, patient_id="DOOMED")

    def storescu(ae, files):
        return subprocess.run([dcmtk("storescu"), "-aet", ae, "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port),
                               *map(str, files)], env=dict(os.environ, TCP_NODELAY="1"),
                              capture_output=True, text=True, timeout=60)

    assert storescu("FINE", fine).returncode == 0
    killed = storescu("KILLER", doomed)
    assert killed.returncode != 0 or "Success" not in killed.stderr, "a killed store was acknowledged"

    def check():
        return subprocess.run([sys.executable, "-m", "gateway.cli", "archive", "check", "--config", str(cfg),
                               "--json"], capture_output=True, text=True, timeout=60)

    deadline = time.monotonic() + 20
    while True:  # the supervisor restarts the worker
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            assert time.monotonic() < deadline, gp.output()
            time.sleep(0.2)
    idx = Index(f"sqlite:///{data / 'index.db'}")
    stats = idx.stats()
    assert stats["instances"] == 3 and stats["patients"] == 1, stats  # no half of the killed object
    report = check()
    assert report.returncode == 1, report.stdout + report.stderr
    found = json.loads(report.stdout)
    assert len(found["unindexed"]) == 1 and found["unindexed"][0].endswith(f"{doomed[0].stem}.dcm"), found
    assert found["missing_or_wrong_size"] == [] and found["partial"] == []

    assert storescu("FINE", doomed).returncode == 0  # the peer's resend, from an AE the rule spares
    assert idx.stats()["instances"] == 4
    clean = check()
    assert clean.returncode == 0 and json.loads(clean.stdout)["unindexed"] == [], clean.stdout


def test_archive_scan_tells_interrupted_writes_from_unindexed_files(tmp_path):
    from gateway_plugins.archive_check import scan_archive

    (tmp_path / "1.2" / "1.2.3").mkdir(parents=True)
    for name in ("9.dcm", "8.dcm", ".8.dcm.4242.k2j3.tmp"):
        (tmp_path / "1.2" / "1.2.3" / name).write_bytes(b"x")
    assert scan_archive(tmp_path, {"1.2/1.2.3/9.dcm"}) == (["1.2/1.2.3/8.dcm"], ["1.2/1.2.3/.8.dcm.4242.k2j3.tmp"])
