"""`dicom-gateway send DEST PATH... | --study UID | --series UID` (SND-1..SND-7 for operators).

DEST is a configured remote's name (remotes/<name>.toml, with its timers and
SND-7 options) or ``AET@host:port``. Objects come from files and folders
(recursive) or from the gateway's own archive through the index. Each object
is reported In Progress / Done / Failed and each association CONNECTING /
ACTIVE / COMPLETED / FAILED (SND-3) with ``-v``; by default only failures get
a line (as DCMTK's storescu prints nothing per object), a progress bar runs on
stderr, and a summary counts objects, not attempts.

Exit status: 0 all sent, 1 any object failed, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from gateway.terminal import plural

EPILOG = """examples:
  dicom-gateway send pacs /media/export/CT                 # a configured remote, a folder (recursive)
  dicom-gateway send PACS@10.0.0.5:104 IM0001.dcm IM0002.dcm
  dicom-gateway send pacs --study 1.2.840.113619.2.55.3.1234 --config /etc/dicom-gateway
  dicom-gateway send pacs --series 1.2.840.113619.2.55.3.1234.1 -v   # a line per object and association state

exit status: 0 all objects sent, 1 some failed, 2 usage or configuration error
"""


class UsageError(Exception):
    """Bad arguments or an unusable source; exit status 2."""


def add_send_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser("send", help="send DICOM files, or studies/series from the archive, to a Storage SCP (SND)",
                       description="C-STORE objects to DEST, many per association, converting the transfer "
                                   "syntax when the peer needs another one (SND-1..SND-7).",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("destination", metavar="DEST", help="a configured remote's name, or AET@host:port")
    p.add_argument("paths", nargs="*", metavar="PATH", help="DICOM files or folders (searched recursively)")
    p.add_argument("--study", action="append", default=[], metavar="UID",
                   help="send every stored instance of this study (repeatable)")
    p.add_argument("--series", action="append", default=[], metavar="UID",
                   help="send every stored instance of this series (repeatable)")
    p.add_argument("--config", metavar="DIR", help="config directory (default: embedded defaults)")
    p.add_argument("--data-dir", help="data directory (default from config)")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="a line per object (In Progress / Done / Failed) and per association state")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no failure lines; only the summary")
    p.set_defaults(func=send_command)
    return p


# ---- where the objects come from ------------------------------------------------------

def _is_part10(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _outgoing_from_file(path: Path) -> Any:
    """An Outgoing from a Part 10 file's File Meta; ValueError says why it cannot be sent."""
    from gateway.net.storescu import Outgoing, read_file_meta

    if not _is_part10(path):
        raise ValueError("not a DICOM Part 10 file (no 'DICM' at offset 128)")
    try:
        meta, _offset = read_file_meta(path)
    except Exception as exc:  # pydicom raises several types on a damaged File Meta
        raise ValueError(f"unreadable File Meta: {exc}") from exc
    missing = [k for k in ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID") if not meta.get(k)]
    if missing:
        raise ValueError(f"File Meta lacks {', '.join(missing)}")
    return Outgoing(path, meta["MediaStorageSOPClassUID"], meta["MediaStorageSOPInstanceUID"],
                    meta["TransferSyntaxUID"], key=str(path))


def collect_paths(paths: list[str]) -> tuple[list[Any], list[tuple[Path, str]], int]:
    """(items to send, (path, why) for named files that cannot be sent, non-DICOM files skipped in folders)."""
    items: list[Any] = []
    bad: list[tuple[Path, str]] = []
    skipped = 0
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                if not _is_part10(f):
                    skipped += 1  # DICOMDIRs are Part 10 too, but have no SOP Instance to store
                    continue
                try:
                    items.append(_outgoing_from_file(f))
                except ValueError as exc:
                    bad.append((f, str(exc)))
        elif path.is_file():
            try:
                items.append(_outgoing_from_file(path))
            except ValueError as exc:
                bad.append((path, str(exc)))
        else:
            raise UsageError(f"{raw}: no such file or folder")
    # A DICOMDIR (Media Storage Directory) is not sent: it indexes files, it is not an instance.
    items = [i for i in items if i.sop_class_uid != "1.2.840.10008.1.3.10"]
    return items, bad, skipped


def collect_from_index(config: Any, studies: list[str], series: list[str]) -> list[Any]:
    """Outgoing items for the stored instances of these studies/series, in series and instance order."""
    from gateway.index.selection import SelectionError, stored_files
    from gateway.net.storescu import Outgoing

    try:
        files = stored_files(config, studies=studies, series=series)
    except SelectionError as exc:
        raise UsageError(str(exc)) from exc
    return [Outgoing(f.path, f.sop_class_uid, f.sop_instance_uid, f.transfer_syntax_uid, key=f.sop_instance_uid,
                     demographics=f.demographics)  # QRS-7: what leaves carries corrected demographics
            for f in files]


# ---- reporting ------------------------------------------------------------------------

class _Reporter:
    """SND-3 for people: object and association states (``-v``), failures, the
    progress bar on stderr, and a summary of objects (not attempts)."""

    def __init__(self, dest: Any, total: int, verbose: bool, quiet: bool, out: TextIO) -> None:
        from gateway.progress import Progress

        self.dest = dest
        self.verbose, self.quiet = verbose, quiet
        self.out = out
        self.bar = Progress(total, f"send to {dest.name}", stream=io.StringIO() if quiet else None)
        self.total = total
        self.sent = self.warned = self.failed = 0
        self.bytes = 0
        self.started = time.monotonic()

    def _label(self, item: Any) -> str:
        return str(item.key if item.key is not None else item.sop_instance_uid)

    def _line(self, text: str) -> None:
        if self.bar._tty:
            sys.stderr.write("\r\033[K")  # clear the bar before a line, it redraws on the next step
        self.out.write(text + "\n")
        self.out.flush()

    def state(self, s: str) -> None:
        if self.verbose:
            self._line(f"association {s} {self.dest.ae_title}@{self.dest.host}:{self.dest.port}")

    def start(self, item: Any) -> None:
        if self.verbose:
            self._line(f"In Progress  {self._label(item)}")

    def unsendable(self, path: Path, why: str) -> None:
        self.failed += 1
        if not self.quiet:
            self._line(f"Failed       {path}  {why}")
        self.bar.step(str(path), failed=True)

    def result(self, r: Any) -> None:
        from pydicom.uid import UID

        from gateway.status import category

        syntax = UID(r.syntax).name if r.syntax else ""
        if r.ok:
            self.sent += 1
            try:
                self.bytes += r.item.path.stat().st_size
            except OSError:
                pass
            cat = category(r.status) if r.status is not None else "Success"
            self.warned += cat == "Warning"
            if self.verbose:
                status = f"{cat} 0x{r.status:04X}" if r.status is not None else "Success"
                extra = f", {len(r.sent)} objects after conversion" if len(r.sent) > 1 else ""
                warned = f"  {r.error}" if r.error else ""
                self._line(f"Done         {self._label(r.item)}  ({status}, {syntax}{extra}){warned}")
        else:
            self.failed += 1
            if not self.quiet:
                status = f"0x{r.status:04X} " if r.status is not None else ""
                self._line(f"Failed       {self._label(r.item)}  {status}{r.error}")
        self.bar.step(self._label(r.item), failed=not r.ok)

    def summary(self) -> None:
        """One row per destination: objects counted once each, whatever the attempts."""
        from gateway.terminal import print_table

        self.bar.close(summary=False)
        seconds = time.monotonic() - self.started
        mb = self.bytes / 1e6
        print_table([("destination", "objects", "sent", "with warning", "failed", "MB", "seconds", "MB/s"),
                     (self.dest.name, self.total, self.sent, self.warned, self.failed, f"{mb:.1f}",
                      f"{seconds:.1f}", f"{mb / seconds:.1f}" if seconds > 0 else "-")], self.out)


def send_command(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config
    from gateway.plugins import load_host

    overrides = {"data_dir": args.data_dir} if args.data_dir else None
    try:
        config = load_config(Path(args.config) if args.config else None, overrides)
    except ConfigError as exc:
        print(f"dicom-gateway send: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    sources = bool(args.paths) + bool(args.study or args.series)
    if sources != 1:
        print("dicom-gateway send: give either PATH... or --study/--series UID (one kind of source)", file=sys.stderr)
        return 2
    host = load_host(config.disabled_plugins, config.plugins.modules)
    try:
        scu = host.services.scu("storage-scu").client  # found as any plugin finds it
        dest = scu.destination(args.destination, config)
    except LookupError as exc:
        print(f"dicom-gateway send: {exc}", file=sys.stderr)
        return 2
    bad: list[tuple[Path, str]] = []
    skipped = 0
    try:
        if args.paths:
            items, bad, skipped = collect_paths(args.paths)
        else:
            items = collect_from_index(config, args.study, args.series)
    except UsageError as exc:
        print(f"dicom-gateway send: {exc}", file=sys.stderr)
        return 2
    if skipped:
        print(f"skipped {plural(skipped, 'file')} that {'is' if skipped == 1 else 'are'} not DICOM Part 10",
              file=sys.stderr)
    if not items and not bad:
        print("dicom-gateway send: nothing to send (no DICOM Part 10 files found)", file=sys.stderr)
        return 2
    rep = _Reporter(dest, len(items) + len(bad), args.verbose, args.quiet, sys.stdout)
    for path, why in bad:
        rep.unsendable(path, why)
    if items:
        scu.send(dest, items, config, on_result=rep.result, on_state=rep.state, on_start=rep.start, host=host)
    rep.summary()
    return 1 if rep.failed else 0


__all__ = ["add_send_parser", "send_command", "collect_paths", "collect_from_index", "UsageError"]
