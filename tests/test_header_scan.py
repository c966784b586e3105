"""The one-pass Rust header scan (``scan_instance``) against pydicom.

For every file of the project's test corpus in the three uncompressed syntaxes and
every uncompressed test file pydicom ships (big endian, implicit VR, private
sequences, odd lengths, Specific Character Sets): the attributes equal the
pydicom-based ones (``extract_attributes`` and, independently of the project's
conversion, pydicom's own ``Dataset`` values), ``has_pixel_data`` equals
pydicom's ``"PixelData" in ds`` and ``sha256`` equals hashlib's, for a bytes
payload and a file payload. Malformed datasets raise ``UnreadableDataset`` and
nothing else.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import random
import struct
import warnings
from pathlib import Path
from typing import Any

import pytest
import pydicom.data
from pydicom.data import get_charset_files
from pydicom.filereader import read_dataset
from pydicom.uid import UID

from gateway.index.attrs import (_KEYS, _SPECIFIC_TAGS, _FLOAT_KEYS, _INT_KEYS, _REQUIRED, InstanceAttrs, Scan,
                                 UnreadableDataset, _number, _stop_after_keys, _text, extract_attributes,
                                 scan_instance)

UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def split_part10(data: bytes) -> tuple[bytes, str] | None:
    """(raw dataset, transfer syntax) of a Part-10 file with (0002,0000), as
    tests/test_index.py splits it; None for other files."""
    if data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
        return None
    group_length = struct.unpack("<I", data[140:144])[0]
    meta, pos = data[144:144 + group_length], 0
    syntax = None
    while pos + 8 <= len(meta):  # File Meta: explicit VR LE
        tag = struct.unpack("<HH", meta[pos:pos + 4])
        vr = meta[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
            length, start = struct.unpack("<I", meta[pos + 8:pos + 12])[0], pos + 12
        else:
            length, start = struct.unpack("<H", meta[pos + 6:pos + 8])[0], pos + 8
        if tag == (0x0002, 0x0010):
            syntax = meta[start:start + length].rstrip(b"\x00 ").decode("ascii")
        pos = start + length
    if syntax is None:
        return None
    return data[144 + group_length:], syntax


def pydicom_reference(raw: bytes, syntax: str) -> InstanceAttrs | None:
    """The attributes from pydicom's Dataset values (``ds[tag].value``), not
    through the conversion scan_instance and extract_attributes share; None
    when pydicom cannot give the four UIDs."""
    u = UID(syntax)
    try:
        ds = read_dataset(io.BytesIO(raw), u.is_implicit_VR, u.is_little_endian, stop_when=_stop_after_keys,
                          specific_tags=_SPECIFIC_TAGS)
    except Exception:
        return None
    values: dict[str, Any] = {}
    for key, (tag, _) in _KEYS.items():
        try:
            elem = ds[tag] if tag in ds else None
        except Exception:
            if key in _REQUIRED:
                return None
            continue
        if elem is None or elem.VR == "SQ" or elem.value is None:
            continue
        value = elem.value
        values[key] = (_number(value, int) if key in _INT_KEYS else _number(value, float) if key in _FLOAT_KEYS
                       else _text(value))
    if not all(values.get(k) for k in _REQUIRED):
        return None
    charset = ds[0x00080005].value if 0x00080005 in ds else None
    values["specific_character_set"] = _text(charset)
    values["transfer_syntax_uid"] = syntax
    values["patient_id"] = values.get("patient_id") or ""
    return InstanceAttrs(**values)


def pydicom_has_pixel_data(raw: bytes, syntax: str) -> bool | None:
    u = UID(syntax)
    try:
        ds = read_dataset(io.BytesIO(raw), u.is_implicit_VR, u.is_little_endian, defer_size=64)
    except Exception:
        return None  # pydicom cannot read the whole dataset: no reference
    return "PixelData" in ds


def attempt(fn, *args) -> Any:
    try:
        return fn(*args)
    except UnreadableDataset as exc:
        return exc


def check(raw: bytes, syntax: str, tmp_path: Path, name: str) -> Scan | None:
    """Scan bytes and file; compare with pydicom. Returns the scan (None when
    both sides refuse the dataset)."""
    path = tmp_path / "payload.raw"
    path.write_bytes(raw)
    from_bytes = attempt(scan_instance, raw, syntax)
    from_file = attempt(scan_instance, path, syntax)
    expected = attempt(extract_attributes, raw, syntax)
    if isinstance(expected, UnreadableDataset):
        assert isinstance(from_bytes, UnreadableDataset), f"{name}: pydicom refuses ({expected}), the scan does not"
        assert isinstance(from_file, UnreadableDataset), name
        return None
    assert not isinstance(from_bytes, UnreadableDataset), f"{name}: {from_bytes}"
    assert not isinstance(from_file, UnreadableDataset), f"{name}: {from_file}"
    assert from_bytes == from_file, name
    assert from_bytes.attrs == expected, name
    reference = pydicom_reference(raw, syntax)
    if reference is not None:
        assert from_bytes.attrs == reference, name
    assert from_bytes.sha256 == hashlib.sha256(raw).hexdigest(), name
    has_pixels = pydicom_has_pixel_data(raw, syntax)
    if has_pixels is not None:
        assert from_bytes.has_pixel_data == has_pixels, name
    return from_bytes


# ---- the project's corpus ------------------------------------------------------------

def corpus_files(corpus: Path) -> list[tuple[str, bytes, str]]:
    manifest = json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))
    out = []
    for f in manifest["files"]:
        split = split_part10((corpus / f["path"]).read_bytes())
        assert split is not None, f["path"]
        assert split[1] == f["transfer_syntax_uid"]
        out.append((f["path"], *split))
    return out


def test_corpus_all_syntaxes(corpus_small, tmp_path):
    files = corpus_files(corpus_small)
    seen = {syntax for _, _, syntax in files}
    assert seen == UNCOMPRESSED
    checked = 0
    for name, raw, syntax in files:
        scan = check(raw, syntax, tmp_path, name)
        assert scan is not None, f"{name}: the corpus is valid"
        checked += 1
    assert checked == len(files) > 0


# ---- pydicom's test files ------------------------------------------------------------

@functools.cache
def pydicom_files() -> list[tuple[str, bytes, str]]:
    out = []
    # The files shipped inside pydicom only: get_testdata_files() would also try to
    # download its external data set, which makes the suite depend on the network.
    bundled = Path(pydicom.data.__file__).parent / "test_files"
    paths = sorted(map(str, bundled.glob("*.dcm"))) + sorted(get_charset_files("*.dcm"))
    for p in paths:
        data = Path(p).read_bytes()
        split = split_part10(data)
        if split is None:
            continue
        if split[1] not in UNCOMPRESSED:
            continue  # the storage service accepts only the three uncompressed syntaxes
        out.append((Path(p).name, *split))
    return out


def test_pydicom_test_files(tmp_path):
    files = pydicom_files()
    names = {n for n, _, _ in files}
    syntaxes = {s for _, _, s in files}
    assert syntaxes == UNCOMPRESSED, syntaxes
    # Big endian, implicit VR, private sequences, odd lengths, character sets.
    assert {"MR_small_bigendian.dcm", "MR_small_implicit.dcm", "CT_small.dcm", "chrH31.dcm",
            "chrSQEncoding.dcm"} <= names
    indexed = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, raw, syntax in files:
            if check(raw, syntax, tmp_path, name) is not None:
                indexed += 1
    assert indexed >= 40, indexed


def test_character_sets_are_decoded(tmp_path):
    by_name = {n: (raw, s) for n, raw, s in pydicom_files()}
    for name in ("chrH31.dcm", "chrGreek.dcm", "chrRuss.dcm", "chrKoreanMulti.dcm"):
        raw, syntax = by_name[name]
        scan = scan_instance(raw, syntax)
        expected = pydicom_reference(raw, syntax)
        assert expected is not None and scan.attrs == expected, name
        assert scan.attrs.specific_character_set and scan.attrs.patient_name, name
        assert not scan.attrs.patient_name.isascii(), name


# ---- malformed input -----------------------------------------------------------------

def small_samples(corpus: Path) -> list[tuple[str, bytes, str]]:
    files = corpus_files(corpus)
    picked: dict[tuple[str, str], tuple[str, bytes, str]] = {}
    for name, raw, syntax in sorted(files, key=lambda f: len(f[1])):
        kind = name.split("/")[1] if "/" in name else name
        picked.setdefault((syntax, kind), (name, raw, syntax))
    return list(picked.values())[:18]


def offsets(raw: bytes, rng: random.Random) -> list[int]:
    head = min(len(raw), 1500)
    cuts = set(range(0, head, 11)) | {rng.randrange(len(raw)) for _ in range(20)} | {len(raw) - 1}
    return sorted(c for c in cuts if 0 <= c < len(raw))


def test_truncated_datasets_raise_unreadable(corpus_small):
    rng = random.Random(4711)
    samples = small_samples(corpus_small)
    by_name = {n: (raw, s) for n, raw, s in pydicom_files()}
    samples += [(n, *by_name[n]) for n in ("MR_small_bigendian.dcm", "MR_small_implicit.dcm", "CT_small.dcm")]
    refused = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, raw, syntax in samples:
            for cut in offsets(raw, rng):
                part = raw[:cut]
                try:
                    scan = scan_instance(part, syntax)
                except UnreadableDataset:
                    refused += 1
                    continue
                # Accepted only where the cut leaves a well-formed dataset
                # (an element boundary) or lies after the keys; then it is
                # what pydicom reads from the same bytes. (pydicom also reads
                # the header of the first element after the keys: a cut there
                # is only the scan's pixel_data_error.)
                expected = attempt(extract_attributes, part, syntax)
                if isinstance(expected, UnreadableDataset):
                    assert scan.pixel_data_error, f"{name} cut at {cut}: {expected}"
                    continue
                assert scan.attrs == expected, f"{name} cut at {cut}"
                assert scan.sha256 == hashlib.sha256(part).hexdigest()
    assert refused > 100


def test_garbage_raises_unreadable(tmp_path):
    rng = random.Random(1)
    path = tmp_path / "garbage.raw"
    for n in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600)))
        for syntax in sorted(UNCOMPRESSED):
            with pytest.raises(UnreadableDataset):
                scan_instance(data, syntax)
        if n % 30 == 0:
            path.write_bytes(data)
            with pytest.raises(UnreadableDataset):
                scan_instance(path, "1.2.840.10008.1.2.1")


@pytest.mark.parametrize("data", [
    b"",
    b"\x08\x00\x16\x00UI\xff\xff" + b"1.2" * 10,  # length past the end
    b"\x08\x00\x16\x00ZZ\x04\x001.2\x00",  # bad VR
    b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff\x08\x00\x50\x11UI\x02\x001\x00",  # no item tag
    b"\x08\x00\x40\x11SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xf0\xff\xff\xff",  # item past the end
    b"\x08\x00\x16\x00UI\x04\x001.2\x00\x08\x00",  # header cut short
])
def test_malformed_examples(data):
    with pytest.raises(UnreadableDataset):
        scan_instance(data, "1.2.840.10008.1.2.1")


def test_bad_arguments(tmp_path):
    with pytest.raises(UnreadableDataset):
        scan_instance(b"\x08\x00\x18\x00UI\x02\x001\x00", "")
    with pytest.raises(UnreadableDataset):
        scan_instance(b"\x08\x00\x18\x00UI\x02\x001\x00", "1.2.3.4")
    with pytest.raises(UnreadableDataset):
        scan_instance(tmp_path / "missing.raw", "1.2.840.10008.1.2.1")


def test_tail_error_is_reported_not_raised(corpus_small):
    name, raw, syntax = next(f for f in corpus_files(corpus_small)
                             if f[2] == "1.2.840.10008.1.2.1" and "/CT/" in f"/{f[0]}")
    scan = scan_instance(raw, syntax)
    assert scan.has_pixel_data and scan.pixel_data_error is None
    # An overlay element whose length runs past the end, before the pixel data.
    broken = raw[:raw.index(b"\xe0\x7f\x10\x00")] + b"\x00\x60\x00\x30OW\x00\x00\x00\x00\x01\x00"
    scan = scan_instance(broken, syntax)
    assert scan.attrs == extract_attributes(broken, syntax)
    assert not scan.has_pixel_data and scan.pixel_data_error and "truncated" in scan.pixel_data_error
