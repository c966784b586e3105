"""``dicom-gateway prefetch ls|retry|drop``: the prefetch jobs in the index.

They use the index directly, so they work with the gateway running or stopped;
``ls`` only reads (it creates no index and no table).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

from gateway.terminal import print_table

EXAMPLES = """\
examples:
  dicom-gateway prefetch ls                       every job: kind, state, archive, study, tries, last error
  dicom-gateway prefetch ls --state pending --json
  dicom-gateway prefetch retry                    replay dead and failed jobs now
  dicom-gateway prefetch drop --state done        forget finished jobs
"""

STATES = ("pending", "claimed", "done", "failed", "dead")


def add_prefetch_parser(commands: Any) -> None:
    p = commands.add_parser("prefetch", help="prefetch jobs of prior studies (routes with action = \"prefetch\")",
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="prefetch_command", required=True, metavar="SUBCOMMAND")
    ls = sub.add_parser("ls", help="list the jobs", epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.add_argument("--state", choices=STATES)
    ls.add_argument("--kind", choices=("query", "pull"))
    ls.add_argument("--study", metavar="UID", help="jobs of this study (new or prior)")
    ls.add_argument("--json", action="store_true", help="one JSON list of jobs")
    commands.config_options(ls)
    ls.set_defaults(func=_ls)
    retry = sub.add_parser("retry", help="replay dead and failed jobs now (tries from zero)")
    retry.add_argument("--id", type=int, action="append", metavar="N")
    retry.add_argument("--state", choices=("dead", "failed"), action="append")
    commands.config_options(retry)
    retry.set_defaults(func=_retry)
    drop = sub.add_parser("drop", help="delete jobs (never a claimed one)")
    drop.add_argument("--id", type=int, action="append", metavar="N")
    drop.add_argument("--state", choices=("pending", "done", "failed", "dead"), action="append")
    drop.add_argument("--all", action="store_true", help="every job that is not claimed")
    commands.config_options(drop)
    drop.set_defaults(func=_drop)


def _open(args: argparse.Namespace, command: str) -> Any:
    from gateway.command_setup import load_command_config, open_command_index
    from gateway_plugins.prefetch_queue import PrefetchQueue

    config = load_command_config(args)
    index = open_command_index(config, f"prefetch {command}", read_only=True)
    return index, PrefetchQueue(index)


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.replace(tzinfo=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _ls(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    index, queue = _open(args, "ls")
    try:
        jobs = queue.list(state=args.state, kind=args.kind, study=args.study) if queue.exists() else []
    finally:
        index.close()
    if args.json:
        json.dump([j.to_dict() for j in jobs], out, indent=1)
        out.write("\n")
        return 0
    if not jobs:
        print("no prefetch jobs", file=out)
        return 0
    rows = []
    for j in jobs:
        nxt = _when(j.next_attempt_at) if j.state == "pending" else "-"
        note = j.last_error if j.state != "done" and j.last_error else (j.result or "")
        rows.append([str(j.id), j.kind, j.state, j.remote, j.patient_id, j.study_instance_uid, str(j.attempts), nxt,
                     note])
    print_table([("id", "kind", "state", "archive", "patient", "study", "tries", "next try", "result / last error"),
                 *rows], out=out)
    return 0


def _retry(args: argparse.Namespace) -> int:
    index, queue = _open(args, "retry")
    try:
        n = queue.retry(args.id, tuple(args.state or ("dead", "failed"))) if queue.exists() else 0
    finally:
        index.close()
    print(f"{n} prefetch job(s) queued again")
    return 0


def _drop(args: argparse.Namespace) -> int:
    if not (args.id or args.state or args.all):
        print("dicom-gateway prefetch drop: give --id, --state or --all", file=sys.stderr)
        return 2
    index, queue = _open(args, "drop")
    try:
        states = tuple(args.state) if args.state else ("pending", "done", "failed", "dead")
        n = queue.drop(args.id, states) if queue.exists() else 0
    finally:
        index.close()
    print(f"{n} prefetch job(s) dropped")
    return 0
