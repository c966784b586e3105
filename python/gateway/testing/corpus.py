"""The project's deterministic DICOM test corpus (gateway.testing.corpus).

Every storage SOP class the gateway must accept (STO-1) in every syntax it
must accept (STO-2), for 3 patients in 4 studies, with the cases that break
naive code on purpose: private VRs that exist only in a dictionary (DAT-1), a
private value longer than a 16-bit length (DAT-2), Latin-1 and UTF-8 names
(DAT-3), retired curves, big endian, signed and 8-bit pixel data.

The same arguments give the same bytes (with the same numpy and pydicom):
UIDs are name-based (UUID v5 of the seed and the object's role, PS3.5 B.2),
dates and times are fixed, noise comes from ``numpy.random.default_rng([seed,
type index])`` so ``--only`` writes the same files as a full run.

Layout: ``OUT/TYPE/TYPE_0001.dcm``, or with ``--syntax all``
``OUT/{implicit,explicit-le,explicit-be}/TYPE/TYPE_0001.dcm``, and
``OUT/manifest.json`` (format ``dicom-gateway-corpus/1``, one entry per file
with size and sha256; tests compare against the manifest of the same run).

A converter without this project's private dictionary and rules (DCMTK
``dcmconv``) differs from the target syntax's file in three documented ways,
all valid: private elements from implicit VR become UN (DAT-1), 8-bit pixel
data from implicit VR becomes OW (swapped in BE), and Curve Data (OB) is not
swapped. The gateway's transcoder has no such exceptions (tests/test_transcode.py).

    python -m gateway.testing.corpus --out /tmp/corpus --profile small --syntax all
    python -m gateway.testing.corpus --out /tmp/ct --only CT --only RTSTRUCT --scale 0.1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from gateway.private_dict import PRIVATE_DICTIONARIES

SYNTAXES = {"implicit": ImplicitVRLittleEndian, "explicit-le": ExplicitVRLittleEndian,
            "explicit-be": ExplicitVRBigEndian}
# Append only: a type's index seeds its noise, so reordering would change its pixels.
TYPES = ["CT", "PT", "NM", "SC", "MR", "MFGRAY", "MFRGB", "RTSTRUCT", "CURVE", "GENIE"]
SOP_CLASSES = {  # STO-1
    "CT": "1.2.840.10008.5.1.4.1.1.2", "PT": "1.2.840.10008.5.1.4.1.1.128",
    "NM": "1.2.840.10008.5.1.4.1.1.20", "SC": "1.2.840.10008.5.1.4.1.1.7",
    "MR": "1.2.840.10008.5.1.4.1.1.4", "MFGRAY": "1.2.840.10008.5.1.4.1.1.7.2",
    "MFRGB": "1.2.840.10008.5.1.4.1.1.7.4", "RTSTRUCT": "1.2.840.10008.5.1.4.1.1.481.3",
    "CURVE": "1.2.840.10008.5.1.4.1.1.9",  # Standalone Curve, retired
    "GENIE": "1.2.840.113619.4.27",  # GE GENIE private (seed 003 section 9)
}
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"  # what planning systems reference (RT Referenced Study)
GENIE, PHILIPS = "GEMS_GENIE_2", "Philips PET Private Group"  # DAT-1 private creators
DEFAULT_SEED = 20240315
SDO_CHUNK = 8000  # doubles per SDODoubleData item: 64,000 bytes fit a 16-bit length (seed 003 table 9-2 note 4)
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:dicom-gateway:testing:corpus")


def make_uid(*parts: object) -> str:
    """A name-based UID (2.25 + UUID v5): the same parts give the same UID, no clock, no randomness."""
    return "2.25." + str(uuid.uuid5(_NAMESPACE, "/".join(map(str, parts))).int)


IMPLEMENTATION_CLASS_UID = make_uid("implementation")
IMPLEMENTATION_VERSION = "DGW_TESTDATA_1"


@dataclass(frozen=True)
class Stack:
    """n slices of rows x rows from z0 down in steps of `step` mm."""
    n: int
    rows: int
    z0: float
    step: float

    def positions(self, scale: float) -> list[float]:
        # --scale keeps the extent: fewer slices, wider apart
        n = max(1, round(self.n * scale))
        return [self.z0 - self.step * i * (self.n / n if n < self.n else 1) for i in range(n)]


@dataclass(frozen=True)
class Profile:
    ct: Stack
    pt: Stack
    mr: Stack
    nm: tuple[int, int]  # frames, rows
    sc_rows: int
    mfgray: tuple[int, int]
    mfrgb: tuple[int, int]
    contour_points: int


PROFILES = {
    # benchmarks: whole-body CT 3 mm and PET 4 mm, as a scanner sends them
    "full": Profile(Stack(300, 512, 0.0, 3.0), Stack(200, 200, 0.0, 4.0), Stack(20, 256, 100.0, 6.0),
                    (64, 128), 512, (10, 256), (5, 256), 64),
    # tests: contiguous slabs through the chest, where every RT ROI has contours
    "small": Profile(Stack(4, 256, -396.0, 3.0), Stack(4, 128, -392.0, 4.0), Stack(4, 128, 48.0, 6.0),
                     (8, 64), 256, (4, 128), (2, 128), 32),
}
GENIE_DOUBLES = 9000  # 72,000 bytes: more than a 16-bit length in every profile (DAT-2)

PATIENTS = {  # DAT-3: Latin-1 (ISO_IR 100) and UTF-8 (ISO_IR 192) with three PN component groups
    "P1": dict(SpecificCharacterSet="ISO_IR 100", PatientName="ANCHOR^PETCT^TEST", PatientID="ANC0000001",
               IssuerOfPatientID="ANCHORS", PatientBirthDate="19580704", PatientSex="M", PatientWeight="82"),
    "P2": dict(SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Jürgen", PatientID="GWT0000002",
               IssuerOfPatientID="GWTEST", PatientBirthDate="19710213", PatientSex="M", PatientWeight="91"),
    "P3": dict(SpecificCharacterSet="ISO_IR 192", PatientName="Sato^Hanako=佐藤^花子=さとう^はなこ",
               PatientID="GWT0000003", IssuerOfPatientID="GWTEST", PatientBirthDate="19640520",
               PatientSex="F", PatientWeight="54"),
}
STUDIES = {  # four dates for range matching; P1 has two studies (DAT-4)
    "PETCT": dict(patient="P1", PatientAge="065Y", StudyDate="20240315", StudyTime="081500.000000",
                  AccessionNumber="ACC20240315001", StudyID="PETCT1", StudyDescription="PET-CT WB FDG",
                  ReferringPhysicianName="REFERRER^DOC", InstitutionName="Anchor Test Hospital"),
    "RENO": dict(patient="P1", PatientAge="065Y", StudyDate="20240322", StudyTime="095500.000000",
                 AccessionNumber="ACC20240322007", StudyID="RENO1", StudyDescription="NM Renogram MAG3",
                 ReferringPhysicianName="REFERRER^DOC", InstitutionName="Anchor Test Hospital"),
    "MRHEAD": dict(patient="P2", PatientAge="052Y", StudyDate="20231102", StudyTime="143000.000000",
                   AccessionNumber="ACC20231102042", StudyID="MR1", StudyDescription="MRT Schädel nativ",
                   ReferringPhysicianName="Weiß^Anna^^Dr.", InstitutionName="Klinikum Süd"),
    "PETMIP": dict(patient="P3", PatientAge="060Y", StudyDate="20240607", StudyTime="111000.000000",
                   AccessionNumber="ACC20240607003", StudyID="PETMIP1", StudyDescription="FDG PET MIP 動画 review",
                   ReferringPhysicianName="Suzuki^Ichiro=鈴木^一郎", InstitutionName="東京テスト病院"),
}


def ds_str(v: float, digits: int = 10) -> str:
    """A float as a DS value (at most 16 characters)."""
    while len(s := f"{v:.{digits}g}") > 16:
        digits -= 1
    return s


# ------------------------------------------------------------- building objects
@dataclass
class Obj:
    """A dataset and the values whose bytes depend on the syntax: (tag, kind, array), see encode()."""
    type: str
    name: str
    ds: Dataset
    blobs: list[tuple[int, str, np.ndarray]] = field(default_factory=list)


@dataclass
class Ctx:
    profile: Profile
    scale: float
    seed: int
    rng: np.random.Generator

    def uid(self, *parts: object) -> str:
        return make_uid(self.seed, *parts)


def base(c: Ctx, type_: str, study: str, i: int, series_number: int, modality: str, description: str,
         time: str, maker: tuple[str, str] = ("Philips", "Vereos PET/CT")) -> Dataset:
    """SOP Common, Patient, General Study, General Series and General Equipment of instance i."""
    st = STUDIES[study]
    ds = Dataset()
    put(ds, **PATIENTS[st["patient"]], **{k: v for k, v in st.items() if k != "patient"})
    ds.SOPClassUID = SOP_CLASSES[type_]
    ds.SOPInstanceUID = c.uid(type_, i)
    ds.StudyInstanceUID = c.uid("study", study)
    ds.SeriesInstanceUID = c.uid(type_, "series")
    put(ds, Modality=modality, SeriesNumber=series_number, InstanceNumber=i + 1,
        SeriesDescription=description, SeriesDate=st["StudyDate"], SeriesTime=time,
        ContentDate=st["StudyDate"], ContentTime=time, Manufacturer=maker[0],
        ManufacturerModelName=maker[1], StationName="PETCT01", SoftwareVersions="4.1.2")
    return ds


def put(ds: Dataset, **attributes: object) -> None:
    """Set attributes by keyword, many to a line (the IODs' long attribute lists stay readable)."""
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)


def image(ds: Dataset, pix: np.ndarray, rows: int, photometric: str = "MONOCHROME2",
          bits_stored: int | None = None, planar: int | None = None) -> tuple[int, str, np.ndarray]:
    """Image Pixel module for `pix` (square frames of `rows`); returns its Pixel Data blob."""
    bits = pix.dtype.itemsize * 8
    put(ds, SamplesPerPixel=3 if photometric == "RGB" else 1, PhotometricInterpretation=photometric,
        Rows=rows, Columns=rows, BitsAllocated=bits, BitsStored=bits_stored or bits,
        HighBit=(bits_stored or bits) - 1, PixelRepresentation=int(pix.dtype.kind == "i"))
    if planar is not None:
        ds.PlanarConfiguration = planar
    if bits == 16:  # US or SS by Pixel Representation: implicit readers must resolve it
        ds.SmallestImagePixelValue, ds.LargestImagePixelValue = int(pix.min()), int(pix.max())
        for kw in ("SmallestImagePixelValue", "LargestImagePixelValue"):
            ds[kw].VR = "SS" if pix.dtype.kind == "i" else "US"
    ds.LossyImageCompression = "00"
    return 0x7FE00010, "pixels", pix


def plane(ds: Dataset, z: float, spacing: float, rows: int, frame_of_reference: str) -> None:
    """Frame of Reference and Image Plane of an axial slice at z centred on the isocentre."""
    corner = ds_str(-spacing * rows / 2 + spacing / 2)
    put(ds, FrameOfReferenceUID=frame_of_reference, PositionReferenceIndicator="",
        ImagePositionPatient=[corner, corner, ds_str(z)],
        ImageOrientationPatient=["1", "0", "0", "0", "1", "0"], PixelSpacing=[ds_str(spacing)] * 2,
        SliceLocation=ds_str(z), PatientPosition="HFS")


def code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    put(item, CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)
    return item


def private(ds: Dataset, group: int, creator: str, values: dict[int, object]) -> None:
    """Private elements with the VRs of the project's dictionary (DAT-1), so that the
    explicit files, the transcoder and gateway.dictionaries agree on them."""
    block = ds.private_block(group, creator, create=True)
    table = PRIVATE_DICTIONARIES[creator]
    for element, value in values.items():
        key = f"{group:04X}xx{element:02X}"
        vr = table.get(key) or table[f"50xxxx{element:02X}"]  # GENIE's curve rows cover every odd 50xx group
        block.add_new(element, vr[0], value)


def grid(rows: int, fov: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centre coordinates in mm (x to the left, y to the back)."""
    c = (np.arange(rows) - rows / 2 + 0.5) * fov / rows
    return np.meshgrid(c, c)


def inside(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, a: float, b: float) -> np.ndarray:
    return ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 < 1


# ---------------------------------------------------------------- PET/CT phantom
def outline(z: float) -> dict[str, list[tuple[float, float, float, float]]]:
    """Ellipses (cx, cy, a, b) in mm of the body phantom at table position z (0 = vertex, down to -900).
    The CT and PT pixels and the RT Structure Set contours all come from here, so they agree."""
    t = -z
    rois: dict[str, list[tuple[float, float, float, float]]] = {"BODY": [], "LUNGS": [], "HEART": []}
    if t < 230:  # head and neck
        rois["BODY"].append((0.0, -10.0, 75.0, 90.0) if t < 180 else (0.0, -10.0, 60.0, 60.0))
    elif t < 700:  # trunk
        swell = np.sin(np.pi * (t - 230) / 470)
        rois["BODY"].append((0.0, 10.0, 170 + 15 * swell, 115 + 10 * swell))
        if 260 < t < 480:
            rois["LUNGS"] += [(-75.0, -5.0, 60.0, 80.0), (75.0, -5.0, 60.0, 80.0)]
        if 360 < t < 470:
            rois["HEART"].append((-20.0, -20.0, 55.0, 50.0))
    else:  # legs
        rois["BODY"] += [(-85.0, 10.0, 75.0, 80.0), (85.0, 10.0, 75.0, 80.0)]
    return rois


def paint(xx: np.ndarray, yy: np.ndarray, z: float, values: dict[str, float], background: float) -> np.ndarray:
    img = np.full(xx.shape, background)
    for name in ("BODY", "LUNGS", "HEART"):  # later organs paint over the body
        for ellipse in outline(z)[name]:
            img[inside(xx, yy, *ellipse)] = values[name]
    return img


def make_ct(c: Ctx) -> Iterator[Obj]:
    """Signed 16-bit CT with stored values = HU, so air is negative and the SS VRs matter."""
    stack = c.profile.ct
    xx, yy = grid(stack.rows, 500.0)
    texture = 12 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    for i, z in enumerate(stack.positions(c.scale)):
        ds = base(c, "CT", "PETCT", i, 2, "CT", "CT WB 3.0mm", "080930.000000")
        hu = paint(xx, yy, z, {"BODY": 40.0, "LUNGS": -820.0, "HEART": 45.0}, -1000.0)
        hu[inside(xx, yy, 0, 85, 18, 18) & (hu > -900)] = 650.0  # spine
        hu += np.where(hu > -950, texture, 0) + c.rng.normal(0.0, 8.0, hu.shape)
        put(ds, ImageType=["ORIGINAL", "PRIMARY", "AXIAL"], KVP="120", AcquisitionNumber=1,
            SliceThickness="3", BodyPartExamined="WHOLEBODY", ConvolutionKernel="B",
            RescaleIntercept="0", RescaleSlope="1", RescaleType="HU",
            WindowCenter=["40", "-600"], WindowWidth=["400", "1600"])
        plane(ds, z, 500.0 / stack.rows, stack.rows, c.uid("for"))  # CT and PT share one Frame of Reference
        yield Obj("CT", f"CT_{i + 1:04d}.dcm", ds, [image(ds, np.rint(hu).astype(np.int16), stack.rows)])


def make_pt(c: Ctx) -> Iterator[Obj]:
    """PET in Bq/ml, int16 with a per-slice slope, and Philips' private SUV factor (DAT-1)."""
    stack = c.profile.pt
    xx, yy = grid(stack.rows, 800.0)
    positions = stack.positions(c.scale)
    dose, weight_g = 370e6, 82000.0
    for i, z in enumerate(positions):
        ds = base(c, "PT", "PETCT", i, 3, "PT", "PET WB FDG AC", "081500.000000")
        act = paint(xx, yy, z, {"BODY": 1800.0, "LUNGS": 400.0, "HEART": 9000.0}, 0.0)
        act += 25000.0 * np.exp(-((xx + 40) ** 2 + (yy - 30) ** 2 + (z + 400) ** 2) / 162.0)  # a lesion
        act = np.clip(act * (1 + c.rng.normal(0.0, 0.08, act.shape)), 0.0, None)
        slope = max(float(act.max()), 1.0) / 32767.0
        radiopharmaceutical = Dataset()
        put(radiopharmaceutical,
            Radiopharmaceutical="Fluorodeoxyglucose", RadiopharmaceuticalStartTime="071500.000000",
            RadionuclideTotalDose=ds_str(dose), RadionuclideHalfLife="6586.2",
            RadionuclidePositronFraction="0.9673",
            RadionuclideCodeSequence=Sequence([code("77004003", "SCT", "^18^Fluorine")]))
        put(ds,
            ImageType=["ORIGINAL", "PRIMARY"], AcquisitionDate="20240315", AcquisitionTime="081500.000000",
            SliceThickness="4", ActualFrameDuration=90000, AcquisitionNumber=1, ImageIndex=i + 1,
            NumberOfSlices=len(positions), Units="BQML", CountsSource="EMISSION", SeriesType=["WHOLE BODY", "IMAGE"],
            CorrectedImage=["DECY", "ATTN", "SCAT"], RandomsCorrectionMethod="DLYD", DecayCorrection="START",
            DecayFactor="1.05", FrameReferenceTime="0", RescaleIntercept="0", RescaleSlope=ds_str(slope),
            RadiopharmaceuticalInformationSequence=Sequence([radiopharmaceutical]),
            PatientGantryRelationshipCodeSequence=Sequence([code("102540008", "SCT", "headfirst")]))
        plane(ds, z, 800.0 / stack.rows, stack.rows, c.uid("for"))
        private(ds, 0x7053, PHILIPS, {0x00: ds_str(weight_g / dose, 8), 0x09: ds_str(slope)})
        yield Obj("PT", f"PT_{i + 1:04d}.dcm", ds, [image(ds, np.rint(act / slope).astype(np.int16), stack.rows)])


# ---------------------------------------------------------------- NM renogram
RENOGRAM_S = 1280.0  # 64 frames of 20 s in the full profile


def renogram(frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mid-frame times (s), kidney and bladder counts per pixel per 20 s (MAG3 washout)."""
    tm = (np.arange(frames) + 0.5) * RENOGRAM_S / frames
    return tm, 80.0 * (tm / 180.0) * np.exp(1 - tm / 180.0), 5.0 + 120.0 * (1 - np.exp(-tm / 600.0))


def make_nm(c: Ctx) -> Iterator[Obj]:
    """One dynamic multi-frame NM object: four frame-increment vectors (PS3.3 C.8.4.8)."""
    nf, rows = c.profile.nm
    xx, yy = grid(rows, 128.0)  # phantom drawn on a 128-pixel grid
    tm, kidney, bladder = renogram(nf)
    gain = (RENOGRAM_S / nf / 20.0) * (128 / rows) ** 2
    lam = (inside(xx, yy, 0, 0, 45, 60) * 3.0 + 0.1)[None] + gain * (
        inside(xx, yy, -22, -5, 10, 18)[None] * kidney[:, None, None]
        + inside(xx, yy, 22, -3, 10, 18)[None] * 0.85 * kidney[:, None, None]
        + inside(xx, yy, 0, 40, 12, 9)[None] * bladder[:, None, None])
    frames = c.rng.poisson(lam).astype(np.uint16)
    ds = base(c, "NM", "RENO", 0, 10, "NM", "RENOGRAM MAG3 DYN", "100000.000000", ("Philips", "BrightView"))
    window, detector, phase = Dataset(), Dataset(), Dataset()
    energy_range = Dataset()
    put(energy_range, EnergyWindowLowerLimit="126", EnergyWindowUpperLimit="154")
    put(window, EnergyWindowRangeSequence=Sequence([energy_range]), EnergyWindowName="Tc99m")
    put(detector, CollimatorGridName="LEHR", CollimatorType="PARA", ZoomFactor=["1.33", "1.33"],
        ViewCodeSequence=Sequence([code("399348003", "SCT", "posterior")]))
    put(phase, PhaseDelay=0, ActualFrameDuration=int(RENOGRAM_S / nf * 1000), PauseBetweenFrames=0,
        NumberOfFramesInPhase=nf)
    put(ds,
        ImageType=["ORIGINAL", "PRIMARY", "DYNAMIC", "EMISSION"], NumberOfFrames=nf,
        FrameIncrementPointer=[0x00540010, 0x00540020, 0x00540030, 0x00540100],
        EnergyWindowVector=[1] * nf, NumberOfEnergyWindows=1, EnergyWindowInformationSequence=Sequence([window]),
        DetectorVector=[1] * nf, NumberOfDetectors=1, DetectorInformationSequence=Sequence([detector]),
        PhaseVector=[1] * nf, NumberOfPhases=1, PhaseInformationSequence=Sequence([phase]),
        TimeSliceVector=list(range(1, nf + 1)), PixelSpacing=[ds_str(3.3 * 128 / rows)] * 2,
        CountsAccumulated=int(frames.sum(dtype=np.int64)), BodyPartExamined="ABDOMEN")
    yield Obj("NM", "NM_0001.dcm", ds, [image(ds, frames, rows)])


def make_curve(c: Ctx) -> Iterator[Obj]:
    """Retired Standalone Curve: time-activity curves in groups 5000 and 5002 (FD values, VR OB),
    GENIE private curve attributes in 5001 and 5003, which are private groups, not curves."""
    nf = c.profile.nm[0]
    tm, kidney, _ = renogram(nf)
    ds = base(c, "CURVE", "RENO", 0, 11, "NM", "RENOGRAM CURVES", "103000.000000", ("GE MEDICAL SYSTEMS", "GENIE"))
    reference = Dataset()
    put(reference, ReferencedSOPClassUID=SOP_CLASSES["NM"], ReferencedSOPInstanceUID=c.uid("NM", 0))
    put(ds, CurveNumber="1", CurveDate="20240322", CurveTime="103000.000000",
        ReferencedImageSequence=Sequence([reference]))
    blobs = []
    for n, (group, side, fraction) in enumerate(((0x5000, "L", 1.0), (0x5002, "R", 0.85))):
        counts = (kidney * fraction + 2.0) * 565.0 * (RENOGRAM_S / nf / 20.0)
        xy = np.column_stack([tm, np.rint(counts + c.rng.normal(0.0, 1.0, nf) * np.sqrt(counts))]).ravel()
        for element, vr, value in ((0x0005, "US", 2), (0x0010, "US", nf), (0x0020, "CS", "TAC"),
                                   (0x0022, "LO", f"{side} kidney"), (0x0030, "SH", ["SEC", "CNTS"]),
                                   (0x0040, "SH", ["TIME", "COUNTS"]), (0x0103, "US", 3),  # 3 = FD
                                   (0x2500, "LO", f"{side} KIDNEY")):
            ds.add_new((group << 16) | element, vr, value)
        blobs.append(((group << 16) | 0x3000, "curve", xy))
        private(ds, group + 1, GENIE, {0x30: f"{side} KIDNEY", 0x33: 0, 0x34: f"RENOGRAM {side}",
                                       0x36: c.uid("curve-uid", n)})
    yield Obj("CURVE", "CURVE_0001.dcm", ds, blobs)


def make_genie(c: Ctx) -> Iterator[Obj]:
    """GENIE private objects (seed 003 section 9): GENIE_0001 PROTOCOL DATA holds one 72,000-byte
    DoubleData (DAT-2); GENIE_0002 SERIES DATA splits the same kind of data into SDODoubleData items."""
    for i, kind in enumerate(("PROTOCOL DATA", "SERIES DATA")):
        # A General Series the real objects lack, so every object indexes at all four levels.
        ds = base(c, "GENIE", "RENO", i, 9001, "OT", "GENIE PROTOCOL DATA", "103100.000000",
                  ("GE MEDICAL SYSTEMS", "GENIE"))
        doubles = np.sin(np.arange(GENIE_DOUBLES) / 50.0) * 1000.0 + c.rng.normal(0.0, 1.0, GENIE_DOUBLES)
        private(ds, 0x0009, GENIE, {0x10: "RENOGRAM MAG3", 0x11: 0, 0x12: 2})
        private(ds, 0x0011, GENIE, {0x0D: "Tc99m", 0x12: "RENOGRAM DYN"})
        private(ds, 0x0033, GENIE, {
            0x08: kind, 0x10: 0, 0x11: "Renal Analysis" if i == 0 else "Series Data",
            0x16: c.uid("genie-data", i),
            0x17: "2024.03.22", 0x18: "10:31:00.0",  # GENIE's own date and time formats in SH
            0x19: 0, 0x1A: "RENAL_MAG3",
            0x1B: ds.StudyInstanceUID if i == 0 else c.uid("NM", "series"),  # RelevantDataUID
            0x1C: c.rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(),
            0x1D: [int(v) for v in c.rng.integers(-2**31, 2**31 - 1, 64)],
            0x1F: "LEFT KIDNEY\\RIGHT KIDNEY\\BACKGROUND",  # LT: the backslashes are not delimiters
            0x20: "uint8[4000]", 0x21: "int32[64]", 0x22: f"float64[{GENIE_DOUBLES}]",
            0x23: "**",  # GENIE's empty string (seed 003 table 9-2 note 3)
            0x24: "Protocol Data"})
        blobs = []
        if i == 0:
            blobs.append((int(ds.private_block(0x0033, GENIE).get_tag(0x1E)), "long-fd", doubles))
        else:
            items = []
            for start in range(0, GENIE_DOUBLES, SDO_CHUNK):
                items.append(item := Dataset())  # each item reserves its own private block
                private(item, 0x0033, GENIE, {0x1E: [float(v) for v in doubles[start:start + SDO_CHUNK]]})
            private(ds, 0x0055, GENIE, {0x64: Sequence(items)})
        yield Obj("GENIE", f"GENIE_{i + 1:04d}.dcm", ds, blobs)


# ---------------------------------------------------------------- SC, MR, multi-frame SC
def secondary_capture(ds: Dataset) -> None:
    put(ds, ConversionType="WSD", SecondaryCaptureDeviceManufacturer="dicom-gateway",
        SecondaryCaptureDeviceManufacturerModelName="gateway.testing.corpus",
        BurnedInAnnotation="NO", BodyPartExamined="WHOLEBODY")


def make_sc(c: Ctx) -> Iterator[Obj]:
    """Two MONOCHROME2, SC_0003 MONOCHROME1 (print polarity), SC_0004 RGB colour-by-plane."""
    rows = c.profile.sc_rows
    xx, yy = grid(rows, 512.0)  # patterns drawn for 512 pixels
    r = np.hypot(xx, yy)
    for i in range(4):
        ds = base(c, "SC", "PETCT", i, 900, "OT", "PET MIP / Fusion screenshots", f"09100{i}.000000",
                  ("dicom-gateway", "gateway.testing.corpus"))
        secondary_capture(ds)
        put(ds, ImageType=["DERIVED", "SECONDARY"], PatientOrientation=["L", "P"])
        level = 127 + 100 * np.cos(r / (18.0 + 6 * i)) * np.exp(-r / 300.0) + c.rng.normal(0, 3, r.shape)
        mono = np.clip(level, 0, 255).astype(np.uint8)
        if i == 2:  # the same kind of picture stored inverted: 0 is white
            blob = image(ds, 255 - mono, rows, "MONOCHROME1")
        elif i == 3:  # planes R, G, B one after the other (Planar Configuration 1)
            planes = np.stack([mono, 255 - mono, np.clip(128 + 120 * np.sin(xx / 40.0), 0, 255).astype(np.uint8)])
            blob = image(ds, planes, rows, "RGB", planar=1)
        else:
            blob = image(ds, mono, rows)
        yield Obj("SC", f"SC_{i + 1:04d}.dcm", ds, [blob])


def make_mr(c: Ctx) -> Iterator[Obj]:
    """Axial T1 head, 12 bits stored in 16, magnitude (Rician) noise."""
    stack = c.profile.mr
    xx, yy = grid(stack.rows, 240.0)
    positions = stack.positions(c.scale)
    for i, z in enumerate(positions):
        s = np.sqrt(max(0.05, 1 - ((z - 40.0) / 80.0) ** 2))  # the head narrows away from z = 40
        e = (xx / (72 * s)) ** 2 + ((yy + 5) / (92 * s)) ** 2
        img = np.select([e < 0.55, e < 0.76, e < 0.8, e < 0.9, e < 1], [930.0, 720.0, 260.0, 90.0, 1350.0], 0.0)
        noisy = np.hypot(img + c.rng.normal(0, 18, img.shape), c.rng.normal(0, 18, img.shape))
        ds = base(c, "MR", "MRHEAD", i, 3, "MR", "t1_se_tra", "143512.000000", ("Siemens", "MAGNETOM Aera"))
        put(ds, ImageType=["ORIGINAL", "PRIMARY", "OTHER"], StationName="MRT01", BodyPartExamined="HEAD",
            ScanningSequence="SE", SequenceVariant="NONE", ScanOptions="", MRAcquisitionType="2D",
            SliceThickness="5", RepetitionTime="500", EchoTime="15", EchoTrainLength="1",
            MagneticFieldStrength="1.5", ImagedNucleus="1H", AcquisitionNumber=1,
            SpacingBetweenSlices=ds_str(positions[0] - positions[1] if len(positions) > 1 else stack.step),
            WindowCenter="700", WindowWidth="1400")
        plane(ds, z, 240.0 / stack.rows, stack.rows, c.uid("mr-for"))
        stored = np.clip(np.rint(noisy), 0, 4095).astype(np.uint16)
        yield Obj("MR", f"MR_{i + 1:04d}.dcm", ds, [image(ds, stored, stack.rows, bits_stored=12)])


def mip(c: Ctx, frames: int, rows: int) -> np.ndarray:
    """A rotating maximum-intensity projection of the body, values 0..1, shape (frames, rows, rows)."""
    s, t = grid(rows, 900.0)
    t = t + 450.0  # depth below the vertex
    out = np.zeros((frames, rows, rows))
    for f in range(frames):
        angle = 2 * np.pi * f / frames
        half_width = np.hypot(170 * np.cos(angle), 115 * np.sin(angle))
        img = np.where((np.abs(s) < half_width) & (t > 230) & (t < 700), 0.15, 0.0)
        img[(s ** 2 / 80 ** 2 + (t - 115) ** 2 / 115 ** 2) < 1] = 0.6  # head, brain uptake
        lesion = -40 * np.cos(angle) + 30 * np.sin(angle)
        img = np.maximum(img, np.exp(-((s - lesion) ** 2 + (t - 520) ** 2) / 162.0))
        out[f] = np.clip(img + c.rng.normal(0, 0.02, img.shape) * (img > 0), 0, 1)
    return out


def cine(c: Ctx, type_: str, frames: int, rows: int, series_number: int, description: str) -> Dataset:
    """The Multi-frame SC objects of the UTF-8 patient (DAT-3): Cine module, Frame Time."""
    ds = base(c, type_, "PETMIP", 0, series_number, "OT", description, "112000.000000",
              ("dicom-gateway", "gateway.testing.corpus"))
    secondary_capture(ds)
    put(ds, ImageType=["DERIVED", "SECONDARY", "MIP"], PatientOrientation=["L", "F"], NumberOfFrames=frames,
        FrameIncrementPointer=0x00181063, FrameTime="200", CineRate=5, RecommendedDisplayFrameRate=5)
    return ds


def make_mfgray(c: Ctx) -> Iterator[Obj]:
    frames, rows = c.profile.mfgray
    ds = cine(c, "MFGRAY", frames, rows, 901, "PET MIP cine")
    put(ds, PresentationLUTShape="IDENTITY", RescaleIntercept="0", RescaleSlope="1", RescaleType="US",
        WindowCenter="128", WindowWidth="256")
    pix = (255 - np.rint(mip(c, frames, rows) * 255)).astype(np.uint8)  # black on white, as burnt into SC
    yield Obj("MFGRAY", "MFGRAY_0001.dcm", ds, [image(ds, pix, rows)])


def make_mfrgb(c: Ctx) -> Iterator[Obj]:
    frames, rows = c.profile.mfrgb
    ds = cine(c, "MFRGB", frames, rows, 902, "PET MIP cine colour")
    v = mip(c, frames, rows)[..., None]
    hot = np.clip(3 * v - np.array([0.0, 1.0, 2.0]), 0, 1)  # a hot colour map
    # Planar Configuration 0 (R, G, B per pixel): the only value this IOD allows
    yield Obj("MFRGB", "MFRGB_0001.dcm", ds, [image(ds, np.rint(hot * 255).astype(np.uint8), rows, "RGB", planar=0)])


# ---------------------------------------------------------------- RT Structure Set
RT_ROIS = [(1, "BODY", [0, 255, 0], "EXTERNAL"), (2, "LUNGS", [0, 128, 255], "ORGAN"),
           (3, "HEART", [255, 0, 0], "ORGAN")]


def make_rtstruct(c: Ctx) -> Iterator[Obj]:
    """Contours of the CT phantom on every CT slice; the image references nest four sequences
    deep (Referenced Frame of Reference > RT Referenced Study > RT Referenced Series > Contour Image)."""
    cts = [(c.uid("CT", i), z) for i, z in enumerate(c.profile.ct.positions(c.scale))]

    def image_ref(uid: str) -> Dataset:
        ref = Dataset()
        put(ref, ReferencedSOPClassUID=SOP_CLASSES["CT"], ReferencedSOPInstanceUID=uid)
        return ref

    ds = base(c, "RTSTRUCT", "PETCT", 0, 50, "RTSTRUCT", "Contours on CT WB", "093000.000000",
              ("dicom-gateway", "gateway.testing.corpus"))
    series, study, frame = Dataset(), Dataset(), Dataset()
    put(series, SeriesInstanceUID=c.uid("CT", "series"),
        ContourImageSequence=Sequence([image_ref(uid) for uid, _ in cts]))  # every CT
    put(study, ReferencedSOPClassUID=DETACHED_STUDY_MANAGEMENT, ReferencedSOPInstanceUID=ds.StudyInstanceUID,
        RTReferencedSeriesSequence=Sequence([series]))
    put(frame, FrameOfReferenceUID=c.uid("for"), RTReferencedStudySequence=Sequence([study]))
    angles = 2 * np.pi * np.arange(c.profile.contour_points) / c.profile.contour_points
    rois, contours, observations = [], [], []
    for number, name, colour, kind in RT_ROIS:
        roi, roi_contour, observation = Dataset(), Dataset(), Dataset()
        put(roi, ROINumber=number, ReferencedFrameOfReferenceUID=c.uid("for"), ROIName=name,
            ROIGenerationAlgorithm="SEMIAUTOMATIC")
        planes: list[Dataset] = []
        for uid, z in cts:
            for cx, cy, a, b in outline(z)[name]:
                contour = Dataset()
                points = np.column_stack([cx + a * np.cos(angles), cy + b * np.sin(angles), np.full(angles.size, z)])
                put(contour, ContourImageSequence=Sequence([image_ref(uid)]),
                    ContourGeometricType="CLOSED_PLANAR", NumberOfContourPoints=len(angles),
                    ContourNumber=len(planes) + 1,
                    ContourData=[f"{round(v, 2) + 0.0:g}" for v in points.ravel()])
                planes.append(contour)
        put(roi_contour, ROIDisplayColor=colour, ReferencedROINumber=number)
        if planes:  # an empty Contour Sequence is invalid; with very few slices an ROI may have none
            roi_contour.ContourSequence = Sequence(planes)
        put(observation, ObservationNumber=number, ReferencedROINumber=number, ROIObservationLabel=name,
            RTROIInterpretedType=kind, ROIInterpreter="")
        rois.append(roi)
        contours.append(roi_contour)
        observations.append(observation)
    put(ds, OperatorsName="PLANNER^PAT", FrameOfReferenceUID=c.uid("for"), PositionReferenceIndicator="",
        StructureSetLabel="PETCT_CONTOURS", StructureSetName="Organs", StructureSetDate="20240315",
        StructureSetTime="093000.000000", ReferencedFrameOfReferenceSequence=Sequence([frame]),
        StructureSetROISequence=Sequence(rois), ROIContourSequence=Sequence(contours),
        RTROIObservationsSequence=Sequence(observations), ApprovalStatus="UNAPPROVED")
    del ds.ContentDate, ds.ContentTime  # not in the RT Structure Set IOD; its own date and time are above
    yield Obj("RTSTRUCT", "RTSTRUCT_0001.dcm", ds)


MAKERS: dict[str, Callable[[Ctx], Iterator[Obj]]] = {
    "CT": make_ct, "PT": make_pt, "NM": make_nm, "SC": make_sc, "MR": make_mr, "MFGRAY": make_mfgray,
    "MFRGB": make_mfrgb, "RTSTRUCT": make_rtstruct, "CURVE": make_curve, "GENIE": make_genie,
}


# ---------------------------------------------------------------- encoding, writing
def encode(obj: Obj, syntax: str) -> Dataset:
    """Put the syntax-dependent values into obj.ds and give it File Meta for `syntax` (STO-2)."""
    ts = SYNTAXES[syntax]
    order: Literal["<", ">"] = ">" if ts == ExplicitVRBigEndian else "<"
    ds = obj.ds
    for tag, kind, arr in obj.blobs:
        if kind == "pixels":
            # 16-bit pixels are OW in the syntax's byte order; 8-bit are OB, never swapped.
            data = arr.astype(arr.dtype.newbyteorder(order)).tobytes()
            ds[tag] = DataElement(tag, "OB" if arr.dtype.itemsize == 1 else "OW", data + b"\0" * (len(data) % 2))
        elif kind == "curve":
            # Curve Data is OB but holds values of its Data Value Representation (FD) in the
            # syntax's byte order: only a reader of (50xx,0103) swaps it right.
            ds[tag] = DataElement(tag, "OB", arr.astype(order + "f8").tobytes())
        elif ts == ImplicitVRLittleEndian:  # long-fd: implicit VR has a 32-bit length, FD fits (DAT-2)
            ds[tag] = DataElement(tag, "FD", [float(v) for v in arr])
        else:  # explicit FD has a 16-bit length: UN, whose value stays little endian even in BE (PS3.5 6.2.2)
            ds[tag] = DataElement(tag, "UN", arr.astype("<f8").tobytes())
    ds.file_meta = FileMetaDataset()
    put(ds.file_meta, MediaStorageSOPClassUID=ds.SOPClassUID, MediaStorageSOPInstanceUID=ds.SOPInstanceUID,
        TransferSyntaxUID=ts, ImplementationClassUID=IMPLEMENTATION_CLASS_UID,
        ImplementationVersionName=IMPLEMENTATION_VERSION)
    return ds


def summary(entries: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """Patient and study records as a C-FIND at those levels should find them; counts are one syntax's."""
    studies = []
    for key, st in STUDIES.items():
        uid = make_uid(seed, "study", key)
        mine = [e for e in entries if e["study_instance_uid"] == uid]
        one = [e for e in mine if e["syntax"] == mine[0]["syntax"]] if mine else []
        if one:
            studies.append(dict(
                study_instance_uid=uid, patient_id=PATIENTS[st["patient"]]["PatientID"], study_date=st["StudyDate"],
                study_time=st["StudyTime"], accession_number=st["AccessionNumber"], study_id=st["StudyID"],
                study_description=st["StudyDescription"], referring_physician_name=st["ReferringPhysicianName"],
                modalities=sorted({e["modality"] for e in one}), series=len({e["series_instance_uid"] for e in one}),
                instances=len(one)))
    patients = []
    for p in PATIENTS.values():
        if n := sum(s["patient_id"] == p["PatientID"] for s in studies):
            patients.append(dict(patient_id=p["PatientID"], patient_name=p["PatientName"],
                                 specific_character_set=p["SpecificCharacterSet"],
                                 issuer_of_patient_id=p["IssuerOfPatientID"], birth_date=p["PatientBirthDate"],
                                 sex=p["PatientSex"], studies=n))
    return patients, studies


def generate(out: str | Path, profile: str = "full", syntax: str = "explicit-le", seed: int = DEFAULT_SEED,
             scale: float = 1.0, only: list[str] | None = None) -> dict:
    """Write the corpus under `out` and return the manifest (also written to out/manifest.json)."""
    if profile not in PROFILES or (syntax != "all" and syntax not in SYNTAXES) or scale <= 0:
        raise ValueError(f"bad arguments: profile={profile!r} syntax={syntax!r} scale={scale!r}")
    out = Path(out)
    syntaxes = list(SYNTAXES) if syntax == "all" else [syntax]
    types = [t for t in TYPES if not only or t in only]
    entries: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        # pydicom silently writing a too-long value as (big-endian) UN would be a corpus bug (DAT-2)
        warnings.filterwarnings("error", message=".*exceeds the size of 64 kByte.*")
        for type_ in types:
            for s in syntaxes:  # remove only our own earlier files, so none go stale
                folder = (out / s if syntax == "all" else out) / type_
                folder.mkdir(parents=True, exist_ok=True)
                for old in folder.iterdir():
                    if re.fullmatch(rf"{type_}_\d{{4}}\.dcm", old.name):
                        old.unlink()
            ctx = Ctx(PROFILES[profile], scale, seed, np.random.default_rng([seed, TYPES.index(type_)]))
            for obj in MAKERS[type_](ctx):
                for s in syntaxes:
                    ds = encode(obj, s)
                    path = (out / s if syntax == "all" else out) / type_ / obj.name
                    pydicom.dcmwrite(path, ds, enforce_file_format=True)
                    data = path.read_bytes()
                    entries.append(dict(
                        path=path.relative_to(out).as_posix(), type=type_, syntax=s,
                        transfer_syntax_uid=str(SYNTAXES[s]), sop_class_uid=str(ds.SOPClassUID),
                        sop_instance_uid=str(ds.SOPInstanceUID), study_instance_uid=str(ds.StudyInstanceUID),
                        series_instance_uid=str(ds.SeriesInstanceUID), patient_id=str(ds.PatientID),
                        modality=str(ds.Modality), size=len(data), sha256=hashlib.sha256(data).hexdigest()))
    entries.sort(key=lambda e: e["path"])
    patients, studies = summary(entries, seed)
    manifest = dict(format="dicom-gateway-corpus/1", profile=profile, seed=seed, scale=scale, syntaxes=syntaxes,
                    types=types, patients=patients, studies=studies, files=entries)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.testing.corpus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory (give it a fresh one)")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="full",
                    help="small: a few slices of everything, for tests; full: benchmark sizes (default)")
    ap.add_argument("--syntax", choices=[*SYNTAXES, "all"], default="explicit-le",
                    help="transfer syntax (default explicit-le); 'all' writes one folder per syntax")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="changes every UID and all noise")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the profile's CT, PT and MR slices")
    ap.add_argument("--only", choices=TYPES, action="append", metavar="TYPE",
                    help=f"generate only this type (repeatable): {', '.join(TYPES)}")
    a = ap.parse_args(argv)
    if a.scale <= 0:
        ap.error("--scale must be > 0")
    manifest = generate(a.out, a.profile, a.syntax, a.seed, a.scale, a.only)
    print(f"{'type':<9} {'files':>6} {'bytes':>13}")
    for type_ in manifest["types"]:
        files = [f for f in manifest["files"] if f["type"] == type_]
        print(f"{type_:<9} {len(files):>6} {sum(f['size'] for f in files):>13,}")
    print(f"{'total':<9} {len(manifest['files']):>6} {sum(f['size'] for f in manifest['files']):>13,}")
    print(f"profile {a.profile}, seed {a.seed}, syntax {a.syntax}; manifest {Path(a.out) / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
