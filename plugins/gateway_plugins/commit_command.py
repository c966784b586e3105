"""``dicom-gateway commit ls``: the storage commitment state per study (SND-8).

Each instance counts with its latest commitment at a destination: committed,
pending (N-ACTION sent, no result yet), re-sending (the SCP reported it failed;
it is queued again) or failed (out of re-sends, or gone from the archive).
For a destination with ``treat_as_archive = true`` (SND-7) the ``archived``
column says whether every instance of the study is committed there.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from gateway.terminal import print_table

__all__ = ["add_commit_parser", "commit_ls", "COMMIT_EXAMPLES"]

COMMIT_EXAMPLES = """\
examples:
  dicom-gateway commit ls                               every study with a commitment, per destination
  dicom-gateway commit ls --destination pacs            one destination
  dicom-gateway commit ls --study 1.2.840.113619.2.55.3 --instances
  dicom-gateway commit ls --transactions                N-ACTION transactions and their states
"""


def add_commit_parser(sub: Any) -> None:
    """Register ``commit`` and its subcommands on the top-level subparsers."""
    p = sub.add_parser("commit", help="storage commitment (SND-8): state per study",
                       epilog=COMMIT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = p.add_subparsers(dest="commit_command", required=True, metavar="SUBCOMMAND")
    c = csub.add_parser("ls", help="show the commitment state per study and destination",
                        epilog=COMMIT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--study", metavar="UID", help="one Study Instance UID")
    c.add_argument("--destination", metavar="D", help="one destination (a remote's name or AET@host:port)")
    view = c.add_mutually_exclusive_group()
    view.add_argument("--instances", action="store_true", help="one line per instance")
    view.add_argument("--transactions", action="store_true", help="one line per N-ACTION transaction")
    c.add_argument("--config", metavar="DIR")
    c.add_argument("--data-dir", help="data directory (default from config)")
    c.set_defaults(func=_cmd_commit_ls)


def _cmd_commit_ls(args: argparse.Namespace) -> int:
    from gateway.command_setup import load_command_config, open_command_index
    from gateway.index import IndexUnavailable

    config = load_command_config(args)
    index = open_command_index(config, "commit ls", read_only=True)
    try:
        return commit_ls(index, config, args)
    except IndexUnavailable as exc:
        print(f"dicom-gateway commit ls: index unavailable: {exc}", file=sys.stderr)
        return 2
    finally:
        index.close()


def _destination_name(store: Any, config: Any, wanted: str | None) -> str | None:
    """The recorded destination name matching ``wanted``; remote names ignore case
    (as everywhere a remote is named), so ``--destination PACS`` finds ``pacs``."""
    if not wanted:
        return None
    known = list((getattr(config, "remotes", {}) or {})) + store.destinations()
    return next((name for name in known if name.lower() == wanted.lower()), wanted)


def _archive(config: Any, destination: str) -> bool:
    found = config.remote(destination)
    return found is not None and found[1].treat_as_archive


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def commit_ls(index: Any, config: Any, args: Any, out: TextIO | None = None) -> int:
    """Print the table ``args`` asks for; returns the exit code (0)."""
    from gateway.index.commitments import CommitmentStore

    out = out or sys.stdout
    store = CommitmentStore(index)
    destination = _destination_name(store, config, getattr(args, "destination", None))
    study = getattr(args, "study", None) or None
    if getattr(args, "transactions", False):
        rows: list[tuple[Any, ...]] = [("transaction", "destination", "state", "n-action", "instances",
                                        "committed", "failed", "created", "updated")]
        for t in store.transactions(destination=destination):
            if study and not any(i.study_instance_uid == study for i in t.items):
                continue
            action = "-" if t.action_status is None else f"0x{t.action_status:04X}"
            rows.append((t.transaction_uid, t.destination, t.state, action, len(t.items),
                         sum(i.state == "committed" for i in t.items), sum(i.state == "failed" for i in t.items),
                         _when(t.created_at), _when(t.updated_at)))
    elif getattr(args, "instances", False):
        rows = [("destination", "study", "instance", "state", "reason", "failures", "transaction")]
        for i in store.instances(study=study, destination=destination):
            state = i.state
            if state == "failed":
                state = "re-sending" if i.resending else "failed"
            reason = "-" if i.failure_reason is None else f"0x{i.failure_reason:04X}"
            rows.append((i.destination, i.study_instance_uid, i.sop_instance_uid, state, reason, i.failures,
                         i.transaction_uid))
    else:
        rows = [("destination", "study", "instances", "committed", "pending", "re-sending", "failed",
                 "state", "archived", "updated")]
        for s in store.studies(study=study, destination=destination):
            archived = ("yes" if s.state == "committed" else "no") if _archive(config, s.destination) else "-"
            rows.append((s.destination, s.study_instance_uid, s.instances, s.committed, s.pending,
                         s.resending, s.gave_up, s.state, archived, _when(s.updated_at)))
    if len(rows) == 1:
        what = " for study " + study if study else ""
        where = " at " + destination if destination else ""
        print(f"no storage commitment recorded{what}{where}", file=out)
        return 0
    print_table(rows, out)
    return 0
