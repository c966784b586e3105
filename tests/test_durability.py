"""Durability (STO-7, DESIGN §2): SIGKILL the worker processes while four
senders are storing; every object that got Success must be on disk,
byte-identical, and in the index, and no index row may point at a missing
file."""

from __future__ import annotations

import os
import signal
import struct
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
