"""Filesystem storage backend: objects as Part-10 files, written durably.

Layout ``<root>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``.
A write goes to a temporary file in the target directory, is fsynced,
renamed into place and the directory fsynced (STO-7): after ``write``
returns, the object survives a crash; before, no partial file is left.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from gateway.hookspecs import hookimpl
from gateway.messages import DatasetPayload


class OutOfSpace(OSError):
    """Disk full or quota reached (STO-8: A700)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FilesystemBackend:
    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def exists(self, rel: str) -> bool:
        return self.path(rel).is_file()

    def write(self, rel: str, head: bytes, payload: DatasetPayload) -> int:
        """Write ``head`` + the payload's bytes to ``rel`` durably; returns the size."""
        final = self.path(rel)
        created: list[Path] = []
        parent = final.parent
        while not parent.exists():
            created.append(parent)
            parent = parent.parent
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(head)
                payload.write_to(fh)
                fh.flush()
                os.fsync(fh.fileno())
                size = fh.tell()
            os.replace(tmp, final)
            _fsync_dir(final.parent)
            for directory in reversed(created):  # new study/series directories too
                _fsync_dir(directory.parent)
            return size
        except OSError as exc:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutOfSpace(exc.errno, f"{final.parent}: {exc.strerror}") from exc
            raise

    def delete(self, rel: str) -> None:
        try:
            self.path(rel).unlink()
        except FileNotFoundError:
            return
        for directory in (self.path(rel).parent, self.path(rel).parent.parent):
            try:
                directory.rmdir()  # only when empty
            except OSError:
                break

    def free_bytes(self) -> tuple[int, int]:
        """(free, total) bytes on the filesystem holding the root."""
        probe = self.root
        while not probe.exists():
            probe = probe.parent
        st = os.statvfs(probe)
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


@hookimpl
def gateway_register_storage_backends(registry: Any) -> None:
    registry.add("filesystem", lambda root: FilesystemBackend(root))
