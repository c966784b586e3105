"""``dicom-gateway find | move | get``: the Query/Retrieve SCU for operators (QRU-1..QRU-5).

REMOTE is a configured remote's name (``remotes/<name>.toml``: its AE title,
address and timers) or ``AET@host:port``. Keys are DCMTK ``findscu -k``'s.

Exit status: 0 done; 1 the archive answered with a failure (or a retrieval had
failed sub-operations, or fewer objects arrived in our index than it reported);
2 usage or configuration error; 3 no association (the archive is down, refused
the association or aborted it); 130 interrupted with Ctrl-C (C-CANCEL sent).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from gateway.terminal import plural

log = logging.getLogger("gateway.qr_scu")

__all__ = ["add_parsers", "find_command", "move_command", "get_command"]

FIND_EXAMPLES = """\
dicom-gateway find pacs -k PatientID=ANC0000001                  studies of a patient (a table)
dicom-gateway find pacs -k "PatientName=MÜLLER*" -k StudyDate=20230101-   non-ASCII: sent as ISO_IR 192
dicom-gateway find pacs --level series -k StudyInstanceUID=1.2.3 -k Modality
dicom-gateway find PACS@10.0.0.5:104 --recursive                  the whole tree, with counts
dicom-gateway find pacs --recursive -k Modality=PT --json         series keys go to the series queries
dicom-gateway find pacs -k 0010,0020=ANC* -k 0008,0020 --csv"""

MOVE_EXAMPLES = """\
dicom-gateway move pacs --study 1.2.840.113619.2.55.3.1234       to our own storage AE
dicom-gateway move pacs --series 1.2.3.4 --series 1.2.3.5        the study UIDs are looked up
dicom-gateway move pacs --image 1.2.3.4.5 --dest WORKSTATION     to another AE the archive knows"""

GET_EXAMPLES = """\
dicom-gateway get pacs --series 1.2.3.4                           C-GET, then imported into the archive
dicom-gateway get pacs --study 1.2.3 --out /tmp/study             only written to a folder"""

EXIT_STATUS = ("exit status: 0 done, 1 the archive reported a failure, 2 usage or configuration error, "
               "3 no association, 130 interrupted (C-CANCEL sent)")


def _common(p: argparse.ArgumentParser, commands: Any) -> None:
    p.add_argument("remote", metavar="REMOTE", help="a configured remote's name, or AET@host:port")
    commands.config_options(p)
    p.add_argument("--patient-root", action="store_true",
                   help="use the Patient Root model (Study Root is the default, QRU-1)")


def _targets(p: argparse.ArgumentParser) -> None:
    p.add_argument("--study", action="append", default=[], metavar="UID", help="a Study Instance UID (repeatable)")
    p.add_argument("--series", action="append", default=[], metavar="UID", help="a Series Instance UID (repeatable)")
    p.add_argument("--image", action="append", default=[], metavar="UID", help="a SOP Instance UID (repeatable)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar; only the summary")
    p.add_argument("--verbose", "-v", action="store_true", help="a line per pending response")


def add_parsers(commands: Any) -> None:
    p = commands.add_parser("find", help="query a remote archive (C-FIND SCU, QRU-1..QRU-3), a tree with --recursive",
                            examples=FIND_EXAMPLES + "\n\n" + EXIT_STATUS)
    _common(p, commands)
    p.add_argument("-k", "--key", action="append", default=[], metavar="KEY[=VALUE]", dest="keys",
                   help="a matching or return key as in findscu: Keyword=Value, gggg,eeee=Value, "
                        "Keyword (return key), Seq[0].Keyword=Value (repeatable)")
    p.add_argument("--level", default="study", type=str.lower, choices=("patient", "study", "series", "image"),
                   help="query level (default study; patient needs --patient-root)")
    p.add_argument("--recursive", "-r", action="store_true",
                   help="QRU-2: the level, then every level below for each answer, on one association")
    p.add_argument("--charset", metavar="TERM",
                   help="Specific Character Set of the query (default ISO_IR 192 when a key has non-ASCII "
                        "characters, else ISO_IR 100)")
    p.add_argument("--no-default-keys", action="store_true", help="send only the -k keys (and the level's unique key)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON (with children when --recursive)")
    out.add_argument("--csv", action="store_true", help="CSV, one row per answer")
    p.add_argument("--verbose", "-v", action="store_true", help="with --recursive, a line per image too")
    p.set_defaults(func=find_command)

    p = commands.add_parser("move", help="retrieve studies, series or images from a remote archive (C-MOVE SCU, QRU-4)",
                            examples=MOVE_EXAMPLES + "\n\n" + EXIT_STATUS)
    _common(p, commands)
    _targets(p)
    p.add_argument("--dest", metavar="AE", help="move destination AE title (default: our own storage AE, the "
                                                "first listener's first AE title)")
    p.set_defaults(func=move_command)

    p = commands.add_parser("get", help="retrieve studies, series or images with C-GET and import them into the archive",
                            examples=GET_EXAMPLES + "\n\n" + EXIT_STATUS)
    _common(p, commands)
    _targets(p)
    p.add_argument("--out", metavar="DIR", help="write the objects to DIR and do not import them")
    p.set_defaults(func=get_command)


# ---- shared set-up and failure reporting ------------------------------------------------------------

class _Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _setup(args: argparse.Namespace, command: str) -> tuple[Any, Any, Any]:
    """(config, client, destination), or _Exit(2) having said why."""
    from gateway.command_setup import load_command_config
    from gateway_plugins.qr_scu import QueryRetrieveSCU

    config = load_command_config(args)
    plugin = getattr(args, "command_plugin", None)
    if plugin in config.disabled_plugins:
        print(f"dicom-gateway {command}: plugin {plugin!r} is disabled by the config ([plugins] disable)",
              file=sys.stderr)
        raise _Exit(2)
    # This plugin's own client, not the service registry's: loading every plugin (their
    # services import SQLAlchemy, pydicom, ...) to look it up was most of a `find`'s
    # start-up (issue 13). `get` loads them when it imports what arrived.
    client = QueryRetrieveSCU()
    try:
        dest = client.destination(args.remote, config)
    except LookupError as exc:
        print(f"dicom-gateway {command}: {exc}", file=sys.stderr)
        raise _Exit(2)
    return config, client, dest


def _run(command: str, body: Any) -> int:
    """Run ``body()``; every way it can fail becomes one line on stderr and an exit status."""
    from gateway.net.failures import AssociationFailed
    from gateway_plugins.qr_scu import QueryRetrieveError
    from gateway_plugins.qr_scu_keys import KeyError_

    try:
        return body()
    except _Exit as exc:
        return exc.code
    except KeyboardInterrupt:
        print(f"\ndicom-gateway {command}: interrupted; C-CANCEL sent to the archive", file=sys.stderr)
        return 130
    except KeyError_ as exc:
        print(f"dicom-gateway {command}: {exc}", file=sys.stderr)
        return 2
    except AssociationFailed as exc:
        print(f"dicom-gateway {command}: {exc}", file=sys.stderr)
        return 3
    except QueryRetrieveError as exc:
        print(f"dicom-gateway {command}: {exc}", file=sys.stderr)
        return 1 if exc.status is not None else 3
    except BrokenPipeError:
        raise  # the CLI's main turns a closed stdout into 141
    except Exception as exc:  # never a traceback for an operator
        log.debug("%s failed", command, exc_info=True)
        print(f"dicom-gateway {command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


# ---- find ---------------------------------------------------------------------------------------------

_COLUMNS = {
    "PATIENT": ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies"),
    "STUDY": ("PatientID", "PatientName", "StudyDate", "AccessionNumber", "StudyDescription", "ModalitiesInStudy",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "StudyInstanceUID"),
    "SERIES": ("StudyInstanceUID", "SeriesNumber", "Modality", "SeriesDescription",
               "NumberOfSeriesRelatedInstances", "SeriesInstanceUID"),
    "IMAGE": ("SeriesInstanceUID", "InstanceNumber", "SOPClassUID", "SOPInstanceUID"),
}
_SHORT = {"NumberOfPatientRelatedStudies": "studies", "NumberOfStudyRelatedSeries": "series",
          "NumberOfStudyRelatedInstances": "instances", "NumberOfSeriesRelatedInstances": "instances",
          "ModalitiesInStudy": "modalities"}


def find_command(args: argparse.Namespace) -> int:
    return _run("find", lambda: _find(args))


def _find(args: argparse.Namespace) -> int:
    from gateway_plugins import qr_scu_keys as qk

    config, client, dest = _setup(args, "find")
    model = "patient" if args.patient_root else "study"
    level = args.level.upper()
    if level not in qk.LEVELS[model]:
        print(f"dicom-gateway find: level {args.level} needs --patient-root", file=sys.stderr)
        return 2
    keys = qk.parse_keys(args.keys)
    answers = client.find(dest, keys, level=level, model=model, recursive=args.recursive, config=config,
                          charset=args.charset, defaults=not args.no_default_keys)
    out = sys.stdout
    if args.json:
        results = list(answers)
        json.dump([r.to_dict() for r in results], out, indent=1, ensure_ascii=False)
        out.write("\n")
    elif args.csv:
        _write_csv(list(answers), out)
    elif args.recursive:
        _print_tree(answers, level, args.verbose, out, dest)
    else:
        _print_table(answers, level, keys, out, dest)
    return 0


def _flatten(results: list[Any], upper: dict[str, str] | None = None) -> list[tuple[Any, dict[str, str]]]:
    from gateway_plugins.qr_scu_keys import UNIQUE_KEYS

    rows = []
    for r in results:
        rows.append((r, dict(upper or {})))
        rows += _flatten(r.children, {**(upper or {}), UNIQUE_KEYS[r.level]: r.uid})
    return rows


def _write_csv(results: list[Any], out: TextIO) -> None:
    rows = []
    names: dict[str, None] = {"QueryRetrieveLevel": None}
    for r, upper in _flatten(results):
        row = {**upper, **{k: v for k, v in r.to_dict().items() if k != "children"}}
        row["QueryRetrieveLevel"] = r.level
        names.update(dict.fromkeys(row))
        rows.append(row)
    names.pop("RetrieveAETitle", None)
    writer = csv.DictWriter(out, fieldnames=list(names), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("\\".join(v) if isinstance(v, list) else v) for k, v in row.items()})


def _print_table(answers: Any, level: str, keys: list[Any], out: TextIO, dest: Any) -> None:
    from gateway.terminal import print_table

    columns = list(_COLUMNS[level])
    for k in keys:  # the operator's own keys are columns too
        if k.keyword not in columns and k.keyword not in ("SpecificCharacterSet", "QueryRetrieveLevel"):
            columns.insert(len(columns) - 1, k.keyword)
    results = list(answers)
    if not results:
        print(f"no {level.lower()} matches at {dest}", file=out)
        return
    shown = [c for c in columns if any(r.value(c) for r in results) or c in [k.keyword for k in keys]]
    header = tuple(_SHORT.get(c, c) for c in shown)
    print_table([header] + [tuple(r.value(c) or "-" for c in shown) for r in results], out)
    print(f"{plural(len(results), _noun(level))} at {dest}", file=out)


def _noun(level: str) -> str:
    return {"PATIENT": "patient", "STUDY": "study", "SERIES": "series", "IMAGE": "image"}[level]


def _print_tree(answers: Any, level: str, verbose: bool, out: TextIO, dest: Any) -> None:
    """QRU-2 as a tree: each answer with the counts below it."""
    totals = {"PATIENT": 0, "STUDY": 0, "SERIES": 0, "IMAGE": 0}

    def line(r: Any, depth: int) -> None:
        totals[r.level] += 1
        pad = "  " * depth
        if r.level == "PATIENT":
            text = f"patient {r.value('PatientID', '-')}  {r.value('PatientName')}  {plural(r.count('STUDY'), 'study')}"
        elif r.level == "STUDY":
            bits = [r.value("StudyDate", "-"), r.value("StudyDescription"), r.value("PatientName"),
                    f"({r.value('PatientID')})" if r.value("PatientID") else "",
                    f"{plural(r.count('SERIES'), 'series')}, {plural(r.count('IMAGE'), 'image')}", r.uid]
            text = "study " + "  ".join(b for b in bits if b)
        elif r.level == "SERIES":
            bits = [r.value("SeriesNumber", "-"), r.value("Modality", "-"), r.value("SeriesDescription"),
                    plural(r.count("IMAGE"), "image"), r.uid]
            text = "series " + "  ".join(b for b in bits if b)
        else:
            text = f"image {r.value('InstanceNumber', '-')}  {r.uid}"
        if r.level != "IMAGE" or verbose:
            print(pad + text, file=out)
        for c in r.children:
            line(c, depth + 1)

    for r in answers:
        line(r, 0)
        out.flush()
    parts = [plural(n, _noun(lv)) for lv, n in totals.items() if lv in ("STUDY", "SERIES", "IMAGE")
             or (lv == "PATIENT" and n)]
    print(f"{', '.join(parts)} at {dest}", file=out)


# ---- move / get ---------------------------------------------------------------------------------------

def _target(args: argparse.Namespace, command: str) -> tuple[str, list[str], str | None, str | None]:
    """(level, uids, study above, series above) from --study/--series/--image."""
    if args.image:
        if len(args.series) > 1 or len(args.study) > 1:
            raise _usage(command, "with --image, give at most one --series and one --study (the images' own)")
        return "IMAGE", args.image, (args.study or [None])[0], (args.series or [None])[0]
    if args.series:
        if len(args.study) > 1:
            raise _usage(command, "with --series, give at most one --study (the series' own)")
        return "SERIES", args.series, (args.study or [None])[0], None
    if args.study:
        return "STUDY", args.study, None, None
    raise _usage(command, "give --study, --series or --image UID")


def _usage(command: str, text: str) -> _Exit:
    print(f"dicom-gateway {command}: {text}", file=sys.stderr)
    return _Exit(2)


class _Progress:
    """Sub-operation counts of the pending responses, as a bar on a terminal's stderr."""

    def __init__(self, label: str, quiet: bool, verbose: bool) -> None:
        self.label = label
        self.quiet, self.verbose = quiet, verbose
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.drawn = False

    def __call__(self, r: Any) -> None:
        done = r.completed + r.failed + r.warning
        total = r.total
        if self.verbose:
            print(f"pending: remaining {r.remaining if r.remaining is not None else '?'}, completed {r.completed}, "
                  f"failed {r.failed}, warning {r.warning}", file=sys.stderr)
        if self.quiet or not self.tty:
            return
        frac = done / total if total else 0.0
        bar = "#" * int(frac * 30)
        failed = f" {r.failed} failed" if r.failed else ""
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {done}/{total or '?'}{failed}")
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _index_count(config: Any, level: str, uids: list[str]) -> tuple[int | None, str]:
    """How many instances of these studies/series/images our index holds, or (None, why not)."""
    try:
        import sqlalchemy as sa

        from gateway.index import Index
        from gateway.index import schema as t
        from gateway.index.store import index_missing

        url = config.effective_database_url()
        if why := index_missing(url):
            return None, why
        # Only counted: the gateway that stored the objects has the schema migrated, and
        # checking that here (Alembic) cost ~0.1 s of every `move` (issue 13).
        index = Index(url, migrate=False)
        try:
            column = {"STUDY": t.studies.c.study_instance_uid, "SERIES": t.series.c.series_instance_uid,
                      "IMAGE": t.instances.c.sop_instance_uid}[level]
            query = (sa.select(sa.func.count(sa.distinct(t.instances.c.sop_instance_uid)))
                     .select_from(t.instances.join(t.series, t.instances.c.series_fk == t.series.c.id)
                                  .join(t.studies, t.series.c.study_fk == t.studies.c.id))
                     .where(column.in_(uids)))
            with index.engine.connect() as conn:
                return int(conn.execute(query).scalar() or 0), ""
        finally:
            index.close()
    except Exception as exc:  # the check is a courtesy; its failure is said, not fatal
        return None, f"{type(exc).__name__}: {exc}"


def _summary(command: str, result: Any, level: str, uids: list[str], dest: Any, seconds: float,
             out: TextIO) -> int:
    what = f"{plural(len(uids), _noun(level))}" if len(uids) > 1 else f"{_noun(level)} {uids[0]}"
    to = f" to {result.destination}" if result.destination else ""
    print(f"{command} {what} from {dest}{to}: {result.message}", file=out)
    print(f"  sub-operations: {result.completed} completed, {result.failed} failed, {result.warning} with warning"
          f" in {seconds:.1f} s", file=out)
    for uid in result.failed_uids:
        print(f"  failed: {uid}", file=out)
    if result.status is None:
        return 3
    if result.status == 0xFE00:
        return 130
    return 0 if result.status == 0x0000 else 1


def move_command(args: argparse.Namespace) -> int:
    return _run("move", lambda: _move(args))


def _move(args: argparse.Namespace) -> int:
    config, client, dest = _setup(args, "move")
    level, uids, study, series = _target(args, "move")
    destination = args.dest or client.local_ae_title(config)
    progress = _Progress(f"move from {dest.name}", args.quiet, args.verbose)
    started = time.monotonic()
    try:
        result = client.move(dest, level, uids, destination, config=config, on_progress=progress,
                             model="patient" if args.patient_root else "study", study_uid=study, series_uid=series)
    finally:
        progress.close()
    code = _summary("move", result, level, uids, dest, time.monotonic() - started, sys.stdout)
    if result.status in (0x0000, 0xB000) and destination in config.all_ae_titles():
        # QRU-4 for operators: did the objects really arrive? (the C-STOREs commit before their responses)
        held, why = _index_count(config, level, uids)
        if held is None:
            print(f"  our index not checked: {why}")
        else:
            arrived = result.completed + result.warning
            print(f"  in our index: {plural(held, 'instance')} of the {_noun(level) if len(uids) == 1 else 'selection'}"
                  f" ({arrived} reported moved)")
            if held < arrived:
                print(f"dicom-gateway move: the archive reported {arrived} moved but our index holds {held}; "
                      f"is {destination} this gateway at the address the archive has for it?", file=sys.stderr)
                code = code or 1
    return code


def get_command(args: argparse.Namespace) -> int:
    return _run("get", lambda: _get(args))


def _get(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    config, client, dest = _setup(args, "get")
    level, uids, study, series = _target(args, "get")
    if args.out:
        out_dir, temporary = Path(args.out), False
    else:
        spool = Path(config.node.data_dir) / "retrieve-tmp"
        spool.mkdir(parents=True, exist_ok=True)
        out_dir, temporary = Path(tempfile.mkdtemp(prefix="get-", dir=spool)), True
    progress = _Progress(f"get from {dest.name}", args.quiet, args.verbose)
    started = time.monotonic()
    try:
        try:
            result = client.get(dest, level, uids, out_dir, config=config, on_progress=progress,
                                model="patient" if args.patient_root else "study", study_uid=study,
                                series_uid=series)
        finally:
            progress.close()
        code = _summary("get", result, level, uids, dest, time.monotonic() - started, sys.stdout)
        if args.out:
            print(f"  {plural(len(result.stored), 'file')} written to {out_dir}")
            return code
        if result.stored:
            from gateway.command_setup import command_runtime
            from gateway.importer import import_paths

            summary = import_paths([str(out_dir)], command_runtime(config))
            print(f"  imported into the archive: {len(summary.imported)}, skipped {len(summary.skipped)}, "
                  f"failed {len(summary.failed)}")
            for path, why in summary.failed + summary.skipped:
                print(f"  not imported: {path.name}: {why}", file=sys.stderr)
            if summary.failed:
                code = code or 1
        return code
    finally:
        if temporary:
            shutil.rmtree(out_dir, ignore_errors=True)
