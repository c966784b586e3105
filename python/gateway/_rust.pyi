
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
) -> bytes | None: ...
def swap_bytes(buf: bytes, width: int) -> bytes: ...
def swap_bytes_timed(buf: bytes, width: int, repeat: int) -> float: ...
# ---- END transcode ----
