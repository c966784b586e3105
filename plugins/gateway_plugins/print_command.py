"""``dicom-gateway print`` and ``dicom-gateway printer status`` (PRN-2..PRN-6 for operators)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_print_parsers", "print_command", "status_command"]

PRINT_EXAMPLES = """\
dicom-gateway print FILM1 --series 1.2.840.113619.2.55.3.1234 --config /etc/dicom-gateway
dicom-gateway print FILM1 --study 1.2.3.4 --format 'STANDARD\\2,3' --film 14INX17IN --copies 2
dicom-gateway print FILM1 ct/*.dcm --preview /tmp/film.png     # the films as PNG, nothing sent"""

STATUS_EXAMPLES = "dicom-gateway printer status FILM1 --config /etc/dicom-gateway"


def add_print_parsers(commands: Any) -> None:
    p = commands.add_parser("print", help="print stored objects or files on a DICOM printer (printers/*.toml)",
                            examples=PRINT_EXAMPLES)
    p.add_argument("printer", metavar="PRINTER", help="a printers/<name>.toml name")
    p.add_argument("files", nargs="*", metavar="FILE", help="DICOM files to print (instead of --study/--series)")
    p.add_argument("--study", action="append", default=[], metavar="UID", help="a stored study (repeatable)")
    p.add_argument("--series", action="append", default=[], metavar="UID", help="a stored series (repeatable)")
    p.add_argument("--format", default=None, metavar="FORMAT",
                   help="image display format, e.g. 'STANDARD\\2,3', 'ROW\\2,3' (default: the printer's)")
    p.add_argument("--film", default=None, metavar="SIZE", help="film size ID, e.g. 14INX17IN (default: the printer's)")
    p.add_argument("--orientation", default=None, choices=("PORTRAIT", "LANDSCAPE"))
    p.add_argument("--copies", type=int, default=None, metavar="N")
    p.add_argument("--preview", default=None, metavar="OUT.png",
                   help="write the films the printer would get as PNG (OUT-1.png, OUT-2.png… for several); send nothing")
    commands.config_options(p)
    p.set_defaults(func=print_command)
    s = commands.add_parser("printer", help="DICOM printers: status", examples=STATUS_EXAMPLES)
    sub = s.add_subparsers(dest="printer_command", required=True, metavar="SUBCOMMAND")
    st = sub.add_parser("status", help="N-GET the printer's status (NORMAL, WARNING, FAILURE) and status info")
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
    from gateway.command_setup import load_command_config
    from gateway_plugins.print_config import FILM_SIZES
    from gateway_plugins.print_render import RenderError, load_pictures, plan_films, preview_paths, write_png
    from gateway_plugins.print_scu import PrintError, PrintSCU

    if bool(args.files) == bool(args.study or args.series):
        return _fail("print", "give FILES, or --study/--series (not both)", 2)
    if args.copies is not None and not 1 <= args.copies <= 99:
        return _fail("print", "--copies must be 1..99", 2)
    film = (args.film or "").upper() or None
    if film and film not in FILM_SIZES:
        return _fail("print", f"unknown film size {args.film!r}; known: {', '.join(FILM_SIZES)}", 2)
    config = load_command_config(args)
    name, settings = _printer(config, args.printer)
    if args.files:
        paths = [Path(f) for f in args.files]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            return _fail("print", f"no such file: {', '.join(missing)}", 2)
        sort = False
    else:
        from gateway.index.selection import SelectionError, stored_files

        try:
            paths = [i.path for i in stored_files(config, studies=args.study, series=args.series)]
        except SelectionError as exc:
            return _fail("print", str(exc))
        sort = True
    fmt = args.format or settings.display_format
    film_size = film or settings.film_size
    orientation = args.orientation or settings.orientation
    try:
        pictures = load_pictures(paths, settings, sort=sort)
        films = plan_films(pictures, settings, display_format=fmt, film_size=film_size, orientation=orientation)
    except RenderError as exc:
        return _fail("print", str(exc))
    print(f"{len(pictures)} images on {len(films)} film(s) of {fmt} ({film_size} {orientation}, "
          f"{films[0].sheet.width}×{films[0].sheet.height} px at {settings.resolution} dpi)")
    if args.preview:
        for f, out in zip(films, preview_paths(Path(args.preview), len(films))):
            write_png(out, f.sheet.width, f.sheet.height, f.sheet.channels, f.sheet.pixels)
            print(f"preview: {out}")
        return 0
    try:
        result = PrintSCU().print_films(config, name, films, copies=args.copies, film_size=film_size,
                                        orientation=orientation)
    except PrintError as exc:
        return _fail("print", f"print job failed: {exc}")
    for w in result.warnings:
        print(f"  warning: {w}", file=sys.stderr)
    print(f"printed {result.films} film(s), {len(pictures)} image(s) on {name}")
    return 0


def status_command(args: argparse.Namespace) -> int:
    from gateway.command_setup import load_command_config
    from gateway_plugins.print_scu import PrintError, PrintSCU

    config = load_command_config(args)
    name, _settings = _printer(config, args.printer)
    try:
        state = PrintSCU().status(config, name)
    except PrintError as exc:
        return _fail("printer status", str(exc))
    print(f"{name}: {state.status}" + (f" (status info: {state.info})" if state.info else ""))
    for k, v in state.attributes.items():
        if k not in ("PrinterStatus", "PrinterStatusInfo"):
            print(f"  {k}: {v}")
    return 1 if state.status == "FAILURE" else 0
