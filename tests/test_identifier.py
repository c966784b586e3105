"""gateway.identifier.FlatIdentifier: the bytes equal pydicom's for the same Dataset,
in every uncompressed syntax, and it declines (None) whatever it does not encode."""

from __future__ import annotations

import pytest
from pynetdicom.dsutils import encode

from gateway.identifier import FlatIdentifier

SYNTAXES = {"implicit": (True, True), "explicit-le": (False, True), "explicit-be": (False, False)}

ANSWERS = [
    {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": "1.2.3.45", "SOPInstanceUID": "1.2.3.4.5",
     "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "InstanceNumber": 7},
    {"QueryRetrieveLevel": "STUDY", "PatientName": "ANCHOR^PETCT^TEST", "PatientID": "ANC1",
     "StudyDate": "20240315", "StudyTime": None, "ModalitiesInStudy": ["CT", "PT"],
     "NumberOfStudyRelatedInstances": 529, "StudyDescription": "odd"},
    {"SpecificCharacterSet": "ISO_IR 100", "QueryRetrieveLevel": "PATIENT", "PatientName": "Müller^Jürgen",
     "PatientWeight": 72.5, "PatientSize": 1.83, "PatientSex": "M", "IssuerOfPatientID": None},
    {"SpecificCharacterSet": "ISO_IR 192", "QueryRetrieveLevel": "PATIENT", "PatientName": "山田^太郎",
     "OtherPatientIDs": ["A", "BB"]},
    {"QueryRetrieveLevel": "IMAGE", "Rows": 512, "Columns": 511, "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
     "NumberOfFrames": 1, "ContentDate": "", "SeriesNumber": 3},
    {"QueryRetrieveLevel": "SERIES", "SeriesDescription": "x" * 64, "ProtocolName": "y" * 63},
]


@pytest.mark.parametrize("syntax", sorted(SYNTAXES))
@pytest.mark.parametrize("answer", range(len(ANSWERS)))
def test_bytes_equal_pydicoms(syntax, answer):
    ident = FlatIdentifier()
    for keyword, value in ANSWERS[answer].items():
        ident[keyword] = value
    implicit, little = SYNTAXES[syntax]
    ours = ident.encode(implicit, little)
    assert ours is not None
    assert ours == encode(ident.to_dataset(), implicit, little, False)


@pytest.mark.parametrize("keyword,value,charset", [
    ("PatientName", "Müller", None),  # not ASCII and no character set says how
    ("PatientName", "山田", "ISO_IR 100"),  # Latin-1 cannot carry it
    ("PatientName", "Müller", ["", "ISO 2022 IR 100"]),  # code extensions: pydicom's job
    ("Rows", "512", None),  # a US given as text
    ("Rows", 70000, None),  # out of range for US
    ("PixelData", b"\x00\x01", None),  # not a text or integer VR
])
def test_declines_what_it_does_not_encode(keyword, value, charset):
    ident = FlatIdentifier()
    if charset is not None:
        ident["SpecificCharacterSet"] = charset
    ident[keyword] = value
    assert ident.encode(False, True) is None


def test_unknown_keyword_is_refused_where_it_is_set():
    with pytest.raises(ValueError, match="not a DICOM keyword"):
        FlatIdentifier()["PatientNmae"] = "x"
