"""``dicom-gateway print``, ``print ls|cancel`` and ``printer status`` (PRN-2..PRN-7 for operators).

Every print is a job in the print queue (:mod:`gateway_plugins.print_queue`). Without
``--queue`` the command inserts its job already claimed by itself and prints it here and
now, retries included, exactly as before there was a queue (a serving gateway is not
needed and does not take it); with ``--queue`` it only inserts it and the serving
gateway's worker for that printer prints it in turn. Either way ``print ls`` shows it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["add_print_parsers", "print_command", "status_command"]

PRINT_EXAMPLES = """\
dicom-gateway print FILM1 --series 1.2.840.113619.2.55.3.1234 --config /etc/dicom-gateway
dicom-gateway print FILM1 --study 1.2.3.4 --format 'STANDARD\\2,3' --film 14INX17IN --copies 2
dicom-gateway print FILM1 ct/*.dcm --preview /tmp/film.png     # the films as PNG, nothing sent
dicom-gateway print FILM1 --series 1.2.3 --queue --priority HIGH   # the serving gateway prints it
dicom-gateway print ls [--json] [--state pending]                  # the print queue
dicom-gateway print cancel 12 13                                   # waiting: at once; printing: at its next step"""

STATUS_EXAMPLES = "dicom-gateway printer status FILM1 --config /etc/dicom-gateway"

#: ``print ls`` and ``print cancel`` share the command with ``print PRINTER`` (so a printer may not be named so).
SUBCOMMANDS = ("ls", "cancel")


def add_print_parsers(commands: Any) -> None:
    p = commands.add_parser("print", help="print stored objects or files on a printer (printers/*.toml); "
                            "print ls|cancel: the print queue", examples=PRINT_EXAMPLES)
    p.add_argument("printer", metavar="PRINTER|ls|cancel", help="a printers/<name>.toml name, or ls, or cancel ID…")
    p.add_argument("files", nargs="*", metavar="FILE|ID",
                   help="DICOM files to print (instead of --study/--series); for cancel: job ids")
    p.add_argument("--study", action="append", default=[], metavar="UID", help="a stored study (repeatable)")
    p.add_argument("--series", action="append", default=[], metavar="UID", help="a stored series (repeatable)")
    p.add_argument("--format", default=None, metavar="FORMAT",
                   help="image display format, e.g. 'STANDARD\\2,3', 'ROW\\2,3' (default: the printer's)")
    p.add_argument("--film", default=None, metavar="SIZE", help="film size ID, e.g. 14INX17IN (default: the printer's)")
    p.add_argument("--orientation", default=None, choices=("PORTRAIT", "LANDSCAPE"))
    p.add_argument("--copies", type=int, default=None, metavar="N")
    p.add_argument("--priority", default=None, choices=("HIGH", "MED", "LOW"),
                   help="the job's place in the queue and its Print Priority (default: the printer's)")
    p.add_argument("--queue", action="store_true",
                   help="only queue the job (its id is printed); the serving gateway prints it")
    p.add_argument("--preview", default=None, metavar="OUT.png",
                   help="write the films the printer would get as PNG (OUT-1.png, OUT-2.png… for several); send nothing")
    p.add_argument("--json", action="store_true", help="print ls: one JSON list of jobs")
    p.add_argument("--state", default=None, help="print ls: only jobs in this state")
    commands.config_options(p)
    p.set_defaults(func=print_command)
    s = commands.add_parser("printer", help="printers: status", examples=STATUS_EXAMPLES)
    sub = s.add_subparsers(dest="printer_command", required=True, metavar="SUBCOMMAND")
    st = sub.add_parser("status", help="the printer's status (DICOM: N-GET Printer: NORMAL, WARNING, FAILURE)")
    st.add_argument("printer", metavar="PRINTER")
    commands.config_options(st)
    st.set_defaults(func=status_command)


def _fail(what: str, message: str, code: int = 1) -> int:
    print(f"dicom-gateway {what}: {message}", file=sys.stderr)
    return code


def _printer(config: Any, name: str) -> tuple[str, Any]:
    from gateway_plugins.print_config import PrinterConfigError, printer_settings

    try:
        return printer_settings(config, name)
    except PrinterConfigError as exc:
        raise SystemExit(_fail("print", str(exc), 2)) from None


def print_command(args: argparse.Namespace) -> int:
    if args.printer in SUBCOMMANDS:
        return (_ls if args.printer == "ls" else _cancel)(args)
    from gateway.command_setup import load_command_config, open_command_index
    from gateway_plugins.print_config import FILM_SIZES
    from gateway_plugins.print_queue import PrintQueue

    if bool(args.files) == bool(args.study or args.series):
        return _fail("print", "give FILES, or --study/--series (not both)", 2)
    if args.copies is not None and not 1 <= args.copies <= 99:
        return _fail("print", "--copies must be 1..99", 2)
    film = (args.film or "").upper() or None
    if film and film not in FILM_SIZES:
        return _fail("print", f"unknown film size {args.film!r}; known: {', '.join(FILM_SIZES)}", 2)
    if args.queue and args.preview:
        return _fail("print", "--preview sends nothing, so there is nothing to queue: give one of them", 2)
    config = load_command_config(args)
    name, settings = _printer(config, args.printer)
    if args.files:
        paths = [Path(f).resolve() for f in args.files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            return _fail("print", f"no such file: {', '.join(missing)}", 2)
        source: dict[str, Any] = {"files": [str(p) for p in paths]}
    else:
        source = {"studies": list(args.study), "series": list(args.series)}
    options = {k: v for k, v in (("format", args.format), ("film", film), ("orientation", args.orientation),
                                 ("copies", args.copies)) if v is not None}
    if args.preview:
        return _preview(config, name, settings, source, options, Path(args.preview))
    priority = args.priority or settings.priority
    index = open_command_index(config, "print")
    try:
        queue = PrintQueue(index)
        if args.queue:
            job_id = queue.add(printer=name, priority=priority, source=source, options=options)
            print(f"queued print job {job_id} on {name} (priority {priority}); `dicom-gateway print ls` shows it")
            return 0
        return _print_here(config, name, settings, queue, source, options, priority)
    finally:
        index.close()


def _preview(config: Any, name: str, settings: Any, source: dict[str, Any], options: dict[str, Any],
             out: Path) -> int:
    """The png driver writing to the files named: no job, nothing sent."""
    from gateway_plugins.print_drivers import FilmJob, PngDriver, Printer
    from gateway_plugins.print_render import RenderError, preview_paths
    from gateway_plugins.print_worker import Unprintable, render, source_paths

    try:
        paths, sort = source_paths(config, source)
        rendered = render(paths, settings, options, sort=sort)
    except (Unprintable, RenderError) as exc:
        return _fail("print", str(exc))
    print(rendered.summary(settings))
    outputs = preview_paths(out, len(rendered.films))
    PngDriver(Printer(name, settings), config, outputs).print(
        FilmJob(None, name, rendered.films, options.get("copies"), rendered.film_size, rendered.orientation,
                settings.priority))
    for path in outputs:
        print(f"preview: {path}")
    return 0


def _print_here(config: Any, name: str, settings: Any, queue: Any, source: dict[str, Any],
                options: dict[str, Any], priority: str) -> int:
    """Insert the job claimed by this process and print it now, retrying as the printer says."""
    from gateway_plugins.print_drivers import create_driver
    from gateway_plugins.print_queue import TERMINAL, worker_id
    from gateway_plugins.print_worker import LEASE, run_job

    try:  # before the job exists: a printer with an unknown driver is a configuration error
        driver = create_driver(name, settings, config)
    except LookupError as exc:
        return _fail("print", str(exc), 2)
    claimant = worker_id()
    job_id = queue.add(printer=name, priority=priority, source=source, options=options, state="claimed",
                       claimed_by=claimant, lease=LEASE)
    said: set[str] = set()

    def say(line: str) -> None:  # the summary once, not once per try
        if line not in said:
            said.add(line)
            print(line, flush=True)

    try:
        job = queue.get(job_id)
        while True:
            outcome = run_job(job, config, settings, driver, queue, claimant, say)
            job = queue.get(job_id)
            if outcome.state != "pending":
                break
            wait = max(0.0, (job.next_attempt_at - datetime.now(timezone.utc).replace(tzinfo=None)).total_seconds())
            print(f"  try {job.attempts} failed: {outcome.error}; trying again in {wait:.0f} s", file=sys.stderr)
            time.sleep(wait)
            claimed = queue.claim_id(job_id, claimant, LEASE)
            while claimed is None and job.state not in TERMINAL:  # a serving gateway took the retry: its outcome
                time.sleep(0.5)
                job = queue.get(job_id)
                claimed = queue.claim_id(job_id, claimant, LEASE)
            if claimed is None:
                outcome = None
                break
            job = claimed
    except KeyboardInterrupt:
        # Left claimed, the job would be released and printed by a serving gateway once this
        # process is gone: the operator stopped it, so it is cancelled.
        queue.cancelled(job_id, "interrupted (Ctrl-C) while printing; films already printed stay printed")
        print(f"dicom-gateway print: interrupted; print job {job_id} cancelled", file=sys.stderr)
        return 130
    finally:
        driver.close()
    if job.state == "done":
        for w in outcome.result.warnings if outcome is not None else ():
            print(f"  warning: {w}", file=sys.stderr)
        text = (f"{outcome.result.films} film(s), {outcome.result.images} image(s)" if outcome is not None
                else (job.result or "").removeprefix("printed ").split(";")[0])
        print(f"printed {text} on {name} (job {job_id})")
        return 0
    if job.state == "cancelled":
        return _fail("print", f"print job {job_id} {job.result}")
    error = outcome.error if outcome is not None and outcome.error else job.last_error
    return _fail("print", f"print job failed: {error} (job {job_id})")


def _open_queue(args: argparse.Namespace, command: str, read_only: bool) -> tuple[Any, Any]:
    from gateway.command_setup import load_command_config, open_command_index
    from gateway_plugins.print_queue import PrintQueue

    config = load_command_config(args)
    index = open_command_index(config, f"print {command}", read_only=read_only)
    return index, PrintQueue(index)


def _ls(args: argparse.Namespace) -> int:
    from gateway.terminal import print_table
    from gateway_plugins.prefetch_command import _when  # local time, as `prefetch ls` shows it
    from gateway_plugins.print_queue import STATES

    if args.files:
        return _fail("print ls", f"unexpected arguments: {' '.join(args.files)} (filter with --state)", 2)
    if args.state and args.state not in (*STATES, "cancelling"):
        return _fail("print ls", f"unknown state {args.state!r}; one of: {', '.join((*STATES, 'cancelling'))}", 2)
    index, queue = _open_queue(args, "ls", read_only=True)
    try:
        jobs = queue.list(state=args.state) if queue.exists() else []
    finally:
        index.close()
    if args.json:
        json.dump([j.to_dict() for j in jobs], sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    if not jobs:
        print("no print jobs")
        return 0
    rows = [(str(j.id), j.printer, j.priority, j.shown_state, _when(j.created_at), str(j.attempts),
             (j.last_error if j.state != "done" and j.last_error and j.state != "cancelled" else j.result) or "")
            for j in jobs]
    print_table([("id", "printer", "priority", "state", "created", "tries", "result / last error"), *rows])
    return 0


def _cancel(args: argparse.Namespace) -> int:
    bad = [a for a in args.files if not a.isdigit()]
    if not args.files or bad:
        return _fail("print cancel", "give the ids of the jobs to cancel (`dicom-gateway print ls` lists them)"
                     + (f"; not an id: {', '.join(bad)}" if bad else ""), 2)
    index, queue = _open_queue(args, "cancel", read_only=True)
    try:
        outcome = queue.cancel([int(a) for a in args.files]) if queue.exists() else {}
    finally:
        index.close()
    failed = 0
    for a in args.files:
        what = outcome.get(int(a), "no such job")
        print(f"job {a}: {what}")
        failed += what.startswith(("no such", "already"))
    return 1 if failed else 0


def status_command(args: argparse.Namespace) -> int:
    from gateway.command_setup import load_command_config
    from gateway_plugins.print_drivers import create_driver
    from gateway_plugins.print_scu import PrintError

    config = load_command_config(args)
    name, settings = _printer(config, args.printer)
    try:
        driver = create_driver(name, settings, config)
    except LookupError as exc:
        return _fail("printer status", str(exc), 2)
    try:
        state = driver.status()
    except PrintError as exc:
        return _fail("printer status", str(exc))
    finally:
        driver.close()
    print(f"{name}: {state.status}" + (f" (status info: {state.info})" if state.info else ""))
    for k, v in state.attributes.items():
        if k not in ("PrinterStatus", "PrinterStatusInfo"):
            print(f"  {k}: {v}")
    return 1 if state.status == "FAILURE" else 0
