"""Concurrent stores of one SOP Instance UID (STO-5, STO-6, STO-7): a peer that
resends on a new association while the first is still being written, or two
senders with the same object, must never leave a mixed file or an index row
whose digest is not the file's."""

from __future__ import annotations

import hashlib
import struct
import threading

import pytest
from pydicom.dataset import FileMetaDataset
from pynetdicom import AE
from pynetdicom.dsutils import encode

from conftest import basic_toml, free_port, write_config
from gateway.index import Index
from test_storage import CT, _ct, dataset_part


def _big(value: int):
    ds = _ct(uid="1.2.826.0.1.3680043.10.1472.92.1", value=value)
    ds.Rows = ds.Columns = 1024
    ds.PixelData = struct.pack("<H", value) * (1024 * 1024)  # 2 MiB: spooled by the receiver
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    return ds


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("same_content", [True, False])
def test_concurrent_stores_of_one_instance_stay_consistent(gateway_process, tmp_path, same_content, workers):
    port = free_port()
    data = tmp_path / "data"
    toml = basic_toml(port, data).replace("workers = 1", f"workers = {workers}")
    cfg = write_config(tmp_path / "cfg", toml)
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    gp.wait_for_output("gateway ready")
    versions = [_big(1), _big(1 if same_content else 2)]
    sent = {hashlib.sha256(encode(v, False, True)).hexdigest() for v in versions}
    assocs = []
    for _ in versions:
        ae = AE(ae_title="RACER")
        ae.add_requested_context(CT, ["1.2.840.10008.1.2.1"])
        assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
        assert assoc.is_established
        assocs.append(assoc)
    idx = Index("sqlite:///" + str((data / "index.db").resolve()))
    archive = data / "archive"
    for _round in range(6):
        statuses: list[int] = []
        barrier = threading.Barrier(len(versions))

        def send(assoc, ds):
            barrier.wait()
            statuses.append(int(assoc.send_c_store(ds).Status))

        threads = [threading.Thread(target=send, args=(a, v)) for a, v in zip(assocs, versions)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert statuses == [0, 0], statuses  # overwrite: the later one replaces the first (or is a no-op)
        row = idx.find_instance(versions[0].SOPInstanceUID)
        stored = archive / row.file.path
        part = hashlib.sha256(dataset_part(stored)).hexdigest()
        assert part in sent, "the stored dataset is neither of the objects sent"
        assert row.file.sha256 == part, "the index digest is not the stored object's"
    for a in assocs:
        a.release()
    assert not [p for p in archive.rglob("*.tmp")]


def test_two_writes_of_one_object_never_mix(tmp_path):
    """The filesystem backend alone: each write has its own temporary file, so
    whichever rename lands last, the file is one whole object (before: one
    shared temporary name per process, and the renamed file held both)."""
    import os

    from gateway.messages import DatasetPayload
    from gateway_plugins.filesystem import FilesystemBackend

    backend = FilesystemBackend(tmp_path / "archive")
    bodies = [os.urandom(16 << 20), os.urandom(16 << 20)]
    spools = []
    for n, body in enumerate(bodies):
        spools.append(tmp_path / f"spool{n}")
        spools[-1].write_bytes(body)
    for _round in range(5):
        results: list = []

        def write(spool):
            try:
                results.append(backend.write("st/se/x.dcm", b"\0" * 132, DatasetPayload(path=spool)))
            except OSError as exc:
                results.append(exc)

        threads = [threading.Thread(target=write, args=(s,)) for s in spools]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [132 + (16 << 20)] * 2, results
        assert (tmp_path / "archive" / "st" / "se" / "x.dcm").read_bytes()[132:] in bodies
    assert sorted(p.name for p in (tmp_path / "archive" / "st" / "se").iterdir()) == ["x.dcm"]


def test_instance_lock_serializes_threads(tmp_path):
    import time

    from gateway_plugins.storage import instance_lock

    inside = []
    overlaps = []

    def hold():
        with instance_lock(tmp_path, "1.2.3"):
            inside.append(1)
            overlaps.append(len(inside))
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1, 1, 1, 1]
