"""The file-set creator (MED-1, MED-5): one STD-GEN-CD volume laid out as a folder.

Every object is converted to Explicit VR Little Endian by the Rust transcoder
(STD-GEN-CD allows only that syntax) with our Implementation Class UID and no
Source AE title in File Meta. pydicom's FileSet builds the DICOMDIR (patient /
study / series / image records, and RT STRUCTURE SET, RT DOSE, SR DOCUMENT ...
where the SOP class calls for them) and assigns PS3.10 file IDs
(``PT000000/ST000000/SE000000/IM000000``: uppercase, 8 characters, 4 levels).
Since pydicom re-encodes what it stages, each instance file is replaced
afterwards by the transcoder's bytes, so the medium holds exactly what the
transcoder wrote and the digests below are of those bytes.
"""

from __future__ import annotations

import copy

import hashlib
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from gateway_plugins.media_drivers import file_sha256

__all__ = ["VolumeResult", "write_volume", "STD_GEN_CD"]

STD_GEN_CD = "STD-GEN-CD"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
STANDARD_ROOT = "1.2.840.10008."
STANDALONE_CURVE = "1.2.840.10008.5.1.4.1.1.9"


@dataclass
class VolumeResult:
    root: Path
    files: dict[str, str] = field(default_factory=dict)  # file ID -> sha256 of what was written
    instances: dict[str, str] = field(default_factory=dict)  # SOP Instance UID -> file ID
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (SOP Instance UID, why)


def _fileset_class():
    from pydicom.fileset import FileSet

    from gateway.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

    class GatewayFileSet(FileSet):
        """MED-5 for the DICOMDIR itself: our implementation identity, no Source AE."""

        def _create_dicomdir(self):  # pydicom builds the DICOMDIR's File Meta here
            ds = super()._create_dicomdir()
            ds.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
            ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
            if "SourceApplicationEntityTitle" in ds.file_meta:
                del ds.file_meta.SourceApplicationEntityTitle
            return ds

    return GatewayFileSet


def _add(fs: Any, path: Path, ds: Any) -> None:
    """Stage one instance; the retired Standalone Curve gets a CURVE record (PS3.3
    F.5.9) where pydicom would write IMAGE."""
    if str(ds.SOPClassUID) != STANDALONE_CURVE:
        fs.add(path)
        return
    from pydicom import dcmread
    from pydicom import fileset as pfs
    from pydicom.fileset import RecordNode

    # pydicom 3 names file IDs by record type and has no prefix for the retired
    # CURVE record: give it one ("CV000000", still PS3.10-conformant).
    pfs._PREFIXES.setdefault("CURVE", "CV")

    full = dcmread(path)
    probe = full
    if "InstanceNumber" not in full:
        # pydicom builds the leaf as an IMAGE record, which needs an Instance
        # Number; a curve need not have one (its number is Curve Number). The
        # records are built from a copy that has one; the object keeps its own.
        probe = copy.copy(full)
        probe.InstanceNumber = full.get("CurveNumber", 1)
    records = list(fs._recordify(probe))  # PATIENT, STUDY, SERIES, leaf (top down)
    leaf = records[-1]
    leaf.DirectoryRecordType = "CURVE"
    if "CurveNumber" in full:
        leaf.CurveNumber = full.CurveNumber
    elif "InstanceNumber" in full:
        leaf.CurveNumber = full.InstanceNumber
    node = parent = RecordNode(records[0])
    for record in records[1:]:
        node = RecordNode(record)
        node.parent = parent
        parent = node
    fs.add_custom(full, node)




def write_volume(items: Sequence[Any], root: Path, file_set_id: str,
                 implementation_class_uid: str | None = None, progress=None) -> VolumeResult:
    """Write ``items`` (gateway.index.selection.StoredFile) as a file-set under ``root`` (must be empty or absent)."""
    from pydicom import dcmread

    from gateway.importer import meta_end
    from gateway.transcode import TranscodeError, transcode

    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    result = VolumeResult(root)
    fs = _fileset_class()()
    fs.ID = file_set_id[:16].upper()  # File-set ID is CS, at most 16 characters
    with tempfile.TemporaryDirectory(prefix="media-") as tmp:
        converted: dict[str, Path] = {}
        for n, it in enumerate(items):
            out = Path(tmp) / f"{n:08d}.dcm"
            why = None
            try:
                raw = it.path.read_bytes()
                start = meta_end(raw)
                if it.sha256 and hashlib.sha256(raw[start:]).hexdigest() != it.sha256:
                    # The archive copy no longer matches what was stored: never put it on a disc.
                    why = "archived file's digest differs from the index (damaged?)"
                else:
                    # MED-5: the dataset alone goes in, so the transcoder writes a new
                    # File Meta (our implementation UID, no Source AE of the sender).
                    syntax = it.transfer_syntax_uid or str(dcmread(it.path, stop_before_pixels=True)
                                                           .file_meta.TransferSyntaxUID)
                    transcode(raw[start:], "explicit-le", src_syntax=syntax, src_raw=True, out=out,
                              implementation_class_uid=implementation_class_uid)
                    ds = dcmread(out, stop_before_pixels=True)
                    if "SourceApplicationEntityTitle" in ds.file_meta:
                        why = "transcoder kept a Source AE title in File Meta (MED-5)"
                    elif not str(ds.SOPClassUID).startswith(STANDARD_ROOT):
                        # STD-GEN-CD carries standard storage SOP classes only (PS3.11 D.3.2);
                        # DCMTK's dcmmkdir -Pgp refuses private ones the same way.
                        why = f"private SOP class {ds.SOPClassUID} is not allowed on STD-GEN-CD"
                    else:
                        _add(fs, out, ds)
                        converted[it.sop_instance_uid] = out
            except (TranscodeError, OSError, ValueError) as exc:
                why = f"{type(exc).__name__}: {exc}"
            if why:
                result.rejected.append((it.sop_instance_uid, why))
            if progress is not None:
                progress(it, why)
        fs.write(root)
        for instance in fs:
            file_id = "/".join(Path(instance.FileID).parts)
            dst = root / file_id
            shutil.copyfile(converted[instance.SOPInstanceUID], dst)
            result.instances[instance.SOPInstanceUID] = file_id
            result.files[file_id] = file_sha256(dst)
    result.files["DICOMDIR"] = file_sha256(root / "DICOMDIR")
    return result
