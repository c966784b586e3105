"""``dicom-gateway suv``: list, recompute and apply the stored SUV factors."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXAMPLES = """\
dicom-gateway suv --series 1.2.3                 # factor of every image of a series
dicom-gateway suv --study 1.2.3 --json
dicom-gateway suv --series 1.2.3 --value 5300    # SUV of a voxel of 5300 Bq/ml
dicom-gateway suv --rescan                       # recompute every PET image from the stored files
dicom-gateway suv --study 1.2.3 --rescan         # ... or only these"""


def add_suv_parser(commands: Any) -> None:
    p = commands.add_parser("suv", help="PET body-weight SUV factors of stored images (suv plugin)",
                            examples=EXAMPLES)
    p.add_argument("--series", action="append", default=[], metavar="UID", help="one series (repeatable)")
    p.add_argument("--study", action="append", default=[], metavar="UID", help="one study (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--rescan", action="store_true",
                   help="recompute from the stored files, of --series/--study or of every PET series in the "
                        "index (after a crash, or for data stored before the plugin was installed)")
    p.add_argument("--value", type=float, metavar="BQML", help="print SUV = value x factor per image")
    commands.config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imports here, not at the top: `dicom-gateway --help` imports this module.
    from gateway.command_setup import load_command_config, open_command_index
    from gateway.config import PluginSettingsError

    from gateway_suv.report import chosen
    from gateway_suv.settings import settings_of
    from gateway_suv.store import read_rows

    config = load_command_config(args)
    try:
        settings = settings_of(config)
    except PluginSettingsError as exc:
        print("dicom-gateway suv: invalid configuration:\n" + "\n".join(exc.problems), file=sys.stderr)
        return 2
    index = open_command_index(config, "suv", read_only=True)  # nothing stored yet: says so, creates nothing
    try:
        if args.rescan:
            code = _rescan(config, index, args, settings.modalities)
            if code:
                return code
        rows = read_rows(index.engine, series=args.series, studies=args.study)
    finally:
        index.close()
    if not rows:
        print("no SUV factors stored for this selection (`dicom-gateway suv --rescan` computes them "
              "for data stored before the plugin was installed)", file=sys.stderr)
        return 1
    table: list[tuple[Any, ...]] = [("instance", "factor g/ml", "source")
                                    + (("SUV",) if args.value is not None else ()) + ("why not",)]
    for row in rows:
        factor, source = chosen(row, settings.prefer)
        suv = None if factor is None or args.value is None else args.value * factor
        if args.json:
            item = {"sop_instance_uid": row.sop_instance_uid, "series_instance_uid": row.series_instance_uid,
                    "philips": row.philips, "computed": row.computed, "factor": factor, "source": source}
            if row.why:
                item["why_not_computed"] = row.why
            if args.value is not None:
                item["suv"] = suv
            print(json.dumps(item))
        else:
            table.append((row.sop_instance_uid, "-" if factor is None else f"{factor:.6g}", source or "-")
                         + ((("-" if suv is None else f"{suv:.4g}"),) if args.value is not None else ())
                         + (row.why or "",))
    if not args.json:
        from gateway.terminal import print_table

        print_table(table)
    return 0


def _rescan(config: Any, index: Any, args: argparse.Namespace, modalities: list[str]) -> int:
    import pydicom

    from gateway.index.selection import SelectionError, stored_files

    from gateway_suv.store import Row, write_rows
    from gateway_suv.suv import factors

    series = list(args.series)
    if not (args.series or args.study):  # everything: the series of our modalities the index holds
        series = sorted({se.series_instance_uid for m in modalities for patient in index.tree(modality=m)
                         for study in patient.studies for se in study.series if se.modality in modalities})
        if not series:
            print(f"no {'/'.join(modalities)} series in the index {index.location}", file=sys.stderr)
            return 0
    try:
        files = stored_files(config, series=series, studies=args.study)
    except SelectionError as exc:
        print(f"dicom-gateway suv: {exc}", file=sys.stderr)
        return 1
    rows, written, skipped = [], 0, 0
    for n, f in enumerate(files, 1):
        ds = pydicom.dcmread(f.path, stop_before_pixels=True)
        if str(ds.get("Modality", "")) not in modalities:
            skipped += 1
        else:
            rows.append(Row(f.sop_instance_uid, f.series_instance_uid, f.study_instance_uid, factors(ds)))
        if len(rows) == 500 or n == len(files):  # short transactions: the gateway may be storing meanwhile
            written += write_rows(index.engine, rows)
            rows = []
    print(f"rescanned {written} image(s); {skipped} object(s) of other modalities skipped", file=sys.stderr)
    return 0
