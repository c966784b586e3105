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
dicom-gateway suv --study 1.2.3 --rescan         # recompute from the stored files"""


def add_suv_parser(commands: Any) -> None:
    p = commands.add_parser("suv", help="PET body-weight SUV factors of stored images (suv plugin)",
                            examples=EXAMPLES)
    p.add_argument("--series", action="append", default=[], metavar="UID")
    p.add_argument("--study", action="append", default=[], metavar="UID")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--rescan", action="store_true",
                   help="recompute from the stored files of --series/--study (after a crash, "
                        "or for data stored before the plugin was installed)")
    p.add_argument("--value", type=float, metavar="BQML", help="print SUV = value x factor per image")
    commands.config_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gateway.command_setup import load_command_config, open_command_index
    from gateway.config import PluginSettingsError

    from gateway_suv.report import chosen
    from gateway_suv.settings import settings_of
    from gateway_suv.store import read_rows

    config = load_command_config(args)
    try:
        settings = settings_of(config)
    except PluginSettingsError as exc:
        print("dicom-gateway suv: " + "\n".join(exc.problems), file=sys.stderr)
        return 2
    index = open_command_index(config, "suv", read_only=True)
    try:
        if args.rescan:
            if not (args.series or args.study):
                print("dicom-gateway suv: --rescan needs --series or --study", file=sys.stderr)
                return 2
            code = _rescan(config, index.engine, args, settings.modalities)
            if code:
                return code
        rows = read_rows(index.engine, series=args.series, studies=args.study)
    finally:
        index.close()
    if not rows:
        print("no SUV factors stored for this selection", file=sys.stderr)
        return 1
    for row in rows:
        factor, source = chosen(row, settings.prefer)
        item = {"sop_instance_uid": row.sop_instance_uid, "series_instance_uid": row.series_instance_uid,
                "philips": row.philips, "computed": row.computed, "factor": factor, "source": source}
        if row.why:
            item["why_not_computed"] = row.why
        if args.value is not None:
            item["suv"] = None if factor is None else args.value * factor
        if args.json:
            print(json.dumps(item))
        else:
            shown = "-" if factor is None else f"{factor:.6g} g/ml ({source})"
            extra = "" if args.value is None or factor is None else f"  SUV {args.value * factor:.4g}"
            print(f"{row.sop_instance_uid}  {shown}{extra}" + (f"  [{row.why}]" if row.why and factor is None else ""))
    return 0


def _rescan(config: Any, engine: Any, args: argparse.Namespace, modalities: list[str]) -> int:
    import pydicom

    from gateway.index.selection import SelectionError, stored_files

    from gateway_suv.store import Row, write_rows
    from gateway_suv.suv import factors

    try:
        files = stored_files(config, series=args.series, studies=args.study)
    except SelectionError as exc:
        print(f"dicom-gateway suv: {exc}", file=sys.stderr)
        return 1
    rows, skipped = [], 0
    for f in files:
        ds = pydicom.dcmread(f.path, stop_before_pixels=True)
        if str(ds.get("Modality", "")) not in modalities:
            skipped += 1
            continue
        rows.append(Row(f.sop_instance_uid, f.series_instance_uid, f.study_instance_uid, factors(ds)))
    written = write_rows(engine, rows)
    print(f"rescanned {written} image(s); {skipped} object(s) of other modalities skipped", file=sys.stderr)
    return 0
