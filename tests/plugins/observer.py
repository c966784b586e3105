"""Test plugin: records every stored instance in DATA_DIR/observed.txt
(`gateway_instance_stored`) and shows it as an `ls` column (`gateway_ls_columns`)."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.hookspecs import hookimpl

_lock = threading.Lock()


def _log(config) -> Path:
    return Path(config.node.data_dir) / "observed.txt"


@hookimpl
def gateway_instance_stored(instance, config):
    line = "\t".join((instance.sop_instance_uid, instance.series_instance_uid, instance.modality or "",
                      str(instance.path), str(instance.path is not None and instance.path.is_file())))
    with _lock, _log(config).open("a") as fh:
        fh.write(line + "\n")


@hookimpl
def gateway_ls_columns(level, uids, config):
    seen: dict[str, int] = {}
    if _log(config).exists():
        for row in _log(config).read_text().splitlines():
            series = row.split("\t")[1]
            seen[series] = seen.get(series, 0) + 1
    return {"observed": {uid: str(seen[uid]) for uid in uids if uid in seen}}
