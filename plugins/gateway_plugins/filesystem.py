"""Filesystem storage backend: objects as Part-10 files, written durably.

Layout ``<root>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``.
A write goes to a temporary file of its own in the target directory, is
fsynced, renamed into place and the directory fsynced (STO-7): after ``write``
returns, the object survives a crash; before, no partial file is left.
``stage`` + ``Staged.commit`` split the two halves, so the storage service can
rename a new version over an old one only once the index can take its row.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

from gateway.hookspecs import hookimpl
from gateway.messages import DatasetPayload


_UMASK = os.umask(0o022)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


class OutOfSpace(OSError):
    """Disk full or quota reached (STO-8: A700)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


class Staged:
    """A complete, fsynced temporary file waiting to be renamed into place."""

    def __init__(self, tmp: Path, final: Path, created: list[Path], size: int) -> None:
        self.tmp, self.final, self.created, self.size = tmp, final, created, size

    def commit(self) -> None:
        """Rename into place and fsync the directory (and new parents): durable from here."""
        os.replace(self.tmp, self.final)
        _fsync_dir(self.final.parent)
        for directory in reversed(self.created):  # new study/series directories too
            _fsync_dir(directory.parent)

    def abort(self) -> None:
        """Drop the temporary file; a no-op after ``commit``."""
        _unlink(self.tmp)


class FilesystemBackend:
    name = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def exists(self, rel: str) -> bool:
        return self.path(rel).is_file()

    def stage(self, rel: str, head: bytes, payload: DatasetPayload) -> "Staged":
        """Write ``head`` + the payload's bytes to a temporary file next to
        ``rel`` and fsync it; ``commit()`` puts it in place, ``abort()`` drops it.
        On error nothing is left behind (ENOSPC/EDQUOT raise OutOfSpace)."""
        final = self.path(rel)
        created: list[Path] = []
        parent = final.parent
        while not parent.exists():
            created.append(parent)
            parent = parent.parent
        tmp: Path | None = None
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            # A name of its own for every write: two writes of one object (a
            # resend on a new association, another worker) must never share a
            # temporary file, or the renamed file could hold both.
            fd, name = tempfile.mkstemp(prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp", dir=final.parent)
            tmp = Path(name)
            os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; archive files get the usual mode
            with open(fd, "wb") as fh:
                fh.write(head)
                payload.write_to(fh)
                fh.flush()
                os.fsync(fh.fileno())
                size = fh.tell()
            return Staged(tmp, final, created, size)
        except OSError as exc:
            if tmp is not None:
                _unlink(tmp)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise OutOfSpace(exc.errno, f"{final.parent}: {exc.strerror}") from exc
            raise

    def write(self, rel: str, head: bytes, payload: DatasetPayload) -> int:
        """Write ``head`` + the payload's bytes to ``rel`` durably; returns the size."""
        staged = self.stage(rel, head, payload)
        try:
            staged.commit()
        except OSError:
            staged.abort()
            raise
        return staged.size

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
