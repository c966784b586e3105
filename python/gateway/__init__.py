"""dicom-gateway: a DICOM gateway for PET/CT and nuclear-medicine sites.

The core knows hooks, not plugins: services, storage backends and drivers
are plugins registered through the ``dicom_gateway`` entry-point group.
"""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("dicom-gateway")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

from gateway.identity import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME  # noqa: F401


def __getattr__(name: str):
    # Lazy so that `import gateway` stays cheap and works before the
    # extension is built (config check, docs).
    if name == "transcode":
        from gateway.transcode import transcode

        return transcode
    raise AttributeError(name)
