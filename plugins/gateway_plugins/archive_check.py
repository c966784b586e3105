"""``dicom-gateway archive check``: the archive's files against the index (STO-7).

A store renames its file into place before its index transaction commits
(decision 0012), so a process killed between the two leaves a complete file
that the index does not know and its peer never had acknowledged; the peer's
resend replaces it. A process killed while writing leaves a temporary file.
Neither is lost data, but an operator must be able to see them: this command
lists files without an index row, temporary files left by interrupted writes,
and index rows whose file is missing or has another size — and exits 1 when
there is any, so it can run from cron or a monitoring check.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  dicom-gateway archive check --config /etc/dicom-gateway
  dicom-gateway archive check --data-dir /srv/gateway-data --json
"""


def add_archive_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("archive", help="check the archive's files against the index")
    actions = p.add_subparsers(dest="archive_command", required=True, metavar="SUBCOMMAND")
    c = actions.add_parser("check", help="files without an index row, interrupted writes, rows without a file",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--config", metavar="DIR", help="config directory (default: embedded defaults)")
    c.add_argument("--data-dir", help="data directory (default from config)")
    c.add_argument("--json", action="store_true", help="one JSON object instead of text")
    c.set_defaults(func=archive_check_command)
    return p


def scan_archive(root: Path, indexed: set[str]) -> tuple[list[str], list[str]]:
    """(files under ``root`` without an index row, temporary files of interrupted writes),
    as paths relative to ``root``."""
    unindexed, partial = [], []
    for directory, _dirs, files in os.walk(root):
        for name in files:
            rel = Path(directory, name).relative_to(root).as_posix()
            if name.startswith(".") and name.endswith(".tmp"):  # FilesystemBackend.stage's temporary names
                partial.append(rel)
            elif rel not in indexed:
                unindexed.append(rel)
    return sorted(unindexed), sorted(partial)


def archive_check_command(args: argparse.Namespace) -> int:
    from gateway.command_setup import load_command_config, open_command_index
    from gateway_plugins.storage import settings_of, storage_root

    config = load_command_config(args)
    settings = settings_of(config)
    root = storage_root(config, settings)
    index = open_command_index(config, "archive check", read_only=True)
    dangling = index.dangling_files(root, backend=settings.backend)
    unindexed, partial = scan_archive(root, index.file_paths(settings.backend))
    report = {
        "archive": str(root),
        "unindexed": unindexed,
        "partial": partial,
        "missing_or_wrong_size": [{"sop_instance_uid": d.sop_instance_uid, "path": d.file.path} for d in dangling],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"archive {root}")
        for rel in unindexed:
            print(f"  not indexed (never acknowledged; a resend replaces it): {rel}")
        for rel in partial:
            print(f"  interrupted write (temporary file): {rel}")
        for d in report["missing_or_wrong_size"]:
            print(f"  indexed but missing or of another size: {d['path']} ({d['sop_instance_uid']})")
        problems = len(unindexed) + len(partial) + len(dangling)
        print("  OK: every file is indexed and every indexed file is there" if not problems
              else f"  {problems} problem(s)", file=sys.stdout)
    return 1 if unindexed or partial or dangling else 0
