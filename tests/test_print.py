"""Print Management SCU (issue 14; PRN-1..PRN-6, PRN-8, CFG-4): films rendered by
the Rust renderer and printed to DCMTK's dcmprscp (a real Print SCP), whose
stored Hardcopy Grayscale images must equal our ``--preview`` bit for bit; a
tiny pynetdicom Print SCP for refusals and the colour path (no open-source colour
Print SCP is known)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest

from conftest import dcmtk, free_port, wait_port, write_config, stop_process
from gateway_plugins.print_render import read_png

CT = "1.2.840.10008.5.1.4.1.1.2"


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("dicom-gateway")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "gateway.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _printer_toml(port: int, ae: str = "PRINTSCP", **extra: object) -> str:
    keys: dict[str, object] = {"ae_title": ae, "host": "127.0.0.1", "port": port, "resolution": 25,
                               "film_size": "8INX10IN", "medium_type": "CLEAR FILM", "label": "gateway test",
                               "border_density": "WHITE", "empty_image_density": "BLACK",
                               "magnification": "BILINEAR", "trim": "YES", "association_timeout": 5,
                               "dimse_timeout": 10, **extra}
    toml = {bool: lambda v: str(v).lower(), int: str}
    return "".join(f"{k} = {toml.get(type(v), lambda v: repr(v).replace(chr(39), chr(34)))(v)}\n"
                   for k, v in keys.items())


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
Description = dicom-gateway test printer
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
MaxPDU = 16384
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


@pytest.fixture(scope="module")
def dcmprscp(tmp_path_factory):
    """DCMTK's Print SCP on a free loopback port, with its own config; +d dumps every DIMSE message to its log."""
    exe = dcmtk("dcmprscp")
    root = tmp_path_factory.mktemp("dcmprscp")
    port = free_port()
    (root / "db").mkdir()
    (root / "spool").mkdir()
    cfg = root / "dcmpstat.cfg"
    cfg.write_text(DCMPRSCP_CFG.format(db=root / "db", spool=root / "spool", port=port))
    log = (root / "scp.log").open("w")
    proc = subprocess.Popen([exe, "-c", str(cfg), "-p", "PRINTSCP", "+d"], stdout=log, stderr=subprocess.STDOUT,
                            cwd=root, env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"})
    try:
        wait_port(port)
        yield SimpleNamespace(port=port, db=root / "db", log=root / "scp.log")
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="module")
def archive(dcmprscp, tmp_path_factory):
    """A gateway archive holding the corpus CT series, and printers/*.toml for dcmprscp."""
    from gateway.testing.corpus import generate

    tmp = tmp_path_factory.mktemp("print_archive")
    generate(tmp / "corpus", profile="small", syntax="explicit-le")
    cfg = write_config(tmp / "cfg", f'[node]\ndata_dir = "{tmp / "data"}"\n', **{
        "printers/film.toml": _printer_toml(dcmprscp.port, copies=2, display_format="STANDARD\\2,2"),
        "printers/boxes.toml": _printer_toml(dcmprscp.port, compose="boxes", magnification="REPLICATE",
                                             border_density="150"),
    })
    run = _cli("import", str(tmp / "corpus" / "CT"), "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    cts = sorted((tmp / "corpus" / "CT").glob("*.dcm"))
    series = str(pydicom.dcmread(cts[0], stop_before_pixels=True).SeriesInstanceUID)
    return SimpleNamespace(cfg=cfg, tmp=tmp, series=series, cts=cts, corpus=tmp / "corpus")


def _new_files(db: Path, before: set[Path], prefix: str) -> list[Path]:
    return sorted(p for p in db.glob(f"{prefix}_*.dcm") if p not in before)


def _dump(path: Path) -> str:
    return subprocess.run([dcmtk("dcmdump"), str(path)], capture_output=True, text=True, check=True).stdout


def test_print_ct_series_to_dcmprscp_matches_preview(archive, dcmprscp, tmp_path):
    """PRN-2..PRN-6: a full session with dcmprscp; its stored film box and image box attributes are
    ours, and the Hardcopy Grayscale image it stored is our --preview, bit for bit."""
    preview = tmp_path / "film.png"
    run = _cli("print", "film", "--series", archive.series, "--preview", str(preview), "--config", str(archive.cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 images on 1 film(s) of STANDARD\\2,2 (8INX10IN PORTRAIT, 200×250 px at 25 dpi)" in run.stdout
    w, h, ch, sheet = read_png(preview)
    assert (w, h, ch) == (200, 250, 1) and len(set(sheet)) > 50  # a real windowed CT, not a blank
    before = set(dcmprscp.db.iterdir())
    run = _cli("print", "film", "--series", archive.series, "--config", str(archive.cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "printed 1 film(s), 4 image(s) on film" in run.stdout
    hg, sp = _new_files(dcmprscp.db, before, "HG"), _new_files(dcmprscp.db, before, "SP")
    assert len(hg) == 1 and len(sp) == 1
    img = pydicom.dcmread(hg[0])
    assert (img.Rows, img.Columns, img.BitsStored, img.PhotometricInterpretation) == (250, 200, 8, "MONOCHROME2")
    assert bytes(img.PixelData)[:w * h] == sheet
    dump = _dump(sp[0])
    for expected in (r"\(2010,0010\) ST \[STANDARD\\1,1\]", r"\(2010,0050\) CS \[8INX10IN\]",
                     r"\(2010,0040\) CS \[PORTRAIT\]", r"\(2010,0060\) CS \[BILINEAR\]",
                     r"\(2010,0100\) CS \[WHITE\]", r"\(2010,0110\) CS \[BLACK\]", r"\(2010,0140\) CS \[YES\]",
                     r"\(2020,0010\) US 1 ", r"\(2100,0070\) AE \[DICOM_GATEWAY\]"):
        assert re.search(expected, dump), expected
    # The Film Session (PRN-3) is not part of the Stored Print object: read it from dcmprscp's DIMSE dump.
    log = dcmprscp.log.read_text(errors="replace")
    for expected in (r"\(2000,0010\) IS \[2\]", r"\(2000,0020\) CS \[MED\]", r"\(2000,0030\) CS \[CLEAR FILM\]",
                     r"\(2000,0040\) CS \[MAGAZINE\]", r"\(2000,0050\) LO \[gateway test\]"):
        assert re.search(expected, log), expected
    for op in ("N-GET RQ", "N-CREATE RQ", "N-SET RQ", "N-ACTION RQ", "N-DELETE RQ"):
        assert f"Message Type                  : {op}" in log


def test_boxes_mode_sends_one_image_per_box(archive, dcmprscp, tmp_path):
    """compose = "boxes": the film box has the requested format, each image box gets its image
    fitted to the box — exactly the box's region of the preview sheet. Files, --format and --copies."""
    from gateway._rust import layout_boxes

    files = [str(p) for p in archive.cts[:3]]
    preview = tmp_path / "boxes.png"
    args = ["print", "boxes", *files, "--format", "STANDARD\\2,2", "--copies", "3", "--config", str(archive.cfg)]
    run = _cli(*args, "--preview", str(preview))
    assert run.returncode == 0, run.stdout + run.stderr
    w, h, _, sheet = read_png(preview)
    before = set(dcmprscp.db.iterdir())
    run = _cli(*args)
    assert run.returncode == 0, run.stdout + run.stderr
    sp = _new_files(dcmprscp.db, before, "SP")
    assert len(sp) == 1
    stored = pydicom.dcmread(sp[0])
    assert stored.FilmBoxContentSequence[0].ImageDisplayFormat == "STANDARD\\2,2"
    assert stored.FilmBoxContentSequence[0].BorderDensity == "150"
    boxes = {int(b.ImageBoxPosition): str(b.ReferencedImageSequence[0].ReferencedSOPInstanceUID)
             for b in stored.ImageBoxContentSequence}
    assert sorted(boxes) == [1, 2, 3]  # the fourth box stays empty
    hg = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in _new_files(dcmprscp.db, before, "HG")}
    rects = layout_boxes("STANDARD\\2,2", w, h, round(0.05 * 25))
    for pos, uid in boxes.items():
        x, y, bw, bh = rects[pos - 1]
        img = pydicom.dcmread(hg[uid])
        assert (img.Columns, img.Rows) == (bw, bh)
        crop = b"".join(sheet[(y + r) * w + x:(y + r) * w + x + bw] for r in range(bh))
        assert bytes(img.PixelData)[:bw * bh] == crop, f"box {pos}"
    assert re.search(r"\(2000,0010\) IS \[3\]", dcmprscp.log.read_text(errors="replace"))


def test_printer_status(archive):
    run = _cli("printer", "status", "film", "--config", str(archive.cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("film: NORMAL")


# ---- a minimal pynetdicom Print SCP ---------------------------------------------------------

class FakePrinter:
    """Print SCP for what dcmprscp cannot show: refusals, FAILURE status, the colour path."""

    def __init__(self, *, status: str = "NORMAL", fail_film_box: int | None = None, color: bool = False) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import BasicColorPrintManagementMeta, BasicGrayscalePrintManagementMeta

        self.status, self.fail_film_box = status, fail_film_box
        self.requests: list[tuple[str, str, object]] = []
        self.port = free_port()
        ae = AE(ae_title="FAKEPRN")
        ae.add_supported_context(BasicGrayscalePrintManagementMeta, "1.2.840.10008.1.2")
        if color:
            ae.add_supported_context(BasicColorPrintManagementMeta, "1.2.840.10008.1.2")
        handlers = [(evt.EVT_N_GET, self.n_get), (evt.EVT_N_CREATE, self.n_create), (evt.EVT_N_SET, self.n_set),
                    (evt.EVT_N_ACTION, self.n_action), (evt.EVT_N_DELETE, self.n_delete)]
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)
        self.lock = threading.Lock()

    def _log(self, op: str, event: object, ds: object = None) -> None:
        with self.lock:
            self.requests.append((op, str(event.request.AffectedSOPClassUID or event.request.RequestedSOPClassUID), ds))

    def n_get(self, event):
        from pydicom.dataset import Dataset

        self._log("N-GET", event)
        ds = Dataset()
        ds.PrinterStatus, ds.PrinterStatusInfo, ds.PrinterName = self.status, "FILM JAM" if self.status != "NORMAL" else "NORMAL", "fake"
        return 0x0000, ds

    def n_create(self, event):
        from pydicom.dataset import Dataset
        from pydicom.uid import generate_uid

        ds = event.attribute_list
        self._log("N-CREATE", event, ds)
        cls = str(event.request.AffectedSOPClassUID)
        if cls == "1.2.840.10008.5.1.1.2" and self.fail_film_box is not None:
            return self.fail_film_box, None
        out = Dataset()
        out.AffectedSOPInstanceUID = generate_uid()
        if cls == "1.2.840.10008.5.1.1.2":
            c, r = map(int, str(ds.ImageDisplayFormat).split("\\")[1].split(","))
            refs = []
            for _ in range(c * r):
                ref = Dataset()
                ref.ReferencedSOPClassUID = ("1.2.840.10008.5.1.1.4.1" if str(event.context.abstract_syntax)
                                             == "1.2.840.10008.5.1.1.18" else "1.2.840.10008.5.1.1.4")
                ref.ReferencedSOPInstanceUID = generate_uid()
                refs.append(ref)
            out.ReferencedImageBoxSequence = refs
        return 0x0000, out

    def n_set(self, event):
        self._log("N-SET", event, event.modification_list)
        return 0x0000, None

    def n_action(self, event):
        self._log("N-ACTION", event)
        return 0x0000, None

    def n_delete(self, event):
        self._log("N-DELETE", event)
        return 0x0000

    def ops(self) -> list[str]:
        return [op for op, _cls, _ds in self.requests]

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def fake_printer():
    made: list[FakePrinter] = []

    def start(**kw) -> FakePrinter:
        made.append(FakePrinter(**kw))
        return made[-1]

    yield start
    for p in made:
        p.stop()


def _fake_config(tmp_path: Path, archive, printer: FakePrinter, **extra: object) -> Path:
    return write_config(tmp_path / "cfg", f'[node]\ndata_dir = "{archive.tmp / "data"}"\n',
                        **{"printers/fake.toml": _printer_toml(printer.port, ae="FAKEPRN", **extra)})


def test_film_box_refused_fails_the_job_clearly(archive, fake_printer, tmp_path):
    """PRN-8: a failure status on N-CREATE Film Box aborts the association and fails the job;
    0106 names the optional attributes sent and points at send_attributes."""
    printer = fake_printer(fail_film_box=0x0106)
    cfg = _fake_config(tmp_path, archive, printer)
    run = _cli("print", "fake", str(archive.cts[0]), "--config", str(cfg))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "print job failed" in run.stderr and "N-CREATE Film Box 1 failed with 0x0106 (invalid attribute value)" in run.stderr
    assert "send_attributes" in run.stderr and "FilmSizeID" in run.stderr
    assert printer.ops() == ["N-GET", "N-CREATE", "N-CREATE"]  # nothing after the refusal


def test_printer_failure_status_refuses_to_print(archive, fake_printer, tmp_path):
    """PRN-2: Printer Status FAILURE → nothing is created; status info shown; printer status exits 1."""
    printer = fake_printer(status="FAILURE")
    cfg = _fake_config(tmp_path, archive, printer)
    run = _cli("print", "fake", str(archive.cts[0]), "--config", str(cfg))
    assert run.returncode == 1 and "reports FAILURE: FILM JAM; not printing" in run.stderr, run.stderr
    assert printer.ops() == ["N-GET"]
    run = _cli("printer", "status", "fake", "--config", str(cfg))
    assert run.returncode == 1 and "fake: FAILURE (status info: FILM JAM)" in run.stdout, run.stdout + run.stderr


def test_send_attributes_limits_optional_attributes(archive, fake_printer, tmp_path):
    """send_attributes: only the listed optional attributes go to the printer."""
    printer = fake_printer()
    cfg = _fake_config(tmp_path, archive, printer, send_attributes=["film_size", "copies"])
    run = _cli("print", "fake", str(archive.cts[0]), "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    session, box = [ds for op, _c, ds in printer.requests if op == "N-CREATE"]
    assert "NumberOfCopies" in session and "MediumType" not in session and "FilmSessionLabel" not in session
    assert box.FilmSizeID == "8INX10IN" and "MagnificationType" not in box and "Trim" not in box
    assert printer.ops() == ["N-GET", "N-CREATE", "N-CREATE", "N-SET", "N-ACTION", "N-DELETE", "N-DELETE"]


def test_color_path_against_pynetdicom_scp(archive, fake_printer, tmp_path):
    """PRN-1/PRN-5 colour, against the pynetdicom SCP only (no open-source colour Print SCP is known):
    Basic Color meta, an RGB colour-by-plane image box equal to the RGB preview."""
    printer = fake_printer(color=True)
    cfg = _fake_config(tmp_path, archive, printer, color=True)
    rgb = sorted((archive.corpus / "MFRGB").glob("*.dcm"))[0]
    preview = tmp_path / "rgb.png"
    run = _cli("print", "fake", str(rgb), "--preview", str(preview), "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    films = len(list(tmp_path.glob("rgb*.png")))
    run = _cli("print", "fake", str(rgb), "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    sets = [ds for op, _c, ds in printer.requests if op == "N-SET"]
    assert len(sets) == films >= 1  # one frame per box: a multi-frame object fills films
    first = preview if films == 1 else tmp_path / "rgb-1.png"
    w, h, ch, px = read_png(first)
    item = sets[0].BasicColorImageSequence[0]
    assert (ch, item.PhotometricInterpretation, item.PlanarConfiguration, item.Columns, item.Rows) == (3, "RGB", 1, w, h)
    planar = px[0::3] + px[1::3] + px[2::3]
    assert bytes(item.PixelData)[:len(planar)] == planar
    classes = {c for op, c, _ in printer.requests if op == "N-SET"}
    assert classes == {"1.2.840.10008.5.1.1.4.1"}


def test_unknown_printer(archive):
    run = _cli("print", "nope", str(archive.cts[0]), "--config", str(archive.cfg))
    assert run.returncode == 2
    assert "unknown printer 'nope': add printers/nope.toml (known: boxes, film)" in run.stderr


def test_bad_printer_file_gives_file_line_key(tmp_path):
    """CFG-4: printers/*.toml validated by the plugin (gateway_config_loaded) with file:line: key messages."""
    cfg = write_config(tmp_path / "cfg", f'[node]\ndata_dir = "{tmp_path / "data"}"\n', **{
        "printers/bad.toml": textwrap.dedent("""\
            ae_title = "X"
            host = "h"
            port = 99999
            magnification = "FANCY"
            colour = true
            display_format = "STANDARD\\\\2"
            """)})
    run = _cli("config", "check", str(cfg))
    assert run.returncode != 0
    out = run.stdout + run.stderr
    assert "printers/bad.toml:3: key 'port': Input should be less than or equal to 65535" in out
    assert "printers/bad.toml:4: key 'magnification':" in out
    assert "printers/bad.toml:5: key 'colour': unknown key; did you mean 'color'?" in out
    assert "printers/bad.toml:6: key 'display_format':" in out
    run = _cli("print", "bad", "x.dcm", "--config", str(cfg))
    assert run.returncode == 2 and "printers/bad.toml:3: key 'port'" in run.stderr


def test_png_roundtrip_and_renderer_units(tmp_path):
    """The zlib-only PNG writer reads back; the binding refuses bad input with ImagingError."""
    from gateway._rust import ImagingError, compose_sheet, render_frame
    from gateway_plugins.print_render import write_png

    write_png(tmp_path / "g.png", 3, 2, 1, bytes(range(6)))
    assert read_png(tmp_path / "g.png") == (3, 2, 1, bytes(range(6)))
    write_png(tmp_path / "c.png", 1, 1, 3, b"\x01\x02\x03")
    assert read_png(tmp_path / "c.png") == (1, 1, 3, b"\x01\x02\x03")
    assert render_frame(b"\x00\x00\xff\x00", 1, 2, samples="u16", window_center=128, window_width=256) == b"\x00\xff"
    with pytest.raises(ImagingError):
        render_frame(b"\x00", 2, 2, samples="u8")
    with pytest.raises(ImagingError):
        compose_sheet([None], width=10, height=10, channels=1, format="SLIDE")
