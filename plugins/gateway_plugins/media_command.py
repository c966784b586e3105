"""``dicom-gateway media export | ls | import | jobs`` (MED-1..MED-5 for operators; export jobs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_media_parser", "export_command", "ls_command", "import_command", "jobs_command"]

EXAMPLES = """\
dicom-gateway media export /mnt/usb/OUT --study 1.2.840.113619.2.55.3.1234 --config /etc/dicom-gateway
dicom-gateway media export out/ --patient PAT001 --capacity cd700 --split
dicom-gateway media export out/ --series 1.2.3.4 --format iso
dicom-gateway media export out/ --patient PAT001 --capacity dvd --dry-run
dicom-gateway media export /srv/export/OUT --study 1.2.3.4 --queue --config /etc/dicom-gateway
dicom-gateway media ls /media/cdrom
dicom-gateway media import /media/cdrom --study 1.2.3.4 --config /etc/dicom-gateway
dicom-gateway media ls disc.iso
dicom-gateway media import disc.iso --config /etc/dicom-gateway
dicom-gateway media jobs --json --config /etc/dicom-gateway
dicom-gateway media jobs retry 12 13 --config /etc/dicom-gateway"""

#: media_jobs.STATES, not imported: building the command line must not load SQLAlchemy.
STATES = ("pending", "claimed", "done", "failed", "dead")


def add_media_parser(commands: Any) -> None:
    p = commands.add_parser("media", help="DICOM media (STD-GEN-CD file-sets): export, list, import, export jobs",
                            examples=EXAMPLES)
    sub = p.add_subparsers(dest="media_command", required=True, metavar="SUBCOMMAND")
    e = sub.add_parser("export", help="write archived studies as a STD-GEN-CD file-set (MED-1, MED-2)")
    e.add_argument("out", metavar="OUT", help="output folder (must be empty or absent)")
    e.add_argument("--study", action="append", default=[], metavar="UID")
    e.add_argument("--patient", action="append", default=[], metavar="ID")
    e.add_argument("--series", action="append", default=[], metavar="UID")
    e.add_argument("--capacity", default=None,
                   help="volume size: cd650, cd700, dvd, or bytes (500MB, 4.7GB); default unlimited")
    e.add_argument("--split", action="store_true", help="write several volumes when one does not hold it all")
    e.add_argument("--format", default="folder", metavar="DRIVER",
                   help="media driver: folder (default), iso, or one a site's plugin registers")
    e.add_argument("--dry-run", action="store_true", help="only report how many volumes it needs")
    e.add_argument("--queue", action="store_true",
                   help="queue a job for the serving gateway instead of writing here (see media jobs)")
    commands.config_options(e)
    e.set_defaults(func=export_command)
    j = sub.add_parser("jobs", help="export jobs of rules (action = \"media\") and of export --queue")
    j.add_argument("--json", action="store_true", help="one JSON list of jobs")
    j.add_argument("--state", choices=STATES)
    commands.config_options(j)
    j.set_defaults(func=jobs_command)
    jsub = j.add_subparsers(dest="jobs_command", metavar="ACTION")
    for name, help_text in (("retry", "replay dead or failed jobs now (tries from zero)"),
                            ("drop", "delete jobs (never one being exported)")):
        a = jsub.add_parser(name, help=help_text)
        a.add_argument("ids", nargs="+", type=int, metavar="ID")
        # Given after the IDs or before the action alike: SUPPRESS keeps this parser's
        # unset options from overwriting what `media jobs --config DIR` already parsed.
        a.add_argument("--config", metavar="DIR", default=argparse.SUPPRESS, help="config directory")
        a.add_argument("--data-dir", default=argparse.SUPPRESS, help="data directory (default from config)")
        a.set_defaults(func=jobs_command)
    ls = sub.add_parser("ls", help="show the DICOMDIR tree of a file-set (MED-3)")
    ls.add_argument("path", metavar="PATH", help="a DICOMDIR, the folder holding it, or an ISO 9660 image")
    ls.set_defaults(func=ls_command)
    i = sub.add_parser("import", help="import a file-set, a plain folder or an ISO image through the storage path "
                                      "(MED-3, MED-4)")
    i.add_argument("path", metavar="PATH", help="a folder (with or without DICOMDIR) or an ISO 9660 image")
    i.add_argument("--study", action="append", default=[], metavar="UID", help="only this study (repeatable)")
    commands.config_options(i)
    i.set_defaults(func=import_command)


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def export_command(args: argparse.Namespace) -> int:
    from gateway.command_setup import load_command_config
    from gateway.index.selection import SelectionError, stored_files
    from gateway_plugins.media_drivers import UnknownDriver, driver_registry, open_driver
    from gateway_plugins.media_volumes import parse_capacity, plan_volumes

    if not (args.study or args.patient or args.series):
        print("dicom-gateway media export: give --study, --patient or --series", file=sys.stderr)
        return 2
    try:
        capacity = parse_capacity(args.capacity)
    except ValueError as exc:
        print(f"dicom-gateway media export: {exc}", file=sys.stderr)
        return 2
    config = load_command_config(args)
    try:
        drv = open_driver(driver_registry(config), args.format, config)
    except UnknownDriver as exc:
        print(f"dicom-gateway media export: --format: {exc}", file=sys.stderr)
        return 2
    try:
        items = stored_files(config, studies=args.study, patients=args.patient, series=args.series)
        volumes = plan_volumes(items, capacity)
    except (SelectionError, ValueError) as exc:
        print(f"dicom-gateway media export: {exc}", file=sys.stderr)
        return 1
    total = sum(i.size for i in items)
    studies = len({i.study_instance_uid for i in items})
    cap = f"volumes of {_human(capacity)}" if capacity else "volume (no capacity limit)"
    # MED-2: say how many media the selection needs before writing anything.
    print(f"selection: {len(items)} instances, {studies} studies, {_human(total)}: needs {len(volumes)} {cap}")
    if args.dry_run:
        return 0
    if len(volumes) > 1 and not args.split:
        print(f"dicom-gateway media export: needs {len(volumes)} volumes; give --split to write them all",
              file=sys.stderr)
        return 1
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"dicom-gateway media export: {out} is not empty" if out.is_dir()
              else f"dicom-gateway media export: {out} is a file, not a folder", file=sys.stderr)
        return 1
    if args.queue:
        return _queue_export(args, config, out)
    return _write(volumes, out, drv, config)


def _write(volumes: list, out: Path, drv: Any, config: Any) -> int:
    """Write and verify every volume in this process, a progress bar per volume."""
    from gateway.progress import Progress
    from gateway_plugins.media_export import write_volumes

    bars: dict[int, Any] = {}
    failed = 0
    identity = getattr(getattr(config, "node", None), "implementation_class_uid", None)
    reports = write_volumes(
        volumes, out, drv, identity=identity,
        on_volume_start=lambda n, k: bars.__setitem__(n, Progress(k, f"volume {n}", verb="written")),
        on_object=lambda n, it, why: bars[n].step(it.sop_instance_uid, failed=why is not None))
    try:
        for report in reports:
            bars[report.number].close(summary=False)  # the volume line below is the summary
            print(report.line())
            for uid, why in report.rejected:
                print(f"  not written  {uid}: {why}", file=sys.stderr)
            failed += (not report.verified) + len(report.rejected)
    except OSError as exc:  # OUT under a file, a full or read-only medium: said, not a traceback
        print(f"dicom-gateway media export: cannot write {exc.filename or out}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    return 1 if failed else 0


def _queue_export(args: argparse.Namespace, config: Any, out: Path) -> int:
    """``--queue``: a durable job the serving gateway's sender works off (``media jobs``)."""
    from gateway.command_setup import open_command_index
    from gateway_plugins.media_jobs import ensure_table, insert_command_job

    index = open_command_index(config, "media export --queue")
    try:
        with index._connect(write=True) as conn:
            ensure_table(conn)
            job_id = insert_command_job(
                conn, selection={"studies": args.study, "patients": args.patient, "series": args.series},
                target=str(out.resolve()),  # the sender runs elsewhere: never a relative path
                options={"driver": args.format, "capacity": args.capacity, "split": args.split})
    finally:
        index.close()
    print(f"queued media job {job_id}: written to {out.resolve()} by the serving gateway "
          f"(dicom-gateway media jobs)")
    return 0


def ls_command(args: argparse.Namespace) -> int:
    from gateway_plugins.media_iso import IsoError, IsoImage, is_iso_image
    from gateway_plugins.media_reader import find_dicomdir, print_tree

    path = Path(args.path)
    if is_iso_image(path):
        try:
            with IsoImage(path) as image:
                dicomdir = image.dicomdir()
                if dicomdir is None:
                    print(f"dicom-gateway media ls: no DICOMDIR in {path} (an image without one: use media import)",
                          file=sys.stderr)
                    return 1
                where = path / "DICOMDIR"
        except IsoError as exc:
            print(f"dicom-gateway media ls: cannot read {exc}", file=sys.stderr)
            return 1
    else:
        dicomdir = find_dicomdir(path)
        if dicomdir is None:
            print(f"dicom-gateway media ls: no DICOMDIR at {args.path} (a plain folder: use media import)",
                  file=sys.stderr)
            return 1
        where = dicomdir
    try:
        print_tree(dicomdir, sys.stdout)
    except Exception as exc:  # a damaged DICOMDIR is reported, never a traceback
        print(f"dicom-gateway media ls: cannot read {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def import_command(args: argparse.Namespace) -> int:
    from gateway.importer import candidates
    from gateway_plugins.media_iso import is_iso_image
    from gateway_plugins.media_reader import find_dicomdir, referenced_files

    path = Path(args.path)
    if not path.exists():
        print(f"dicom-gateway media import: {path}: no such file or folder", file=sys.stderr)
        return 2
    if is_iso_image(path):
        return _import_iso(args, path)
    dicomdir = find_dicomdir(path)
    missing: list[tuple[Path, str]] = []
    if dicomdir is not None:
        try:
            refs = referenced_files(dicomdir, args.study or None)
        except Exception as exc:
            print(f"dicom-gateway media import: cannot read {dicomdir}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            return 1
        paths, missing = [str(p) for p in refs.present], refs.missing
    elif args.study:
        print("dicom-gateway media import: --study needs a DICOMDIR; a plain folder is imported whole",
              file=sys.stderr)
        return 2
    else:
        paths = [str(path)]  # MED-4: a folder without DICOMDIR is scanned as by `dicom-gateway import`
    files = candidates(paths) if paths else []

    def store(importer: Any) -> None:
        importer.add_all(files)

    return _import(args, len(files), missing, store)


def _import_iso(args: argparse.Namespace, image_path: Path) -> int:
    """``media import IMAGE.iso``: the image's files one at a time, each copied out
    into one temporary file and imported from there (no mount, no unpacking)."""
    import tempfile

    from gateway_plugins.media_iso import IsoError, IsoImage

    try:
        image = IsoImage(image_path)
    except IsoError as exc:
        print(f"dicom-gateway media import: cannot read {exc}", file=sys.stderr)
        return 1
    with image:
        try:
            dicomdir = image.dicomdir()
            refs = image.referenced(dicomdir, args.study or None) if dicomdir is not None else None
        except Exception as exc:  # a damaged DICOMDIR, as on a folder
            print(f"dicom-gateway media import: cannot read {image_path / 'DICOMDIR'}: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            return 1
        if refs is None and args.study:
            print("dicom-gateway media import: --study needs a DICOMDIR; an image without one is imported whole",
                  file=sys.stderr)
            return 2
        members = refs.present if refs is not None else image.all_files()
        missing = [(image_path / fid, uid) for fid, uid in refs.missing] if refs is not None else []

        def store(importer: Any) -> None:
            with tempfile.TemporaryDirectory(prefix="gateway-iso-") as tmp:
                local = Path(tmp) / "object"
                for member in members:
                    try:
                        image.extract(member, local)
                    except IsoError as exc:
                        importer.fail(image.shown(member), str(exc))
                        continue
                    importer.add(local, shown=image.shown(member))

        return _import(args, len(members), missing, store)


def _import(args: argparse.Namespace, total: int, missing: list[tuple[Path, str]], store: Any) -> int:
    """The storage path of ``dicom-gateway import`` for the files ``store(importer)``
    hands over; duplicates are what the storage service answered for each (STO-6)."""
    from gateway.command_setup import command_runtime, load_command_config
    from gateway.importer import Importer
    from gateway.progress import Progress

    config = load_command_config(args)
    runtime = command_runtime(config)
    for p, uid in missing:
        print(f"  MISSING  {p}: referenced by the DICOMDIR (SOP Instance {uid}) but not on the medium",
              file=sys.stderr)
    if missing:
        print(f"missing {len(missing)} referenced file(s)")
    bar = Progress(total, "import")
    importer = Importer(runtime, progress=lambda p, err: bar.step(str(p), failed=err is not None))
    store(importer)
    bar.close(summary=False)  # the summary below counts duplicates and what was skipped
    importer.summary.report()
    return 1 if missing or importer.summary.failed else 0


def jobs_command(args: argparse.Namespace) -> int:
    """``media jobs [--json]``, ``media jobs retry ID…``, ``media jobs drop ID…``."""
    from gateway.command_setup import load_command_config, open_command_index
    from gateway_plugins.media_jobs import MediaQueue

    action = getattr(args, "jobs_command", None)
    config = load_command_config(args)
    index = open_command_index(config, f"media jobs {action or ''}".strip(), read_only=True)
    try:
        queue = MediaQueue(index)
        if action is None:
            return _jobs_ls(queue.list(state=args.state) if queue.exists() else [], args.json)
        problems = [f"job {i}: no such job" for i in args.ids] if not queue.exists() else \
            [p for p in (getattr(queue, action)(i) for i in args.ids) if p]
    finally:
        index.close()
    for problem in problems:
        print(f"dicom-gateway media jobs {action}: {problem}", file=sys.stderr)
    done = len(args.ids) - len(problems)
    print(f"{done} media job(s) {'queued again' if action == 'retry' else 'dropped'}")
    return 1 if problems else 0


def _jobs_ls(jobs: list, as_json: bool) -> int:
    import json

    from gateway.terminal import print_table

    if as_json:
        print(json.dumps([j.to_dict() for j in jobs], indent=1))
        return 0
    if not jobs:
        print("no media jobs")
        return 0
    rows = []
    for j in jobs:
        nxt = j.next_attempt_at.strftime("%Y-%m-%d %H:%M:%S UTC") if j.state == "pending" else "-"
        note = j.last_error if j.state != "done" and j.last_error else (j.result or "")
        rows.append([str(j.id), j.state, j.what, j.written_to or j.target, j.options.get("driver", "folder"),
                     j.progress, str(j.attempts), nxt, note])
    print_table([("id", "state", "study", "target", "driver", "written", "tries", "due", "result / error"), *rows])
    return 0
