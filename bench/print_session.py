#!/usr/bin/env python3
"""Full print session (issue 14): the 4x5 film of 20 512x512 CT slices that bench/render.py renders
(STANDARD\\4,5 on 14INX17IN at 300 dpi, CUBIC, 0.05 in BLACK border, empty-image density WHITE)
printed to DCMTK ``dcmprscp``, against a plain pynetdicom Print SCU sending the same pixels.

ours:      what ``dicom-gateway print`` does for these files: ``print_render.load_pictures``
           (pydicom read of the 20 files + ``gateway._rust.render_frame``), ``plan_films``
           (``compose_sheet``), then ``print_scu.PrintSession`` + ``run_session``: association,
           N-GET Printer, N-CREATE Film Session, N-CREATE Film Box, N-SET of each image box,
           N-ACTION Print, N-DELETE Film Box, N-DELETE Film Session, release.
reference: a pynetdicom Print SCU written here (``reference_print``) sending the same
           pre-rendered pixels (the image boxes of one ``plan_films`` call, made once before
           timing) in the same session sequence on its own association, with the same film
           session / film box attributes. It renders nothing: it is the network floor.

Both talk to one ``dcmprscp`` (started as tests/test_print.py starts it, with its own config in a
temporary directory, TCP_NODELAY=1, MaxPDU 16384 both ways, Implicit VR Little Endian), which stores
every image box it gets as a Hardcopy Grayscale object in its database (the same work for both).
``--compose boxes`` (default): the film box is STANDARD\\4,5 and 20 N-SETs carry the 20 fitted
1031 x 1002 boxes; ``sheet``: one STANDARD\\1,1 N-SET with the whole 4200 x 5100 sheet (seed 000's
way, the printer default); ``both`` runs the two.

Timing: wall time per full print, median of ``--runs``, the two alternating after one warm-up
each. Then a per-stage profile of ours (each stage timed alone, median of ``--runs``): read +
render (``load_pictures``), compose (``plan_films``), encode (the N-SET datasets built by
``image_box_dataset`` and encoded as pynetdicom does, ``pynetdicom.dsutils.encode``) and the session
(association + DIMSE, which includes that encoding), and the reference's session for comparison.

    python bench/print_session.py [--runs 7] [--compose boxes|sheet|both]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render import COLS, FILM, FORMAT, INTERCEPT, ORIENTATION, ROWS, SLOPE, ct_slices  # noqa: E402

from gateway_plugins.print_config import PrinterSettings  # noqa: E402
from gateway_plugins.print_render import load_pictures, plan_films  # noqa: E402
from gateway_plugins.print_scu import (  # noqa: E402
    FILM_BOX, FILM_SESSION, GRAYSCALE_META, IMPLICIT_LE, PRINTER, PRINTER_INSTANCE, PrintSession,
    image_box_dataset, run_session)

DPI, GOAL_RATIO, MAX_PDU = 300, 2.0, 16384

DCMPRSCP_CFG = """\
[[GENERAL]]
[DATABASE]
Directory = {db}
[PRINT]
Spooler = dcmprscu
Server = dcmprscp
Directory = {spool}
DetailedLog = false
BinaryLog = false
[[COMMUNICATION]]
[PRINTSCP]
Aetitle = PRINTSCP
Description = dicom-gateway benchmark printer
Hostname = localhost
Port = {port}
Type = LOCALPRINTER
BorderDensity = 150\\20\\BLACK\\WHITE
DisableNewVRs = false
DisplayFormat = 1,1\\1,2\\2,2\\2,3\\3,3\\3,4\\4,5
EmptyImageDensity = 20\\BLACK\\WHITE
FilmDestination = MAGAZINE\\PROCESSOR
FilmSizeID = 8INX10IN\\10INX12IN\\11INX14IN\\14INX17IN
ImplicitOnly = true
MagnificationType = REPLICATE\\BILINEAR\\CUBIC\\NONE
MaxDensity = 320
MaxPDU = {max_pdu}
MediumType = PAPER\\CLEAR FILM\\BLUE FILM
MinDensity = 20
OmitSOPClassUIDFromCreateResponse = false
PresentationLUTMatchRequired = false
PresentationLUTinFilmSession = false
SmoothingType = NONE
Supports12Bit = true
SupportsDecimateCrop = false
SupportsImageSize = true
SupportsPresentationLUT = false
SupportsTrim = true
"""


# ---- peers and input --------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dcmprscp(root: Path) -> tuple[subprocess.Popen, int]:
    exe = shutil.which("dcmprscp", path="/usr/bin") or sys.exit("DCMTK dcmprscp not found in /usr/bin")
    port = free_port()
    for d in ("db", "spool"):
        (root / d).mkdir()
    cfg = root / "dcmpstat.cfg"
    cfg.write_text(DCMPRSCP_CFG.format(db=root / "db", spool=root / "spool", port=port, max_pdu=MAX_PDU))
    log = (root / "scp.log").open("w")
    proc = subprocess.Popen([exe, "-c", str(cfg), "-p", "PRINTSCP"], stdout=log, stderr=subprocess.STDOUT,
                            cwd=root, env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"dcmprscp did not listen on {port}; see {root / 'scp.log'}")


def write_ct_files(folder: Path) -> list[Path]:
    """bench/render.py's 20 slices as CT Image Storage files (Explicit VR LE), window 40/400."""
    folder.mkdir()
    study, series = generate_uid(), generate_uid()
    paths = []
    for n, raw in enumerate(ct_slices(), start=1):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, series, n
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "BENCH^PRINT", "BENCH"
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = ROWS, COLS, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = SLOPE, INTERCEPT, 40, 400
        ds.PixelData = raw
        paths.append(folder / f"ct{n:02d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def settings(port: int, compose: str) -> PrinterSettings:
    return PrinterSettings(ae_title="PRINTSCP", host="127.0.0.1", port=port, calling_ae_title="BENCH_GW",
                           resolution=DPI, compose=compose, display_format=FORMAT, film_size=FILM,
                           orientation=ORIENTATION, magnification="CUBIC", border_density="BLACK",
                           empty_image_density="WHITE", border=0.05, window="object", max_pdu=MAX_PDU,
                           association_timeout=30, dimse_timeout=300)


CONFIG = SimpleNamespace(node=SimpleNamespace(ae_title="BENCH_GW"))


# ---- ours -------------------------------------------------------------------------------------

def our_print(paths: list[Path], s: PrinterSettings, stages: dict[str, float] | None = None) -> int:
    t0 = time.perf_counter()
    pictures = load_pictures(paths, s, sort=False)
    t1 = time.perf_counter()
    films = plan_films(pictures, s, display_format=FORMAT, film_size=FILM, orientation=ORIENTATION)
    t2 = time.perf_counter()
    with PrintSession("bench", s, CONFIG) as session:
        result = run_session(session, films, copies=None, film_size=FILM, orientation=ORIENTATION)
    t3 = time.perf_counter()
    if stages is not None:
        stages.update(render=(t1 - t0) * 1e3, compose=(t2 - t1) * 1e3, session=(t3 - t2) * 1e3)
    return result.films


# ---- reference: a plain pynetdicom Print SCU ---------------------------------------------------

def reference_print(port: int, boxes: list[SimpleNamespace], display_format: str) -> None:
    """N-GET Printer, N-CREATE Film Session, N-CREATE Film Box, N-SET each image box (8-bit
    MONOCHROME2, pixels given), N-ACTION Print, N-DELETE Film Box, N-DELETE Film Session."""
    from pynetdicom import AE, evt

    created: list[str] = []

    def on_recv(event):  # the N-CREATE responses' Affected SOP Instance UID (pynetdicom does not return it)
        cs = event.message.command_set
        if int(cs.CommandField) == 0x8140:
            created.append(str(cs.AffectedSOPInstanceUID))

    ae = AE(ae_title="BENCH_REF")
    ae.maximum_pdu_size = MAX_PDU
    ae.dimse_timeout = 300
    ae.add_requested_context(GRAYSCALE_META, [IMPLICIT_LE])
    assoc = ae.associate("127.0.0.1", port, ae_title="PRINTSCP", max_pdu=MAX_PDU,
                         evt_handlers=[(evt.EVT_DIMSE_RECV, on_recv)])
    assert assoc.is_established, "reference: association refused"
    try:
        def ok(status, step):
            assert status and int(status.Status) in (0, *range(0xB000, 0xC000)), f"reference {step}: {status}"

        status, _ = assoc.send_n_get([], PRINTER, PRINTER_INSTANCE, meta_uid=GRAYSCALE_META)
        ok(status, "N-GET")
        session = Dataset()
        session.NumberOfCopies, session.PrintPriority, session.MediumType, session.FilmDestination = \
            1, "MED", "BLUE FILM", "MAGAZINE"
        status, _ = assoc.send_n_create(session, FILM_SESSION, None, meta_uid=GRAYSCALE_META)
        ok(status, "N-CREATE Film Session")
        session_uid = created[-1]
        film = Dataset()
        film.ImageDisplayFormat, film.FilmOrientation, film.FilmSizeID = display_format, ORIENTATION, FILM
        film.MagnificationType, film.BorderDensity, film.EmptyImageDensity = "CUBIC", "BLACK", "WHITE"
        film.Trim = "NO"
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = FILM_SESSION, session_uid
        film.ReferencedFilmSessionSequence = [ref]
        status, attrs = assoc.send_n_create(film, FILM_BOX, None, meta_uid=GRAYSCALE_META)
        ok(status, "N-CREATE Film Box")
        box_uid, refs = created[-1], attrs.ReferencedImageBoxSequence
        for box in boxes:
            img = Dataset()
            img.SamplesPerPixel, img.PhotometricInterpretation = 1, "MONOCHROME2"
            img.Rows, img.Columns, img.PixelAspectRatio = box.height, box.width, [1, 1]
            img.BitsAllocated, img.BitsStored, img.HighBit, img.PixelRepresentation = 8, 8, 7, 0
            img.PixelData = box.pixels
            img["PixelData"].VR = "OB"
            ds = Dataset()
            ds.ImageBoxPosition, ds.Polarity = box.position, "NORMAL"
            ds.BasicGrayscaleImageSequence = [img]
            r = refs[box.position - 1]
            status, _ = assoc.send_n_set(ds, str(r.ReferencedSOPClassUID), str(r.ReferencedSOPInstanceUID),
                                         meta_uid=GRAYSCALE_META)
            ok(status, f"N-SET {box.position}")
        status, _ = assoc.send_n_action(None, 1, FILM_BOX, box_uid, meta_uid=GRAYSCALE_META)
        ok(status, "N-ACTION")
        ok(assoc.send_n_delete(FILM_BOX, box_uid, meta_uid=GRAYSCALE_META), "N-DELETE Film Box")
        ok(assoc.send_n_delete(FILM_SESSION, session_uid, meta_uid=GRAYSCALE_META), "N-DELETE Film Session")
    finally:
        assoc.release()


# ---- measuring ------------------------------------------------------------------------------------

def median_ms(fn, runs: int) -> float:
    fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return statistics.median(out)


def encode_ms(s: PrinterSettings, boxes, runs: int) -> float:
    """The N-SET datasets as ours builds them, encoded as pynetdicom encodes a DIMSE dataset."""
    from pynetdicom.dsutils import encode

    return median_ms(lambda: [encode(image_box_dataset(s, b), True, True) for b in boxes], runs)


def run(compose: str, paths: list[Path], port: int, db: Path, runs: int) -> dict:
    s = settings(port, compose)
    films = plan_films(load_pictures(paths, s, sort=False), s, display_format=FORMAT, film_size=FILM,
                       orientation=ORIENTATION)
    (film,) = films
    boxes = [SimpleNamespace(position=b.position, width=b.width, height=b.height, pixels=b.pixels)
             for b in film.boxes]
    # Same pixels reach dcmprscp from both: compare the Hardcopy Grayscale objects of one print each.
    stored = []
    for fn in (lambda: our_print(paths, s), lambda: reference_print(port, boxes, film.display_format)):
        before = set(db.glob("HG_*.dcm"))
        fn()
        new = sorted(set(db.glob("HG_*.dcm")) - before)
        stored.append(sorted(bytes(pydicom.dcmread(p).PixelData) for p in new))
    assert len(stored[0]) == len(film.boxes) and stored[0] == stored[1], "dcmprscp got different pixels"

    ours, ref = [], []
    for _ in range(runs):
        for fn, acc in ((lambda: our_print(paths, s), ours),
                        (lambda: reference_print(port, boxes, film.display_format), ref)):
            t = time.perf_counter()
            fn()
            acc.append((time.perf_counter() - t) * 1e3)
            for p in db.glob("*.dcm"):  # keep dcmprscp's database from growing between runs
                p.unlink()
    stage_runs: dict[str, list[float]] = {"render": [], "compose": [], "session": []}
    for _ in range(runs):
        st: dict[str, float] = {}
        our_print(paths, s, st)
        for k, v in st.items():
            stage_runs[k].append(v)
        for p in db.glob("*.dcm"):
            p.unlink()
    stages = {k: statistics.median(v) for k, v in stage_runs.items()}
    stages["encode"] = encode_ms(s, film.boxes, runs)
    stages["reference session"] = median_ms(lambda: reference_print(port, boxes, film.display_format), runs)
    for p in db.glob("*.dcm"):
        p.unlink()
    return dict(compose=compose, boxes=len(film.boxes), box=(film.boxes[0].width, film.boxes[0].height),
                mb=sum(len(b.pixels) for b in film.boxes) / 1e6, ours=statistics.median(ours),
                ref=statistics.median(ref), stages=stages, ours_all=ours, ref_all=ref)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7, help="timed full prints per side (median)")
    ap.add_argument("--compose", choices=["boxes", "sheet", "both"], default="both")
    args = ap.parse_args()
    modes = ["boxes", "sheet"] if args.compose == "both" else [args.compose]

    with tempfile.TemporaryDirectory(prefix="bench-print-") as tmp:
        root = Path(tmp)
        (root / "scp").mkdir()
        proc, port = start_dcmprscp(root / "scp")
        try:
            paths = write_ct_files(root / "ct")
            results = [run(m, paths, port, root / "scp" / "db", args.runs) for m in modes]
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    print(f"Full print of {FORMAT} (20 x {COLS}x{ROWS} CT, int16) on {FILM} at {DPI} dpi to dcmprscp, "
          f"median of {args.runs}, alternating; max PDU {MAX_PDU}; load average {os.getloadavg()[0]:.2f}\n")
    print("| compose | N-SETs | pixels sent | ours ms | pynetdicom SCU ms | ours ÷ SCU | within 2x |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        ratio = r["ours"] / r["ref"]
        print(f"| {r['compose']} | {r['boxes']} x {r['box'][0]}x{r['box'][1]} | {r['mb']:.1f} MB | {r['ours']:.0f} | "
              f"{r['ref']:.0f} | {ratio:.2f}x | {'yes' if ratio <= GOAL_RATIO else '**no**'} |")
    print(f"\nours per stage, ms (median of {args.runs}, each measured on its own prints):\n")
    print("| compose | read + render (load_pictures) | compose (plan_films) | session: association + DIMSE "
          "| of which N-SET encode | reference session |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        st = r["stages"]
        print(f"| {r['compose']} | {st['render']:.0f} | {st['compose']:.0f} | {st['session']:.0f} | "
              f"{st['encode']:.0f} | {st['reference session']:.0f} |")
    print("\nraw ms per print:")
    for r in results:
        print(f"  {r['compose']}: ours {[round(x) for x in r['ours_all']]}, SCU {[round(x) for x in r['ref_all']]}")


if __name__ == "__main__":
    main()
