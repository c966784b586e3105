"""Transfer-syntax conversion (STO-2, SND-2, DAT-1, DAT-2), done in Rust.

``transcode`` converts one encoded object between Implicit VR Little Endian,
Explicit VR Little Endian and Explicit VR Big Endian without building a
pydicom tree; the work runs in ``gateway._rust`` with the GIL released.

    >>> from gateway.transcode import transcode
    >>> data = transcode(Path("in.dcm"), "explicit-be")            # bytes, with File Meta
    >>> transcode(raw, "implicit", src_syntax="explicit-le", file_meta=False)  # network
    >>> transcode("in.dcm", "implicit", out="out.dcm")              # atomic file write

The module itself is callable (``gateway.transcode(...)`` is this function),
so both ``gateway.transcode(src, ...)`` and ``gateway.transcode.TranscodeError``
work.
"""

from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import gateway._rust as _rust
from gateway.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

__all__ = [
    "SYNTAXES",
    "ConvertSummary",
    "TranscodeError",
    "convert_paths",
    "decode_pixels",
    "normalize_syntax",
    "swap_bytes",
    "transcode",
]

#: Short names accepted everywhere, and their UIDs.
SYNTAXES: dict[str, str] = {
    "implicit": "1.2.840.10008.1.2",
    "explicit-le": "1.2.840.10008.1.2.1",
    "explicit-be": "1.2.840.10008.1.2.2",
}

#: Raised for malformed, truncated or unsupported input and for I/O errors
#: while converting. A subclass of ValueError; the message names the offset
#: and the tag.
TranscodeError = _rust.TranscodeError

PathOrBytes = bytes | bytearray | memoryview | str | os.PathLike


def normalize_syntax(syntax: str) -> str:
    """'implicit' | 'explicit-le' | 'explicit-be' or a UID -> the short name."""
    s = str(syntax).strip().strip("\0").lower()
    if s in SYNTAXES:
        return s
    for name, uid in SYNTAXES.items():
        if s == uid:
            return name
    raise TranscodeError(
        f"unknown transfer syntax {syntax!r}; expected one of {', '.join(SYNTAXES)} "
        f"or their UIDs ({', '.join(SYNTAXES.values())})"
    )


def transcode(
    src: PathOrBytes,
    dst_syntax: str,
    *,
    src_syntax: str | None = None,
    file_meta: bool = True,
    out: str | os.PathLike | None = None,
    implementation_class_uid: str | None = None,
    implementation_version_name: str | None = None,
    src_raw: bool = False,
) -> bytes | None:
    """Convert one encoded DICOM object to ``dst_syntax``.

    src: the encoded object (bytes-like) or a path to it. It may have a
        preamble and File Meta, or be a raw dataset (then ``src_syntax`` is
        required). ``src_syntax`` given for an input with File Meta overrides
        its Transfer Syntax UID.
    dst_syntax, src_syntax: 'implicit', 'explicit-le', 'explicit-be' or a UID.
    file_meta: write preamble, ``DICM`` and File Meta (False: the dataset
        alone, as sent in P-DATA).
    out: write the result to this path instead of returning it: through a
        temporary file renamed into place only on success. Returns None then.
    implementation_class_uid / implementation_version_name: written into the
        new File Meta; default: the gateway's own (``gateway.identity``).
    src_raw: the input is a bare dataset (from P-DATA or ``file_meta=False``):
        never look for a preamble or File Meta in it, since a dataset's own
        bytes can read ``DICM`` at offset 128. Requires ``src_syntax``.

    Raises TranscodeError (a ValueError) with the offset and tag of the problem.
    """
    if implementation_class_uid is None:
        implementation_class_uid = IMPLEMENTATION_CLASS_UID
    if implementation_version_name is None:
        implementation_version_name = IMPLEMENTATION_VERSION_NAME
    if isinstance(src, str):
        src = Path(src)
    return _rust.transcode(
        src,
        dst_syntax,
        src_syntax=src_syntax,
        file_meta=file_meta,
        out=os.fspath(out) if out is not None else None,
        implementation_class_uid=implementation_class_uid,
        implementation_version_name=implementation_version_name,
        src_raw=src_raw,
    )


def swap_bytes(buf: bytes | bytearray | memoryview, width: int) -> bytes:
    """Byte-swap every ``width``-byte number in ``buf`` (the transcoder's kernel)."""
    return _rust.swap_bytes(bytes(buf), width)


@dataclass
class ConvertSummary:
    """What ``convert_paths`` did: outputs written and inputs that failed (with the reason)."""

    converted: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "converted": len(self.converted),
            "failed": [{"path": str(p), "reason": r} for p, r in self.failed],
            "skipped": [{"path": str(p), "reason": r} for p, r in self.skipped],
        }


def _is_dicom_candidate(path: Path) -> bool:
    """Folder walk filter: DICM at 128, or a .dcm name (raw datasets need a syntax)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or path.suffix.lower() == ".dcm"


def plan_conversions(inputs: Iterable[str | os.PathLike], out: Path) -> list[tuple[Path, Path]]:
    items = [Path(p) for p in inputs]
    plan: list[tuple[Path, Path]] = []
    single_file = len(items) == 1 and items[0].is_file()
    for item in items:
        if item.is_dir():
            # Mirror the folder tree under out/<folder name>/ when several
            # inputs are given, straight under out/ for one folder.
            base = out if len(items) == 1 else out / item.name
            for path in sorted(p for p in item.rglob("*") if p.is_file()):
                if _is_dicom_candidate(path):
                    plan.append((path, base / path.relative_to(item)))
        elif single_file and not (out.exists() and out.is_dir()):
            plan.append((item, out))  # file -> file
        else:
            plan.append((item, out / item.name))
    return plan


def convert_paths(
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    syntax: str,
    progress: Callable[[Path, Path | None, str | None], None] | None = None,
    *,
    src_syntax: str | None = None,
    file_meta: bool = True,
    implementation_class_uid: str | None = None,
    implementation_version_name: str | None = None,
) -> ConvertSummary:
    """Convert files or folders to ``syntax``, mirroring folder trees under ``out``.

    One file and an ``out`` that is not an existing directory: ``out`` is the
    output file. Otherwise outputs go under the directory ``out``: a folder's
    tree is mirrored (under ``out/<folder name>`` when several inputs are
    given). Files in folders are taken when they have ``DICM`` at offset 128 or
    end in ``.dcm``. Every output is written atomically; a file that fails is
    recorded with the reason and the others go on.

    ``progress(src, dst, error)`` is called after each file (``dst`` None and
    ``error`` set on failure).
    """
    dst_syntax = normalize_syntax(syntax)
    src_norm = normalize_syntax(src_syntax) if src_syntax else None
    out_path = Path(out)
    summary = ConvertSummary()
    for src, dst in plan_conversions(inputs, out_path):
        try:
            if src.resolve() == dst.resolve():
                raise TranscodeError(f"{src}: output would overwrite the input")
            dst.parent.mkdir(parents=True, exist_ok=True)
            transcode(
                src,
                dst_syntax,
                src_syntax=src_norm,
                file_meta=file_meta,
                out=dst,
                implementation_class_uid=implementation_class_uid,
                implementation_version_name=implementation_version_name,
            )
        except (TranscodeError, OSError) as exc:
            summary.failed.append((src, str(exc)))
            if progress:
                progress(src, None, str(exc))
            continue
        summary.converted.append((src, dst))
        if progress:
            progress(src, dst, None)
    return summary


# Compressed syntaxes and the optional extra that decodes each (pydicom handlers).
_PIXEL_EXTRAS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg (pip install pylibjpeg pylibjpeg-libjpeg) or gdcm (pip install python-gdcm)",
    "1.2.840.10008.1.2.4.51": "pylibjpeg (pip install pylibjpeg pylibjpeg-libjpeg) or gdcm (pip install python-gdcm)",
    "1.2.840.10008.1.2.4.57": "pylibjpeg (pip install pylibjpeg pylibjpeg-libjpeg) or gdcm (pip install python-gdcm)",
    "1.2.840.10008.1.2.4.70": "pylibjpeg (pip install pylibjpeg pylibjpeg-libjpeg) or gdcm (pip install python-gdcm)",
    "1.2.840.10008.1.2.4.80": "pylibjpeg (pip install pylibjpeg pylibjpeg-libjpeg) or gdcm (pip install python-gdcm)",
    "1.2.840.10008.1.2.4.81": "pylibjpeg (pip install pylibjpeg pylibjpeg-libjpeg) or gdcm (pip install python-gdcm)",
    "1.2.840.10008.1.2.4.90": "pylibjpeg (pip install pylibjpeg pylibjpeg-openjpeg) or gdcm (pip install python-gdcm)",
    "1.2.840.10008.1.2.4.91": "pylibjpeg (pip install pylibjpeg pylibjpeg-openjpeg) or gdcm (pip install python-gdcm)",
    "1.2.840.10008.1.2.5": "pylibjpeg (pip install pylibjpeg pylibjpeg-rle) or gdcm (pip install python-gdcm)",
}


def decode_pixels(ds: Any) -> Any:
    """Pixel data of a pydicom Dataset as a numpy array, compressed or not.

    Uncompressed syntaxes decode with numpy alone. Compressed ones use
    pydicom's decoders; when none is installed for the syntax, raises
    TranscodeError naming the optional extra to install.
    """
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "")
    try:
        return ds.pixel_array
    except Exception as exc:  # pydicom raises several error types for a missing or failing handler
        extra = _PIXEL_EXTRAS.get(ts)
        compressed = ts not in SYNTAXES.values() and ts != "1.2.840.10008.1.2.1.99"
        if extra is None and compressed:
            extra = "pylibjpeg or gdcm (pip install pylibjpeg python-gdcm)"
        if extra:
            raise TranscodeError(
                f"cannot decode pixel data in transfer syntax {ts}: no decoder installed; "
                f"install the optional extra {extra} ({exc})"
            ) from exc
        raise


class _CallableModule(types.ModuleType):
    """``gateway.transcode(...)`` calls the function; attributes stay the module's."""

    def __call__(self, *args: Any, **kwargs: Any) -> bytes | None:
        return transcode(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
