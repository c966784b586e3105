"""The file-set creator (MED-1, MED-5): one STD-GEN-CD volume laid out as a folder.

Every object is converted to Explicit VR Little Endian by the Rust transcoder
(STD-GEN-CD allows only that syntax) with our Implementation Class UID and no
Source AE title in File Meta, straight into its place under its PS3.10 file ID;
the DICOMDIR (``media_dicomdir``) is built from each archive file's header as
it goes and written last. The digests below are of the bytes on the medium.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Sequence

from gateway_plugins.media_drivers import file_sha256

__all__ = ["VolumeResult", "write_volume", "STD_GEN_CD"]

STD_GEN_CD = "STD-GEN-CD"
STANDARD_ROOT = "1.2.840.10008."


@dataclass
class VolumeResult:
    root: Path
    files: dict[str, str] = field(default_factory=dict)  # file ID -> sha256 of what was written
    instances: dict[str, str] = field(default_factory=dict)  # SOP Instance UID -> file ID
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (SOP Instance UID, why)


def _dicomdir_uid() -> str:
    from pydicom.uid import generate_uid

    from gateway.identity import IMPLEMENTATION_CLASS_UID

    return str(generate_uid(prefix=f"{IMPLEMENTATION_CLASS_UID.rsplit('.', 1)[0]}.4."))


def write_volume(items: Sequence[Any], root: Path, file_set_id: str,
                 implementation_class_uid: str | None = None, progress=None) -> VolumeResult:
    """Write ``items`` (gateway.index.selection.StoredFile) as a file-set under ``root`` (must be empty or absent)."""
    from pydicom import dcmread

    from gateway.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
    from gateway.importer import meta_end
    from gateway.transcode import TranscodeError, transcode
    from gateway_plugins.media_dicomdir import Directory

    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    result = VolumeResult(root)
    directory = Directory(file_set_id)
    made: set[Path] = set()
    for it in items:
        why = None
        try:
            raw = it.path.read_bytes()
            start = meta_end(raw)
            if it.sha256 and hashlib.sha256(memoryview(raw)[start:]).hexdigest() != it.sha256:
                # The archive copy no longer matches what was stored: never put it on a disc.
                why = "archived file's digest differs from the index (damaged?)"
            else:
                ds = dcmread(BytesIO(raw), stop_before_pixels=True)
                if not str(ds.SOPClassUID).startswith(STANDARD_ROOT):
                    # STD-GEN-CD carries standard storage SOP classes only (PS3.11 D.3.2);
                    # DCMTK's dcmmkdir -Pgp refuses private ones the same way.
                    why = f"private SOP class {ds.SOPClassUID} is not allowed on STD-GEN-CD"
                else:
                    place = directory.place(ds)
                    folder = root.joinpath(*place.components[:-1])
                    if folder not in made:
                        folder.mkdir(parents=True, exist_ok=True)
                        made.add(folder)
                    out = folder / place.components[-1]
                    syntax = it.transfer_syntax_uid or str(ds.file_meta.TransferSyntaxUID)
                    # MED-5: the dataset alone goes in, so the transcoder writes a new
                    # File Meta (our implementation UID, no Source AE of the sender).
                    transcode(memoryview(raw)[start:], "explicit-le", src_syntax=syntax, src_raw=True,
                              out=out, implementation_class_uid=implementation_class_uid)
                    directory.add(place)  # only what was written gets a record
                    result.instances[it.sop_instance_uid] = place.file_id
                    result.files[place.file_id] = file_sha256(out)
        except (TranscodeError, OSError, ValueError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        if why:
            result.rejected.append((it.sop_instance_uid, why))
        if progress is not None:
            progress(it, why)
    dicomdir = directory.encode(implementation_class_uid or IMPLEMENTATION_CLASS_UID,
                                IMPLEMENTATION_VERSION_NAME, _dicomdir_uid())
    (root / "DICOMDIR").write_bytes(dicomdir)
    result.files["DICOMDIR"] = hashlib.sha256(dicomdir).hexdigest()
    return result
