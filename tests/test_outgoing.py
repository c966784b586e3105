"""SND-7 conversions on the way out (gateway.outgoing): multi-frame SC -> single-frame SC,
colour SC -> grayscale (ITU-R BT.601 luma) / both; everything else byte-exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, RLELossless

from gateway.outgoing import (MF_GRAYSCALE_BYTE_SC, MF_GRAYSCALE_WORD_SC, MF_TRUE_COLOR_SC, SC_IMAGE,
                              ConversionError, Conversions, derived_uid, plan, prepare)

SPLIT = Conversions(multiframe_sc_to_single=True)
GRAY = Conversions(color_sc="grayscale")
BOTH = Conversions(color_sc="both")
SPLIT_GRAY = Conversions(multiframe_sc_to_single=True, color_sc="grayscale")


def _one(corpus: Path, syntax: str, kind: str, n: int = 1) -> Path:
    return corpus / syntax / kind / f"{kind}_{n:04d}.dcm"


def _prepare(path: Path, conv: Conversions, workdir: Path):
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    args = (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
    parts = prepare(path, args[0], str(ds.SOPInstanceUID), args[1], conv, workdir)
    # plan() announces exactly the (class, syntax) pairs prepare() produces (contexts are built from it).
    assert set(plan(path, *args, conv)) == {(p.sop_class_uid, p.transfer_syntax_uid) for p in parts}
    return ds, parts


def _luma(rgb: np.ndarray) -> np.ndarray:
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["CT", "PT", "NM", "SC", "RTSTRUCT", "GENIE"])
def test_everything_else_passes_untouched(corpus_small, tmp_path, kind):
    """SND-7 applies to multi-frame/colour SC only: any other object is the stored file itself
    (byte-exact), even with every conversion switched on."""
    path = _one(corpus_small, "implicit", kind)
    before = path.read_bytes()
    for conv in (SPLIT_GRAY, BOTH):
        _ds, parts = _prepare(path, conv, tmp_path)
        assert len(parts) == 1 and parts[0].path == path and not parts[0].derived
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("syntax", ["implicit", "explicit-le", "explicit-be"])
def test_multiframe_grayscale_split_into_single_frames(corpus_small, tmp_path, syntax):
    """Multi-frame Grayscale Byte SC -> one SC Image per frame: deterministic new UIDs, Instance
    Number = frame number, no Number of Frames, Source Image Sequence -> the original frame,
    pixel values identical, same transfer syntax as stored."""
    path = _one(corpus_small, syntax, "MFGRAY")
    src, parts = _prepare(path, SPLIT, tmp_path / "a")
    full = pydicom.dcmread(path)
    frames = int(full.NumberOfFrames)
    assert len(parts) == frames > 1
    for k, part in enumerate(parts, start=1):
        ds = pydicom.dcmread(part.path)
        assert part.derived and part.sop_class_uid == SC_IMAGE == ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID
        assert ds.SOPInstanceUID == part.sop_instance_uid == derived_uid(src.SOPInstanceUID, "frame", k)
        assert ds.SOPInstanceUID != src.SOPInstanceUID and len(ds.SOPInstanceUID) <= 64
        assert ds.InstanceNumber == k and "NumberOfFrames" not in ds and "FrameIncrementPointer" not in ds
        ref = ds.SourceImageSequence[0]
        assert (ref.ReferencedSOPInstanceUID, ref.ReferencedSOPClassUID, ref.ReferencedFrameNumber) == \
            (src.SOPInstanceUID, MF_GRAYSCALE_BYTE_SC, k)
        assert ds.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID
        assert (ds.pixel_array == full.pixel_array[k - 1]).all()
        assert ds.PatientID == full.PatientID and ds.SeriesInstanceUID == full.SeriesInstanceUID
    # A resend yields the same UIDs (the peer sees duplicates, not new objects).
    _src, again = _prepare(path, SPLIT, tmp_path / "b")
    assert [p.sop_instance_uid for p in again] == [p.sop_instance_uid for p in parts]


def test_multiframe_word_big_endian_split_keeps_16_bit_values(tmp_path):
    """Multi-frame Grayscale Word SC stored Explicit VR Big Endian: frames are byte slices in the
    stored byte order, so 16-bit values survive the split."""
    frames = np.arange(3 * 4 * 6, dtype=np.uint16).reshape(3, 4, 6) * 997
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    ds.file_meta.MediaStorageSOPClassUID = MF_GRAYSCALE_WORD_SC
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
    ds.SOPClassUID, ds.SOPInstanceUID = MF_GRAYSCALE_WORD_SC, "1.2.3.4.5"
    ds.PatientID, ds.Modality, ds.ConversionType = "P1", "OT", "WSD"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = 4, 6, 3
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = frames.astype(">u2").tobytes()
    ds["PixelData"].VR = "OW"
    path = tmp_path / "word.dcm"
    ds.save_as(path, enforce_file_format=True)
    _src, parts = _prepare(path, SPLIT, tmp_path / "out")
    assert len(parts) == 3
    for k, part in enumerate(parts):
        out = pydicom.dcmread(part.path)
        assert out.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
        assert (out.pixel_array == frames[k]).all()


def test_encapsulated_multiframe_split_without_decoding(corpus_small, tmp_path):
    """An RLE-compressed multi-frame SC is split by frame fragments: each single-frame object
    stays RLE Lossless and decodes to the source frame."""
    full = pydicom.dcmread(_one(corpus_small, "explicit-le", "MFGRAY"))
    expected = full.pixel_array.copy()
    full.compress(RLELossless)
    path = tmp_path / "rle.dcm"
    full.save_as(path, enforce_file_format=True)
    _src, parts = _prepare(path, SPLIT, tmp_path / "out")
    assert len(parts) == len(expected)
    for k, part in enumerate(parts):
        out = pydicom.dcmread(part.path)
        assert part.transfer_syntax_uid == RLELossless == out.file_meta.TransferSyntaxUID
        assert (out.pixel_array == expected[k]).all()


@pytest.mark.parametrize("syntax", ["implicit", "explicit-be"])
def test_colour_sc_to_grayscale(corpus_small, tmp_path, syntax):
    """Colour SC (RGB) as grayscale: MONOCHROME2, BT.601 luma, new deterministic UID, DERIVED,
    referencing the colour original; the original itself is not sent."""
    path = _one(corpus_small, syntax, "SC", 4)
    src, parts = _prepare(path, GRAY, tmp_path)
    assert src.PhotometricInterpretation == "RGB"
    [part] = parts
    ds = pydicom.dcmread(part.path)
    assert part.derived and ds.SOPInstanceUID == derived_uid(src.SOPInstanceUID, "gray")
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.SOPClassUID) == (1, "MONOCHROME2", SC_IMAGE)
    assert "PlanarConfiguration" not in ds and ds.ImageType[0] == "DERIVED"
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert (ds.pixel_array == _luma(pydicom.dcmread(path).pixel_array.astype(float))).all()


def test_colour_sc_both_sends_original_and_grayscale(corpus_small, tmp_path):
    """color_sc = both: the stored colour object untouched, then its grayscale copy."""
    path = _one(corpus_small, "explicit-le", "SC", 4)
    src, parts = _prepare(path, BOTH, tmp_path)
    assert [p.derived for p in parts] == [False, True]
    assert parts[0].path == path and parts[0].sop_instance_uid == src.SOPInstanceUID
    assert pydicom.dcmread(parts[1].path).PhotometricInterpretation == "MONOCHROME2"


def test_grayscale_sc_is_not_a_colour_image(corpus_small, tmp_path):
    """SC Image Storage in MONOCHROME1/2 is not colour: color_sc leaves it byte-exact."""
    for n in (1, 3):  # MONOCHROME2, MONOCHROME1
        path = _one(corpus_small, "explicit-le", "SC", n)
        _src, parts = _prepare(path, GRAY, tmp_path)
        assert [(p.path, p.derived) for p in parts] == [(path, False)]


def test_ybr_full_luma_is_the_y_channel(tmp_path):
    """Native YBR_FULL already carries BT.601 luma: the grayscale copy is its Y samples."""
    ybr = np.random.default_rng(7).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SC_IMAGE, "1.2.3.9"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL", 0
    ds.Rows, ds.Columns = 5, 7
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = ybr.tobytes() + b"\0"  # odd length padded
    ds["PixelData"].VR = "OB"
    path = tmp_path / "ybr.dcm"
    ds.save_as(path, enforce_file_format=True)
    _src, [part] = _prepare(path, GRAY, tmp_path / "out")
    assert (pydicom.dcmread(part.path).pixel_array == ybr[..., 0]).all()


def test_true_colour_multiframe_split_and_grayscale(corpus_small, tmp_path):
    """Multi-frame True Colour SC: split + grayscale gives one grayscale SC Image per frame;
    grayscale alone keeps it whole as Multi-frame Grayscale Byte SC."""
    path = _one(corpus_small, "explicit-le", "MFRGB")
    rgb = pydicom.dcmread(path).pixel_array.astype(float)
    src, parts = _prepare(path, SPLIT_GRAY, tmp_path / "split")
    assert len(parts) == len(rgb) > 1
    for k, part in enumerate(parts, start=1):
        ds = pydicom.dcmread(part.path)
        assert ds.SOPClassUID == SC_IMAGE and ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.SOPInstanceUID == derived_uid(src.SOPInstanceUID, "frame-gray", k)
        assert ds.SourceImageSequence[0].ReferencedFrameNumber == k
        assert (ds.pixel_array == _luma(rgb[k - 1])).all()
    _src, [whole] = _prepare(path, GRAY, tmp_path / "whole")
    ds = pydicom.dcmread(whole.path)
    assert whole.sop_class_uid == MF_GRAYSCALE_BYTE_SC and int(ds.NumberOfFrames) == len(rgb)
    assert (ds.pixel_array == _luma(rgb)).all()
    assert src.SOPClassUID == MF_TRUE_COLOR_SC


def test_bad_input_gives_a_specific_error(corpus_small, tmp_path):
    """A missing file, pixel data shorter than Number of Frames says, a non-DICOM file:
    ConversionError naming the problem; an unknown colour mode is refused up front."""
    with pytest.raises(ConversionError, match="no such file"):
        prepare(tmp_path / "gone.dcm", MF_GRAYSCALE_BYTE_SC, "1.2", "1.2.840.10008.1.2.1", SPLIT, tmp_path)
    full = pydicom.dcmread(_one(corpus_small, "explicit-le", "MFGRAY"))
    full.NumberOfFrames = int(full.NumberOfFrames) + 3
    short = tmp_path / "short.dcm"
    full.save_as(short, enforce_file_format=True)
    with pytest.raises(ConversionError, match="Pixel Data has"):
        _prepare(short, SPLIT, tmp_path / "out")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"hello" * 50)
    with pytest.raises(ConversionError):
        plan(junk, MF_GRAYSCALE_BYTE_SC, "1.2.840.10008.1.2.1", SPLIT)
    with pytest.raises(ValueError, match="color_sc"):
        Conversions(color_sc="sepia")
