"""Helpers the benchmark scripts share: loopback ports, the full corpus."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
GENIE_PRIVATE = "1.2.840.113619.4.27"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port}")


def full_corpus(corpus: Path | None) -> tuple[list[str], int]:
    """The full explicit-LE corpus (generated when missing) without the GENIE private
    objects, which DCMTK storescu does not know; returns the files and their total size."""
    corpus = corpus or Path(tempfile.gettempdir()) / "dicom-gateway-corpus-full"
    if not (corpus / "manifest.json").exists():
        subprocess.run([sys.executable, str(SHARED / "corpus" / "make_corpus.py"), "--out", str(corpus)], check=True)
    manifest = json.loads((corpus / "manifest.json").read_text())
    files = [str(corpus / f["path"]) for f in manifest["files"] if f["sop_class_uid"] != GENIE_PRIVATE]
    return files, sum(os.path.getsize(f) for f in files)


def write_gateway_toml(directory: Path, port: int, extra: str = "") -> None:
    """The benchmarked gateway's gateway.toml: AE BENCH, 2 workers, data in ``directory/data``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "gateway.toml").write_text(f"""
[node]
ae_title = "BENCH"
data_dir = "{directory / 'data'}"
workers = 2
log_level = "WARNING"
[[listeners]]
port = {port}
bind = "127.0.0.1"
[http]
enabled = false
""" + extra)
