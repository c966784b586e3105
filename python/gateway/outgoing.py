"""SND-7 per-destination conversions of Secondary Capture objects on the way out.

Objects are stored byte-for-byte as received (DESIGN §2); a destination may
ask for them differently:

* ``multiframe_sc_to_single``: a multi-frame SC image (Grayscale Byte
  1.2.840.10008.5.1.4.1.1.7.2, Grayscale Word .7.3, True Colour .7.4) becomes
  one SC Image (1.2.840.10008.5.1.4.1.1.7) per frame. Frames are cut from the
  Pixel Data without decoding (native: a byte slice; encapsulated: the frame's
  fragments), so the pixel values are exactly the source's.
* ``color_sc``: a colour SC image (Samples per Pixel 3, RGB or YBR_FULL*) is
  sent as ``color`` (untouched), ``grayscale`` (MONOCHROME2, ITU-R BT.601
  luma), or ``both``.

Every derived object gets a new SOP Instance UID computed from the source's
UID, the kind of conversion and the frame number, so a resend produces the
same UIDs (the peer sees a duplicate, not a new object). Objects that need no
conversion are returned as the stored file itself (byte-exact).

Multi-frame Single Bit SC (.7.1) is not split: its frames are bit-packed
across byte boundaries; it passes untouched.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
MF_GRAYSCALE_BYTE_SC = "1.2.840.10008.5.1.4.1.1.7.2"
MF_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
MF_TRUE_COLOR_SC = "1.2.840.10008.5.1.4.1.1.7.4"
MULTIFRAME_SC = frozenset({MF_GRAYSCALE_BYTE_SC, MF_GRAYSCALE_WORD_SC, MF_TRUE_COLOR_SC})
#: SOP classes whose colour images ``color_sc`` applies to.
COLOR_SC_CLASSES = frozenset({SC_IMAGE, MF_TRUE_COLOR_SC})
COLOR_MODES = ("color", "grayscale", "both")

EXPLICIT_LE = "1.2.840.10008.1.2.1"
_UNCOMPRESSED = frozenset({"1.2.840.10008.1.2", EXPLICIT_LE, "1.2.840.10008.1.2.2"})
_COLOR_PHOTOMETRIC = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420"})

#: Root for UIDs the gateway derives (under the implementation's org root).
DERIVED_UID_ROOT = "1.2.826.0.1.3680043.10.1472.2."

# Per-frame vectors of the Multi-frame SC / Cine modules (PS3.3 C.8.6.3, C.7.6.5):
# meaningless on a single-frame image.
_PER_FRAME_TAGS = (
    0x00280008,  # Number of Frames
    0x00280009,  # Frame Increment Pointer
    0x00181063,  # Frame Time
    0x00181065,  # Frame Time Vector
    0x00182001,  # Page Number Vector
    0x00182002,  # Frame Label Vector
    0x00182003,  # Frame Primary Angle Vector
    0x00182004,  # Frame Secondary Angle Vector
    0x00182005,  # Slice Location Vector
    0x00182006,  # Display Window Label Vector
    0x7FE00001,  # Extended Offset Table
    0x7FE00002,  # Extended Offset Table Lengths
)


class ConversionError(ValueError):
    """The object cannot be converted as the destination asks (it never will be as stored)."""


@dataclass(frozen=True)
class Conversions:
    """A destination's SND-7 conversion settings."""

    multiframe_sc_to_single: bool = False
    color_sc: str = "color"

    def __post_init__(self) -> None:
        if self.color_sc not in COLOR_MODES:
            raise ValueError(f"color_sc is one of {', '.join(COLOR_MODES)}, got {self.color_sc!r}")

    @property
    def active(self) -> bool:
        return self.multiframe_sc_to_single or self.color_sc != "color"

    def may_apply(self, sop_class_uid: str) -> bool:
        """Cheap class-level test: can this SOP class be converted at all?"""
        return ((self.multiframe_sc_to_single and sop_class_uid in MULTIFRAME_SC)
                or (self.color_sc != "color" and sop_class_uid in COLOR_SC_CLASSES))


@dataclass(frozen=True)
class Part:
    """One object to put on the wire: the stored file itself, or a converted copy."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    derived: bool = False


def derived_uid(original: str, kind: str, frame: int | None = None) -> str:
    """A UID for an object derived from ``original``; the same inputs always give the same UID."""
    key = f"{original}|{kind}|{frame if frame is not None else ''}".encode()
    number = int.from_bytes(hashlib.sha256(key).digest()[:16], "big")
    uid = DERIVED_UID_ROOT + str(number)
    return uid[:64]


def _header(path: Path) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(os.fspath(path), stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise ConversionError(f"{path}: not a DICOM file ({exc})") from exc
    except (OSError, EOFError) as exc:
        raise ConversionError(f"{path}: unreadable: {exc}") from exc
    except Exception as exc:  # pydicom raises assorted errors on damaged headers
        raise ConversionError(f"{path}: cannot read the header: {exc}") from exc


def _is_color(ds: Any, sop_class: str) -> bool:
    return (sop_class in COLOR_SC_CLASSES
            and int(getattr(ds, "SamplesPerPixel", 1) or 1) == 3
            and str(getattr(ds, "PhotometricInterpretation", "")).strip() in _COLOR_PHOTOMETRIC)


def _frames(ds: Any) -> int:
    try:
        return max(1, int(getattr(ds, "NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _gray_class(sop_class: str) -> str:
    # A true colour multi-frame SC left whole becomes the matching grayscale
    # multi-frame class (True Colour is always 8 bits: Grayscale Byte).
    return MF_GRAYSCALE_BYTE_SC if sop_class == MF_TRUE_COLOR_SC else sop_class


@dataclass(frozen=True)
class _Decision:
    split: bool
    color_mode: str  # what to do with colour: color | grayscale | both (color when not a colour image)
    frames: int


def _decide(path: Path, sop_class: str, conv: Conversions) -> tuple[_Decision, Any] | None:
    if not conv.may_apply(sop_class):
        return None
    ds = _header(path)
    split = conv.multiframe_sc_to_single and sop_class in MULTIFRAME_SC
    color_mode = conv.color_sc if _is_color(ds, sop_class) else "color"
    if not split and color_mode == "color":
        return None
    return _Decision(split, color_mode, _frames(ds)), ds


def plan(path: Path | str, sop_class_uid: str, transfer_syntax_uid: str, conv: Conversions) -> list[tuple[str, str]]:
    """(SOP class, transfer syntax) of every object :func:`prepare` will produce, without producing them.

    Reads the header only when the SOP class can be converted at all.
    """
    path = Path(path)
    decided = _decide(path, sop_class_uid, conv)
    if decided is None:
        return [(sop_class_uid, transfer_syntax_uid)]
    d, _ds = decided
    stored = transfer_syntax_uid
    if d.split:
        base = [(SC_IMAGE, stored)]
    else:
        base = [(sop_class_uid, stored)]
    out: list[tuple[str, str]] = []
    for sc, ts in base:
        if d.color_mode in ("color", "both"):
            out.append((sc, ts))
        if d.color_mode in ("grayscale", "both"):
            out.append((_gray_class(sc), EXPLICIT_LE))
    # Same classes for every frame: one entry per (class, syntax) is enough
    # to build presentation contexts.
    return list(dict.fromkeys(out))


def prepare(path: Path | str, sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str,
            conv: Conversions, workdir: Path | str | None = None) -> list[Part]:
    """The objects to send for one stored file, in order; converted copies are written to ``workdir``.

    Without a conversion that applies, the single Part is the stored file
    itself. Raises ConversionError when the object cannot be converted (a
    damaged header, pixel data that does not match its description, a
    compressed colour image without an installed decoder) and OSError for I/O.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    decided = _decide(path, sop_class_uid, conv)
    if decided is None:
        return [Part(path, sop_class_uid, sop_instance_uid, transfer_syntax_uid)]
    d, _ = decided
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="outgoing-"))
    workdir.mkdir(parents=True, exist_ok=True)
    full = _read_full(path)
    original_uid = str(getattr(full, "SOPInstanceUID", sop_instance_uid) or sop_instance_uid)
    original_class = str(getattr(full, "SOPClassUID", sop_class_uid) or sop_class_uid)

    parts: list[Part] = []
    if d.split:
        for number, frame_ds in _split_frames(full, original_class, original_uid, d.frames):
            parts.extend(_color_variants(frame_ds, d.color_mode, original_class, original_uid, number, workdir, original=None))
    else:
        parts.extend(_color_variants(full, d.color_mode, original_class, original_uid, None, workdir,
                                     original=Part(path, sop_class_uid, sop_instance_uid, transfer_syntax_uid)))
    return parts


def _read_full(path: Path) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(os.fspath(path))
    except Exception as exc:  # pydicom raises assorted errors on damaged files
        raise ConversionError(f"{path}: cannot read: {exc}") from exc


def _split_frames(ds: Any, original_class: str, original_uid: str, frames: int):
    """Yield (frame number, single-frame SC dataset) without decoding pixel values."""
    from pydicom.dataset import Dataset
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.sequence import Sequence

    if "PixelData" not in ds:
        raise ConversionError("multi-frame SC without Pixel Data: nothing to split")
    ts = ds.file_meta.TransferSyntaxUID
    data = ds.PixelData
    if ts.is_compressed:
        try:
            frame_bytes = list(generate_frames(data, number_of_frames=frames))
        except Exception as exc:  # malformed encapsulation
            raise ConversionError(f"cannot split the encapsulated Pixel Data into {frames} frames: {exc}") from exc
        if len(frame_bytes) != frames:
            raise ConversionError(f"Number of Frames is {frames} but the Pixel Data holds {len(frame_bytes)}")
    else:
        rows, cols = int(ds.Rows), int(ds.Columns)
        spp, bits = int(getattr(ds, "SamplesPerPixel", 1) or 1), int(ds.BitsAllocated)
        if bits % 8:
            raise ConversionError(f"Bits Allocated {bits} is not a whole number of bytes; frames cannot be cut apart")
        size = rows * cols * spp * bits // 8
        if len(data) < size * frames:
            raise ConversionError(f"Pixel Data has {len(data)} bytes, {size * frames} expected for {frames} frames")
        frame_bytes = [data[k * size:(k + 1) * size] for k in range(frames)]

    for k, fb in enumerate(frame_bytes, start=1):
        out = _clone(ds)
        for tag in _PER_FRAME_TAGS:
            if tag in out:
                del out[tag]
        uid = derived_uid(original_uid, "frame", k)
        out.SOPClassUID = SC_IMAGE
        out.SOPInstanceUID = uid
        out.file_meta.MediaStorageSOPClassUID = SC_IMAGE
        out.file_meta.MediaStorageSOPInstanceUID = uid
        out.InstanceNumber = k
        src = Dataset()
        src.ReferencedSOPClassUID = original_class
        src.ReferencedSOPInstanceUID = original_uid
        src.ReferencedFrameNumber = k
        out.SourceImageSequence = Sequence([src])
        if ts.is_compressed:
            out.PixelData = encapsulate([fb])
            out["PixelData"].VR = "OB"
            out["PixelData"].is_undefined_length = True
        else:
            if len(fb) % 2:
                fb = fb + b"\0"  # PS3.5 7.1: even value length
            out.PixelData = fb
            out["PixelData"].VR = "OB" if int(ds.BitsAllocated) <= 8 else "OW"
        yield k, out


def _clone(ds: Any) -> Any:
    """A deep copy of everything but Pixel Data (Dataset.copy() shares its elements)."""
    import copy

    from pydicom.dataset import Dataset

    out = Dataset()
    for elem in ds:
        if elem.tag != 0x7FE00010:
            out.add(copy.deepcopy(elem))
    out.file_meta = copy.deepcopy(ds.file_meta)
    return out


def _luma(ds: Any) -> Any:
    """ITU-R BT.601 luma of a colour image (Y' = 0.299 R + 0.587 G + 0.114 B)."""
    import numpy as np
    from pydicom.pixels import pixel_array

    from gateway.transcode import TranscodeError, decode_pixels

    photometric = str(ds.PhotometricInterpretation).strip()
    try:
        if photometric == "YBR_FULL":
            # Native YBR_FULL already carries BT.601 full-range luma in Y.
            arr = pixel_array(ds, raw=True)
            return arr[..., 0].astype(np.uint16 if int(ds.BitsAllocated) > 8 else np.uint8), int(ds.BitsAllocated)
        arr = decode_pixels(ds)  # RGB (pydicom converts YCbCr from decoders to RGB)
    except TranscodeError as exc:
        raise ConversionError(str(exc)) from exc
    except Exception as exc:  # pydicom raises several error types on pixel data that does not match its header
        raise ConversionError(f"cannot decode the colour pixel data: {exc}") from exc
    if arr.shape[-1] != 3:
        raise ConversionError(f"expected 3 samples per pixel, decoded shape {arr.shape}")
    bits = int(ds.BitsAllocated)
    rgb = arr.astype(np.float64)
    y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    top = (1 << int(getattr(ds, "BitsStored", bits) or bits)) - 1
    y = np.clip(np.rint(y), 0, top)
    return y.astype(np.uint16 if bits > 8 else np.uint8), bits


def _grayscale(ds: Any, original_class: str, original_uid: str, frame: int | None) -> Any:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian

    y, bits = _luma(ds)
    out = _clone(ds)
    if "PlanarConfiguration" in out:
        del out.PlanarConfiguration
    for tag in (0x7FE00001, 0x7FE00002):
        if tag in out:
            del out[tag]
    sop_class = _gray_class(str(ds.SOPClassUID))
    uid = derived_uid(original_uid, "gray" if frame is None else "frame-gray", frame)
    out.SOPClassUID = sop_class
    out.SOPInstanceUID = uid
    out.file_meta.MediaStorageSOPClassUID = sop_class
    out.file_meta.MediaStorageSOPInstanceUID = uid
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out.SamplesPerPixel = 1
    out.PhotometricInterpretation = "MONOCHROME2"
    out.BitsAllocated = bits
    out.PixelRepresentation = 0
    image_type = list(getattr(out, "ImageType", []) or [])
    out.ImageType = ["DERIVED", "SECONDARY"] + image_type[2:]
    out.DerivationDescription = "Colour converted to grayscale (ITU-R BT.601 luma) by dicom-gateway (SND-7)"
    # The grayscale copy references the colour object it was made from (the
    # original, and its frame when it was split).
    src = Dataset()
    src.ReferencedSOPClassUID = original_class
    src.ReferencedSOPInstanceUID = original_uid
    if frame is not None:
        src.ReferencedFrameNumber = frame
    out.SourceImageSequence = Sequence([src])
    data = y.astype("<u2" if bits > 8 else "u1").tobytes()
    if len(data) % 2:
        data += b"\0"
    out.PixelData = data
    out["PixelData"].VR = "OB" if bits <= 8 else "OW"
    out["PixelData"].is_undefined_length = False
    return out


def _write(ds: Any, workdir: Path) -> Part:
    path = workdir / f"{ds.SOPInstanceUID}.dcm"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    try:
        ds.save_as(os.fspath(path), enforce_file_format=True)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConversionError(f"cannot encode the converted object {ds.SOPInstanceUID}: {exc}") from exc
    return Part(path, str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID), derived=True)


def _color_variants(ds: Any, mode: str, original_class: str, original_uid: str, frame: int | None,
                    workdir: Path, original: Part | None) -> list[Part]:
    parts: list[Part] = []
    if mode in ("color", "both"):
        # The untouched stored file when nothing else changed (byte-exact).
        parts.append(original if original is not None else _write(ds, workdir))
    if mode in ("grayscale", "both"):
        parts.append(_write(_grayscale(ds, original_class, original_uid, frame), workdir))
    return parts


def outgoing_transform(host: Any, config: Any) -> Any:
    """The ``gateway_transform_outgoing`` implementations as one callable
    ``transform(dataset, destination)``, or None when no plugin implements
    the hook (then objects leave untouched, without being parsed)."""
    if host is None or not host.pm.hook.gateway_transform_outgoing.get_hookimpls():
        return None

    def transform(dataset: Any, destination: Any) -> None:
        host.call("gateway_transform_outgoing", dataset=dataset, destination=destination, config=config)
    return transform


def apply_transform(transform: Any, path: Path, destination: Any, out: Path,
                    demographics: Any = None) -> Path:
    """Read the Part 10 file at ``path``, put the patient's corrected ``demographics``
    into it (QRS-7, :func:`gateway.index.demographics.apply_demographics`), let
    ``transform`` change it, write it to ``out`` in its own transfer syntax (File Meta
    kept in step with the dataset's UIDs). With no transform and demographics the
    object already carries, ``path`` itself is returned: it goes byte for byte."""
    import pydicom

    ds = pydicom.dcmread(path)
    changed = False
    if demographics:
        from gateway.index.demographics import apply_demographics

        changed = apply_demographics(ds, demographics)
    if transform is None:
        if not changed:
            return Path(path)
    else:
        transform(ds, destination)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(out, enforce_file_format=True)
    return out
