"""Media drivers (issue 15 item 4): where a finished volume goes.

A driver takes a volume laid out as a folder (DICOMDIR at its root) and puts
it on its medium; ``read_back`` returns every file's digest as the medium now
holds it, for the verification after writing (MED-2). Built in: ``folder``
(the layout itself) and ``iso`` (an ISO 9660 image through pycdlib, no external
tools). They are registered through the core hook
``gateway_register_media_drivers`` like any site's driver (a disc burner, a USB
target), and export looks every driver up by name in the plugin host's
``media_drivers`` registry (docs/media.md, "Media drivers").
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any, Protocol

__all__ = ["MediaDriver", "FolderDriver", "IsoDriver", "digests_of_folder", "register_builtin", "open_driver",
           "driver_registry", "UnknownDriver"]


class MediaDriver(Protocol):
    """What ``factory(config)`` of a registered media driver returns.

    ``suffix``: ``""`` when a volume is a folder at its target, else the file
    ending of a volume written as one file (``".iso"``). ``write`` puts the
    staged volume on the medium at ``target``; ``read_back`` returns
    ``{file ID: sha256}`` of what the medium then holds. Optional: ``in_place =
    True`` lets the exporter stage the volume at its target itself (no copy).
    """

    name: str
    suffix: str

    def write(self, staged: Path, target: Path, label: str) -> None: ...

    def read_back(self, target: Path) -> dict[str, str]: ...


def file_sha256(path: Path) -> str:
    """SHA-256 of a whole file, as a volume's read-back compares them (MED-5)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def digests_of_folder(root: Path) -> dict[str, str]:
    """Relative file ID (``/``-separated, as on the medium) -> sha256."""
    return {p.relative_to(root).as_posix(): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


class FolderDriver:
    name, suffix = "folder", ""
    in_place = True  # the staged layout is the medium: no copy

    def write(self, staged: Path, target: Path, label: str) -> None:
        if staged.resolve() != target.resolve():
            shutil.copytree(staged, target, dirs_exist_ok=True)

    def read_back(self, target: Path) -> dict[str, str]:
        return digests_of_folder(target)


class IsoDriver:
    """ISO 9660 level 1 names suit PS3.12 file IDs exactly (uppercase, 8 characters,
    no extension, 8 levels), so the image needs no Joliet or Rock Ridge names."""

    name, suffix = "iso", ".iso"

    @staticmethod
    def _pycdlib():
        try:
            import pycdlib
        except ImportError as exc:  # an optional extra: say how to get it
            raise RuntimeError("ISO output needs pycdlib: pip install 'dicom-gateway[media]'") from exc
        return pycdlib

    def write(self, staged: Path, target: Path, label: str) -> None:
        pycdlib = self._pycdlib()
        iso = pycdlib.PyCdlib()
        iso.new(interchange_level=1, vol_ident=label[:32].upper())
        for d in sorted(p for p in staged.rglob("*") if p.is_dir()):
            iso.add_directory("/" + d.relative_to(staged).as_posix())
        for f in sorted(p for p in staged.rglob("*") if p.is_file()):
            # ";1" is the ISO 9660 version suffix; readers show the name without it.
            iso.add_file(str(f), "/" + f.relative_to(staged).as_posix() + ";1")
        target.parent.mkdir(parents=True, exist_ok=True)
        iso.write(str(target))
        iso.close()

    def read_back(self, target: Path) -> dict[str, str]:
        import io

        pycdlib = self._pycdlib()
        iso = pycdlib.PyCdlib()
        iso.open(str(target))
        out: dict[str, str] = {}
        try:
            for dirname, _dirs, files in iso.walk(iso_path="/"):
                for name in files:
                    path = (dirname.rstrip("/") + "/" + name)
                    buf = io.BytesIO()
                    iso.get_file_from_iso_fp(buf, iso_path=path)
                    rel = path.lstrip("/").split(";")[0]
                    out[rel] = hashlib.sha256(buf.getvalue()).hexdigest()
        finally:
            iso.close()
        return dict(sorted(out.items()))


class UnknownDriver(ValueError):
    """A driver name no loaded plugin registered; the message lists the registered ones."""


def register_builtin(registry: Any) -> None:
    """``folder`` and ``iso``, registered as a site's plugin registers its own."""
    registry.add("folder", lambda config=None: FolderDriver())
    registry.add("iso", lambda config=None: IsoDriver())


_last_registry: tuple[Any, Any] = (None, None)


def driver_registry(config: Any) -> Any:
    """The ``media_drivers`` registry of the plugins ``config`` loads: a command, the
    sender's worker and rule validation all get no plugin host handed to them, and
    loading one (modules already imported) takes milliseconds. Kept for the last config
    seen, so a plugin that fails to load is logged once per config, not once per job."""
    global _last_registry
    from gateway.plugins import load_host

    seen, registry = _last_registry
    if seen is not config:
        registry = load_host(config.disabled_plugins, config.plugins.modules).media_drivers
        _last_registry = (config, registry)
    return registry


def open_driver(registry: Any, name: str, config: Any) -> MediaDriver:
    """The driver ``name`` built by its factory, or :class:`UnknownDriver` naming the registered ones."""
    if name not in registry.factories:
        known = ", ".join(sorted(registry.factories)) or "none"
        raise UnknownDriver(f"unknown media driver {name!r} (registered: {known}; a site's driver "
                            f"comes from a plugin's gateway_register_media_drivers)")
    return registry.create(name, config)
