"""pynetdicom SCU -> gateway over both receive paths (foundation issue).

Max PDU 4 KB, 16 KB, 128 KB and unlimited; datasets from 0 bytes to 64 MB,
received by a test plugin (tests/plugins/bytecheck.py) that records the
bytes it got — which also proves a service is added without core changes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pynetdicom.dsutils import encode
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from conftest import basic_toml, free_port

TEST_SOP_CLASS = "1.2.826.0.1.3680043.10.1472.99.1"
MB = 1 << 20


def make_dataset(size: int, uid: str) -> Dataset:
    """A dataset whose implicit-LE encoding is about ``size`` bytes."""
    ds = Dataset()
    ds.SOPClassUID = TEST_SOP_CLASS
    ds.SOPInstanceUID = uid
    ds.PatientID = "BYTES"
    if size > 200:
        ds.add_new(0x00090010, "LO", "GATEWAY TEST")
        pattern = hashlib.sha256(uid.encode()).digest()
        n = size - 200
        n += n % 2
        ds.add_new(0x00091000, "OB", (pattern * (n // len(pattern) + 1))[:n])
    return ds


def encoded(ds: Dataset, syntax: str) -> bytes:
    """Exactly the bytes pynetdicom puts on the wire for ``ds``."""
    return encode(ds, syntax == ImplicitVRLittleEndian, True)


def send(port: int, items, syntax=ImplicitVRLittleEndian, max_pdu=16384):
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(TEST_SOP_CLASS, [syntax])
    ae.maximum_pdu_size = max_pdu
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
    assert assoc.is_established, "association not established"
    statuses = []
    try:
        for item in items:
            if isinstance(item, Dataset):
                item.file_meta = FileMetaDataset()
                item.file_meta.TransferSyntaxUID = syntax
            rsp = assoc.send_c_store(item)
            statuses.append(int(rsp.Status) if "Status" in rsp else None)
    finally:
        assoc.release()
    return statuses


def recorded(data_dir: Path, uid: str) -> dict:
    return json.loads((data_dir / "bytecheck" / f"{uid}.json").read_text())


@pytest.mark.parametrize("receive_path", ["rust", "pynetdicom"])
@pytest.mark.parametrize("max_pdu", [4096, 16384, 131072, 0], ids=["4KB", "16KB", "128KB", "unlimited"])
def test_datasets_arrive_byte_exact(inprocess_gateway, tmp_path, receive_path, max_pdu):
    port = free_port()
    data = tmp_path / "data"
    gw = inprocess_gateway(basic_toml(
        port, data, receive_path=receive_path, modules=["bytecheck"],
        extra_node=f"max_pdu = {max_pdu}\nspool_threshold = {256 * 1024}"))
    sizes = [300, 4000, 70_000, 3 * MB]
    datasets = [make_dataset(s, f"1.2.826.0.1.3680043.10.1472.99.5.{max_pdu}.{i}") for i, s in enumerate(sizes)]
    assert send(gw.port, datasets) == [0] * len(datasets)
    for ds in datasets:
        got = recorded(data, ds.SOPInstanceUID)
        raw = encoded(ds, ImplicitVRLittleEndian)
        assert got["length"] == len(raw)
        assert got["sha256"] == hashlib.sha256(raw).hexdigest()
        assert got["calling_ae"] == "PYNETDICOM"
        if receive_path == "rust":
            # Above the threshold the Rust receiver spooled it straight to a file.
            assert got["spooled"] == (len(raw) > 256 * 1024)
    # Spool files never outlive their message.
    assert list((data / "spool").iterdir()) == []


@pytest.mark.parametrize("receive_path", ["rust", "pynetdicom"])
@pytest.mark.parametrize("max_pdu", [16384, 0], ids=["16KB", "unlimited"])
def test_64mb_dataset(inprocess_gateway, tmp_path, receive_path, max_pdu):
    port = free_port()
    data = tmp_path / "data"
    gw = inprocess_gateway(basic_toml(port, data, receive_path=receive_path, modules=["bytecheck"],
                                      extra_node=f"max_pdu = {max_pdu}"))
    uid = f"1.2.826.0.1.3680043.10.1472.99.6.{max_pdu}"
    ds = make_dataset(64 * MB, uid)
    assert send(gw.port, [ds], syntax=ExplicitVRLittleEndian, max_pdu=max_pdu) == [0]
    raw = encoded(ds, ExplicitVRLittleEndian)
    got = recorded(data, uid)
    assert got["length"] == len(raw) >= 64 * MB - 256
    assert got["sha256"] == hashlib.sha256(raw).hexdigest()
    assert got["transfer_syntax"] == ExplicitVRLittleEndian


@pytest.mark.parametrize("receive_path", ["rust", "pynetdicom"])
def test_zero_byte_dataset(inprocess_gateway, tmp_path, receive_path, monkeypatch):
    """A C-STORE whose data set is empty (0 bytes): File Meta only, sent from a file."""
    from pynetdicom import _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # send the file's bytes as they are
    port = free_port()
    data = tmp_path / "data"
    gw = inprocess_gateway(basic_toml(port, data, receive_path=receive_path, modules=["bytecheck"]))
    uid = "1.2.826.0.1.3680043.10.1472.99.7.1"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = TEST_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ImplicitVRLittleEndian
    empty = Dataset()
    empty.file_meta = meta
    path = tmp_path / "empty.dcm"
    dcmwrite(path, empty, enforce_file_format=True)
    assert send(gw.port, [path]) == [0]
    got = recorded(data, uid)
    assert got["length"] == 0
    assert got["sha256"] == hashlib.sha256(b"").hexdigest()
