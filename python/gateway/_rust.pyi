"""Typed stubs for the compiled module gateway._rust (checked by mypy.stubtest)."""

__version__: str

# ---- BEGIN net (rust/py/src/net.rs) ----
class Receiver:
    def __init__(
        self,
        fd: int,
        *,
        max_pdu: int,
        max_message: int,
        spool_dir: str,
        spool_threshold: int,
        control_pdu_limit: int = 1048576,
    ) -> None: ...
    def receive(self, timeout: float | None, wake_fd: int = -1) -> tuple: ...
    def feed(self, data: bytes) -> list[tuple]: ...
    @property
    def max_pdu(self) -> int: ...
    @max_pdu.setter
    def max_pdu(self, value: int) -> None: ...
    @property
    def buffered(self) -> int: ...
    @property
    def mid_message(self) -> bool: ...

def fragment_message(context_id: int, command: bytes, dataset: bytes | None, max_pdu: int) -> list[bytes]: ...
def decode_pdu(data: bytes) -> dict: ...
# ---- END net ----

# ---- BEGIN transcode (rust/py/src/transcode.rs) ----
import os as _os

DICTIONARY_PYDICOM_VERSION: str

class TranscodeError(ValueError): ...

def transcode(
    src: bytes | bytearray | memoryview | str | _os.PathLike[str],
    dst_syntax: str,
    *,
    src_syntax: str | None = None,
    file_meta: bool = True,
    out: str | _os.PathLike[str] | None = None,
    implementation_class_uid: str,
    implementation_version_name: str,
    src_raw: bool = False,
) -> bytes | None: ...
def swap_bytes(buf: bytes, width: int) -> bytes: ...
def swap_bytes_timed(buf: bytes, width: int, repeat: int) -> float: ...
# ---- END transcode ----

# ---- BEGIN scan (rust/py/src/scan.rs) ----
class ScanError(ValueError): ...

def scan_header(
    src: bytes | bytearray | memoryview | str | _os.PathLike[str],
    syntax: str,
    tags: list[int],
    *,
    max_value: int = 1048576,
) -> tuple[dict[int, tuple[str | None, bytes]], list[int], bool, str, str | None]: ...
# ---- END scan ----

# ---- BEGIN imaging (rust/py/src/imaging.rs) ----
class ImagingError(ValueError): ...

def render_frame(
    pixels: bytes,
    rows: int,
    columns: int,
    *,
    samples: str,
    bits_stored: int | None = None,
    rescale_slope: float = 1.0,
    rescale_intercept: float = 0.0,
    window_center: float | None = None,
    window_width: float | None = None,
    monochrome1: bool = False,
    reverse: bool = False,
    palette: list[tuple[int, int, int, bytes]] | None = None,
    overlays: list[tuple[int, int, int, int, int, int, bytes, int]] | None = None,
    rotate: int = 0,
) -> bytes: ...
def compose_sheet(
    images: list[tuple[int, int, int, bytes] | None],
    *,
    width: int,
    height: int,
    channels: int,
    format: str,
    border: int = 0,
    border_value: int = 0,
    empty_value: int = 0,
    magnification: str = "REPLICATE",
) -> bytes: ...
def layout_boxes(format: str, width: int, height: int, border: int = 0) -> list[tuple[int, int, int, int]]: ...
# ---- END imaging ----
