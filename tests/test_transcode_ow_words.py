"""Issue 15 item 5: OW Pixel Data with Bits Allocated 32/64 is swapped in 16-bit
words for Explicit VR Big Endian (PS3.5 Table 6.2-1, 8.2), as DCMTK does; odd-length
values from a broken sender are padded on output (PS3.5 7.1.1)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, generate_uid

from conftest import dcmtk
from gateway.importer import meta_end
from gateway.transcode import transcode

RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"


def _dose(path: Path, bits: int) -> bytes:
    """A little-endian RT Dose-like object whose pixels are distinct in every byte."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = RT_DOSE, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = "DOSE-1", "RTDOSE"
    ds.Rows = ds.Columns = 4
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = bits - 1, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    dtype = "<u4" if bits == 32 else "<u8"
    ds.PixelData = (np.arange(1, 17, dtype=dtype) * (0x01020304 if bits == 32 else 0x0102030405060708)).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = RT_DOSE, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return ds.PixelData


def _dataset(path: Path) -> bytes:
    raw = path.read_bytes()
    return raw[meta_end(raw):]


@pytest.mark.parametrize("bits", [32, 64])
def test_big_endian_ow_equals_dcmconv_both_ways(tmp_path, bits):
    le = tmp_path / "le.dcm"
    _dose(le, bits)
    ours_be, dcmtk_be = tmp_path / "ours_be.dcm", tmp_path / "dcmtk_be.dcm"
    transcode(le, "explicit-be", out=ours_be)
    subprocess.run([dcmtk("dcmconv"), "+tb", str(le), str(dcmtk_be)], check=True, capture_output=True)
    assert pydicom.dcmread(ours_be).file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    assert _dataset(ours_be) == _dataset(dcmtk_be)  # the whole dataset, byte for byte
    # and back: DCMTK reads our big endian to the original; we read DCMTK's to the original
    back_dcmtk, back_ours = tmp_path / "back_dcmtk.dcm", tmp_path / "back_ours.dcm"
    subprocess.run([dcmtk("dcmconv"), "+te", str(ours_be), str(back_dcmtk)], check=True, capture_output=True)
    transcode(dcmtk_be, "explicit-le", out=back_ours)
    assert _dataset(back_dcmtk) == _dataset(le) == _dataset(back_ours)


def test_sixty_four_bit_ow_swaps_in_16_bit_words(tmp_path):
    le = tmp_path / "le64.dcm"
    pixels = _dose(le, 64)
    be = transcode(le, "explicit-be")
    words = np.frombuffer(pixels, dtype="<u2").byteswap().tobytes()
    assert be.endswith(words)
    assert transcode(be, "explicit-le").endswith(pixels)


def test_odd_length_values_are_padded(tmp_path):
    """A broken sender's odd-length LO is written with even length, space-padded; dcmdump reads it."""
    raw = bytearray(_dataset_with_odd_patient_id())
    out = transcode(bytes(raw), "explicit-le", src_syntax="implicit", src_raw=True)
    path = tmp_path / "odd.dcm"
    path.write_bytes(out)
    dump = subprocess.run([dcmtk("dcmdump"), "+L", str(path)], capture_output=True, text=True, check=True)
    assert "(0010,0020) LO [ID7]" in dump.stdout and "#   4, 1 PatientID" in dump.stdout
    assert "W:" not in dump.stderr and "E:" not in dump.stderr


def _dataset_with_odd_patient_id() -> bytes:
    import struct

    def el(group: int, elem: int, value: bytes) -> bytes:
        return struct.pack("<HHI", group, elem, len(value)) + value

    return (el(0x0008, 0x0016, b"1.2.840.10008.5.1.4.1.1.7\0") + el(0x0008, 0x0018, b"1.2.3.4\0")
            + el(0x0010, 0x0020, b"ID7"))
