"""`dicom-gateway queue ls | retry | drop`: the operator's view of the forward queue.

The queue is a table in the index (DESIGN §2), so these commands work whether
or not the gateway is running; a running sender's circuit breakers are read
from the state file it publishes in ``<data_dir>/run``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from gateway.terminal import print_table
from gateway.index.job_states import STATES

QUEUE_EXAMPLES = """examples:
  dicom-gateway queue ls --summary                       # per destination and state, with breakers
  dicom-gateway queue ls --state dead --destination pacs
  dicom-gateway queue ls --study 1.2.826.0.1.3680043.10.1472.1
  dicom-gateway queue retry --destination pacs           # replay dead, failed and held jobs now
  dicom-gateway queue retry --id 17 --id 18
  dicom-gateway queue drop --state dead --destination old-pacs
  dicom-gateway queue drop --all                         # every job that is not being sent
"""

RETRYABLE = ("dead", "failed", "held")
#: `claimed` is never dropped (a sender is using it); `done` only when asked for.
DROPPABLE = ("pending", "waiting", "held", "dead", "failed", "done")


def register(commands: Any) -> None:
    """`queue` and its subcommands (the forward queue is the core's, decision 0004)."""
    common = commands.config_options
    p = commands.add_parser("queue", help="list, retry or drop forward jobs (the durable forward queue)",
                            epilog=QUEUE_EXAMPLES)
    qsub = p.add_subparsers(dest="queue_command", required=True, metavar="SUBCOMMAND")

    q = qsub.add_parser("ls", help="list jobs (newest last), or a summary per destination",
                        epilog=QUEUE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(q)
    q.add_argument("--state", choices=STATES, help="only jobs in this state")
    q.add_argument("--destination", metavar="D", help="only jobs for this destination (remote name or AET@host:port)")
    q.add_argument("--study", metavar="UID", help="only jobs of this Study Instance UID")
    q.add_argument("--summary", action="store_true", help="count and oldest job per destination and state, "
                                                          "with each destination's circuit breaker")
    q.add_argument("--limit", type=int, default=1000, help="at most this many jobs (default 1000)")
    q.set_defaults(func=_cmd_ls)

    q = qsub.add_parser("retry", help="send dead-lettered, failed or held jobs again, now (attempts start over)",
                        epilog=QUEUE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(q)
    q.add_argument("--id", type=int, action="append", dest="ids", metavar="N", help="a job id (repeatable)")
    q.add_argument("--destination", metavar="D")
    q.add_argument("--state", choices=RETRYABLE, action="append", dest="states",
                   help="only jobs in this state (repeatable; default dead, failed and held)")
    q.set_defaults(func=_cmd_retry)

    q = qsub.add_parser("drop", help="delete jobs (never one a sender is working on)",
                        epilog=QUEUE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    common(q)
    q.add_argument("--id", type=int, action="append", dest="ids", metavar="N", help="a job id (repeatable)")
    q.add_argument("--destination", metavar="D")
    q.add_argument("--state", choices=DROPPABLE, action="append", dest="states",
                   help="only jobs in this state (repeatable; default every state but claimed and done)")
    q.add_argument("--all", action="store_true", help="allow dropping without --id/--destination/--state")
    q.set_defaults(func=_cmd_drop)


def _open(args: argparse.Namespace, read_only: bool = False) -> tuple[Any, Any]:
    from gateway.command_setup import load_command_config, open_command_index
    from gateway.index.queue import ForwardQueue

    config = load_command_config(args)
    return config, ForwardQueue(open_command_index(config, "queue", read_only=read_only))


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _cmd_ls(args: argparse.Namespace) -> int:
    from gateway.forward import read_state

    config, queue = _open(args, read_only=True)
    if args.summary:
        state = read_state(config.node.data_dir)
        breakers = (state or {}).get("breakers", {})
        rows: list[tuple[Any, ...]] = [("destination", "state", "count", "oldest", "breaker")]
        summary = [r for r in queue.summary()
                   if (not args.destination or r["destination"] == args.destination)
                   and (not args.state or r["state"] == args.state)]
        for r in summary:
            b = breakers.get(r["destination"])
            rows.append((r["destination"], r["state"], r["count"], _when(r["oldest"]), _breaker(b, state)))
        if len(rows) == 1:
            print("the forward queue is empty" + (" (for this filter)" if args.destination or args.state else ""))
            return 0
        print_table(rows)
        for dest, b in sorted(breakers.items()):
            if b.get("state") != "closed" and b.get("last_error"):
                print(f"{dest}: circuit {b['state']}: {b['last_error']}")
        return 0
    jobs = queue.list(state=args.state, destination=args.destination, study_instance_uid=args.study,
                      limit=args.limit)
    if not jobs:
        print("no jobs" + (" match" if args.state or args.destination or args.study else " in the forward queue"))
        return 0
    rows = [("id", "state", "destination", "tries", "next try", "sop instance uid", "rule", "last error")]
    for j in jobs:
        status = f"0x{j.last_status:04X} " if j.last_status is not None and j.state != "done" else ""
        rows.append((j.id, j.state, j.destination, j.attempts,
                     _when(j.next_attempt_at) if j.state == "pending" else "-",
                     j.sop_instance_uid, j.rule, (status + (j.last_error or ""))[:80] or "-"))
    print_table(rows)
    if len(jobs) == args.limit:
        print(f"(first {args.limit} jobs; use --limit or a filter to see others)")
    return 0


def _breaker(b: dict | None, state: dict | None) -> str:
    if state is None:
        return "(sender not running)"
    if b is None:
        return "closed"
    if b.get("state") == "open":
        return f"open (probe in {b.get('retry_in', 0):.0f} s, {b.get('failures', 0)} failures)"
    return str(b.get("state"))


def _cmd_retry(args: argparse.Namespace) -> int:
    _, queue = _open(args)
    n = queue.retry(ids=args.ids, destination=args.destination, states=tuple(args.states or RETRYABLE))
    print(f"{n} job(s) queued again")
    return 0


def _cmd_drop(args: argparse.Namespace) -> int:
    if not (args.ids or args.destination or args.states or args.all):
        print("dicom-gateway queue drop: refusing to drop every job; give --id, --destination or --state, "
              "or --all if you mean it", file=sys.stderr)
        return 2
    _, queue = _open(args)
    states = tuple(args.states) if args.states else tuple(s for s in DROPPABLE if s != "done")
    n = queue.drop(ids=args.ids, destination=args.destination, states=states)
    print(f"{n} job(s) dropped")
    return 0
