"""Writing planned volumes through a media driver, each verified after writing (MED-2).

One code path for ``dicom-gateway media export`` (in the command's process) and
for an export job (in the sender's media worker): volume ``n`` of ``out`` is
``out`` itself (one volume, a folder driver) or ``out/VOL00n<suffix>``; each is
staged as a folder (the file-set creator), handed to the driver, read back
through the driver and every file's SHA-256 compared with what was written.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

__all__ = ["VolumeReport", "write_volumes", "volume_target"]


@dataclass
class VolumeReport:
    number: int
    target: Path
    instances: int
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (SOP Instance UID, why not written)
    bad: list[str] = field(default_factory=list)  # file IDs whose read-back differs or is missing

    @property
    def verified(self) -> bool:
        return not self.bad

    def line(self) -> str:
        state = "verified" if self.verified else (
            f"VERIFY FAILED ({len(self.bad)} files differ: {', '.join(self.bad[:3])})")
        return f"volume {self.number}: {self.target}: {self.instances} instances, {state}"


def volume_target(out: Path, n: int, count: int, drv: Any) -> Path:
    """Where volume ``n`` of ``count`` goes: OUT for a single folder volume, else OUT/VOL00n<suffix>."""
    if not drv.suffix and count == 1:
        return out
    return out / f"VOL{n:03d}{drv.suffix}"


def write_volumes(volumes: Sequence[Sequence[Any]], out: Path, drv: Any, *, identity: str | None,
                  on_object: Callable[[int, Any, str | None], None] | None = None,
                  on_volume_start: Callable[[int, int], None] | None = None,
                  tmp_dir: Path | None = None) -> Iterator[VolumeReport]:
    """Write each volume to its target and verify it; yields one report per volume.

    ``on_object(n, item, why)`` after each object of volume ``n`` (``why``: why it was
    not written, or None); ``on_volume_start(n, objects)`` before volume ``n``.
    A driver that raises stops the export (the exception propagates).
    """
    from gateway_plugins.media_fileset import write_volume

    for n, vol in enumerate(volumes, start=1):
        label = f"GW{n:04d}"
        target = volume_target(out, n, len(volumes), drv)
        tmp = None
        if getattr(drv, "in_place", False) and not drv.suffix:
            staged = target
        else:
            tmp = tempfile.TemporaryDirectory(prefix="media-vol-", dir=tmp_dir)
            staged = Path(tmp.name) / "root"
        if on_volume_start is not None:
            on_volume_start(n, len(vol))
        try:
            progress = None if on_object is None else (lambda it, why, n=n: on_object(n, it, why))
            result = write_volume(vol, staged, label, implementation_class_uid=identity, progress=progress)
            drv.write(staged, target, label)
            # MED-2: re-read what the medium now holds and compare every digest.
            back = drv.read_back(target)
        finally:
            if tmp is not None:
                tmp.cleanup()
        bad = sorted(set(result.files) ^ set(back)) + sorted(
            f for f in result.files if f in back and back[f] != result.files[f])
        yield VolumeReport(n, target, len(result.instances), list(result.rejected), bad)
