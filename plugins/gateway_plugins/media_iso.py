"""ISO 9660 images as import sources (MED-4, issue 15 item 3): ``media ls IMAGE.iso``
and ``media import IMAGE.iso``.

The image is read through pycdlib, as the ``iso`` media driver writes it: not
mounted (no privileges, no loop device) and not unpacked as a whole. Each file is
copied out on its own into one temporary file, imported, and replaced by the
next, so the disk holds at most one object beside the image.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway_plugins.media_reader import file_id_key

__all__ = ["IsoError", "IsoImage", "is_iso_image", "IsoReferenced"]

#: ISO 9660 8.4.2: the standard identifier of a volume descriptor, the first of
#: which (the primary one) is at sector 16 (byte 32768), after one byte of type.
_PVD = 32768
_SIGNATURE_AT, _SIGNATURE = _PVD + 1, b"CD001"
#: ISO 9660 8.4.8 Volume Space Size (blocks) and 8.4.12 Logical Block Size, both-byte
#: order fields whose little-endian half comes first.
_SPACE_SIZE_AT, _BLOCK_SIZE_AT = _PVD + 80, _PVD + 128


def _declared_size(path: Path) -> int | None:
    """The image's size as its primary volume descriptor declares it, or None."""
    with open(path, "rb") as fh:
        fh.seek(_SPACE_SIZE_AT)
        space = fh.read(4)
        fh.seek(_BLOCK_SIZE_AT)
        block = fh.read(2)
    if len(space) < 4 or len(block) < 2:
        return None
    return struct.unpack("<I", space)[0] * struct.unpack("<H", block)[0]


class IsoError(Exception):
    """An image, or a file in it, that cannot be read; the message names it."""


def is_iso_image(path: Path) -> bool:
    """``path`` is a file meant as an ISO 9660 image: named ``*.iso`` (then read as
    one, so a damaged image is an error rather than "not DICOM"), or carrying the
    volume descriptor signature under another name."""
    if not path.is_file():
        return False
    if path.suffix.lower() == ".iso":
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(_SIGNATURE_AT)
            return fh.read(len(_SIGNATURE)) == _SIGNATURE
    except OSError:
        return False


@dataclass
class IsoReferenced:
    present: list[str] = field(default_factory=list)  # ISO paths (with ";1")
    missing: list[tuple[str, str]] = field(default_factory=list)  # (file ID as named, SOP Instance UID)


class IsoImage:
    """An open image: its files by file ID, its DICOMDIR, one file at a time out of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            import pycdlib
        except ImportError as exc:  # an optional extra: say how to get it
            raise IsoError("reading ISO images needs pycdlib: pip install 'dicom-gateway[media]'") from exc
        self._iso = pycdlib.PyCdlib()
        try:
            self._iso.open(str(path))
            #: file ID key ("PT000000/ST000000/…", see file_id_key) -> ISO path ("/PT000000/…;1")
            self.files: dict[str, str] = {}
            for dirname, _dirs, names in self._iso.walk(iso_path="/"):
                for name in names:
                    iso_path = dirname.rstrip("/") + "/" + name
                    self.files["/".join(file_id_key(p) for p in iso_path.strip("/").split("/"))] = iso_path
        except Exception as exc:  # pycdlib raises its own, struct and index errors on a damaged image
            self._close()
            raise IsoError(f"{path}: not a readable ISO 9660 image ({type(exc).__name__}: {exc})") from exc
        # pycdlib cuts the length of a file that runs past the end of the image to
        # what is there, without a word; so a shorter image than the volume
        # descriptor declares makes every file reaching its end suspect (_copy).
        self._size = path.stat().st_size
        declared = _declared_size(path)
        self._truncated = declared is not None and self._size < declared
        self._declared = declared or 0

    def __enter__(self) -> "IsoImage":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close()

    def _close(self) -> None:
        try:
            self._iso.close()
        except Exception:  # closing an image that never opened: nothing to release
            pass

    def shown(self, iso_path: str) -> Path:
        """How a file in the image is named in messages: the image, then its file ID."""
        return self.path / iso_path.strip("/").split(";")[0]

    def all_files(self) -> list[str]:
        """Every file in the image (ISO paths), in file ID order: a scan without DICOMDIR."""
        return [self.files[k] for k in sorted(self.files)]

    def dicomdir(self) -> io.BytesIO | None:
        """The DICOMDIR at the root of the image, read into memory, or None."""
        iso_path = self.files.get("DICOMDIR")
        if iso_path is None:
            return None
        buf = io.BytesIO()
        self._copy(iso_path, buf)
        buf.seek(0)
        return buf

    def referenced(self, dicomdir: io.BytesIO, studies: list[str] | None = None) -> IsoReferenced:
        """The files the image's DICOMDIR names (optionally of some studies), present or missing."""
        from gateway_plugins.media_reader import referenced_ids

        out = IsoReferenced()
        for parts, uid in referenced_ids(dicomdir, studies):
            iso_path = self.files.get("/".join(p.upper() for p in parts))
            if iso_path is None:
                out.missing.append(("/".join(parts), uid))
            else:
                out.present.append(iso_path)
        return out

    def extract(self, iso_path: str, local: Path) -> Path:
        """Copy one file of the image to ``local`` (overwritten) and return it."""
        with open(local, "wb") as fh:
            self._copy(iso_path, fh)
        return local

    def _copy(self, iso_path: str, fh: Any) -> None:
        try:
            record = self._iso.get_record(iso_path=iso_path)
            want = record.get_data_length()
            if self._truncated and (want <= 0 or record.extent_location() * self._iso.logical_block_size + want
                                    >= self._size):
                raise IsoError(f"truncated: the image ends inside this file (the image has {self._size} of "
                               f"the {self._declared} bytes its volume descriptor declares)")
            start = fh.tell()
            self._iso.get_file_from_iso_fp(fh, iso_path=iso_path)
            got = fh.tell() - start
        except IsoError:
            raise
        except Exception as exc:
            raise IsoError(f"cannot read from the image: {type(exc).__name__}: {exc}") from exc
        if got != want:  # a short read for any other reason is not a whole file either
            raise IsoError(f"truncated: {got} of {want} bytes read from the image")
