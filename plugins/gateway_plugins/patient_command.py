"""``dicom-gateway patient update PATIENT_ID ...``: correct a patient's demographics in
the index (QRS-7). The archived files are not touched; C-FIND answers the corrected
values and every object of the patient that leaves (C-MOVE, C-GET, forwarding,
``send``) carries them. An audit line goes to stderr (logger ``gateway.audit``)."""

from __future__ import annotations

import argparse
import getpass
import logging
import socket
import sys
from typing import Any

__all__ = ["add_patient_parser", "update_command"]

EXAMPLES = """\
dicom-gateway patient update ANC0000001 --name 'ANCHOR^PETCT^CORRECTED' --config /etc/dicom-gateway
dicom-gateway patient update GWT0000002 --birth-date 19610412 --sex M
dicom-gateway patient update GWT0000002 --issuer HOSP_A --other-ids OLD123 OLD456
dicom-gateway patient update GWT0000002 --other-ids           # no values: clears Other Patient IDs"""


def add_patient_parser(commands: Any) -> None:
    p = commands.add_parser("patient", help="patient demographics in the index (QRS-7): update", examples=EXAMPLES)
    sub = p.add_subparsers(dest="patient_command", required=True, metavar="SUBCOMMAND")
    u = sub.add_parser("update", help="correct a patient's demographics; objects leave with them from now on",
                       description="Correct a patient's demographics in the index (QRS-7). The archived files "
                                   "are not touched; C-FIND answers the corrected values and every object of "
                                   "the patient that leaves (C-MOVE, C-GET, forwarding, send) carries them. "
                                   "An audit line goes to the log (stderr, logger gateway.audit).")
    u.add_argument("patient_id", metavar="PATIENT_ID", help="Patient ID (0010,0020) as indexed")
    u.add_argument("--name", metavar="N", help="Patient's Name (0010,0010), e.g. 'DOE^JANE'")
    u.add_argument("--issuer", metavar="I", help="Issuer of Patient ID (0010,0021)")
    u.add_argument("--birth-date", metavar="D", help="Patient's Birth Date (0010,0030), YYYYMMDD")
    u.add_argument("--birth-time", metavar="T", help="Patient's Birth Time (0010,0032), HHMMSS")
    u.add_argument("--sex", metavar="S", help="Patient's Sex (0010,0040): M, F or O")
    u.add_argument("--other-ids", metavar="ID", nargs="*", help="Other Patient IDs (0010,1000); none: clear")
    u.add_argument("--by", metavar="WHO", help="who made the correction, for the audit line (default user@host)")
    commands.config_options(u)
    u.set_defaults(func=update_command)


def update_command(args: argparse.Namespace) -> int:
    from gateway import logs
    from gateway.command_setup import load_command_config, open_command_index
    from gateway.index import IndexUnavailable
    from gateway.index.demographics import update_patient

    config = load_command_config(args)
    logs.setup("WARNING", config.node.log_format)
    logging.getLogger("gateway.audit").setLevel(logging.INFO)  # the audit line goes to the log (stderr)
    index = open_command_index(config, "patient update", read_only=True)
    actor = args.by or f"{getpass.getuser()}@{socket.gethostname()}"
    try:
        change = update_patient(index, args.patient_id, name=args.name, issuer=args.issuer,
                                birth_date=args.birth_date, birth_time=args.birth_time, sex=args.sex,
                                other_ids=args.other_ids, actor=f"patient update ({actor})")
    except ValueError as exc:
        print(f"dicom-gateway patient update: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:
        print(f"dicom-gateway patient update: {exc.args[0]}", file=sys.stderr)
        return 1
    except IndexUnavailable as exc:
        print(f"dicom-gateway patient update: index unavailable: {exc}", file=sys.stderr)
        return 2
    finally:
        index.close()
    if not change.changed:
        print(f"patient {args.patient_id}: nothing changed (the values were already these); corrected values kept")
        return 0
    print(f"patient {args.patient_id} corrected:")
    for keyword, (old, new) in change.changed.items():
        print(f"  {keyword}: {old or '-'} -> {new or '(empty)'}")
    return 0
