"""Storage SCU (SND-1..SND-7) and `dicom-gateway send` against real peers.

Peers: DCMTK storescp (one accepting only Explicit VR Big Endian, one only
Implicit VR Little Endian, one that does not take MR Image Storage), Orthanc,
and a pynetdicom SCP inside the test where a behaviour cannot be had from
DCMTK (a chosen failure/refusal/warning status, a peer that never answers).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from conftest import dcmtk, free_port, missing_component, wait_port, write_config
from gateway.net.scu import AssociationFailed
from gateway.net.storescu import (ACTIVE, COMPLETED, CONNECTING, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE,
                                  Destination, Outgoing, StoreAssociation, resolve_destination, send_items)

CT = "1.2.840.10008.5.1.4.1.1.2"
PT = "1.2.840.10008.5.1.4.1.1.128"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
MFGRAY = "1.2.840.10008.5.1.4.1.1.7.2"
MFRGB = "1.2.840.10008.5.1.4.1.1.7.4"
ALL_CLASSES = [CT, PT, MR, SC, MFGRAY, MFRGB]

# storescp association profiles (DCMTK asconfig format, storescp -xf FILE PROFILE).
SCP_CFG = """\
[[TransferSyntaxes]]
[BE]
TransferSyntax1 = BigEndianExplicit
[IMPL]
TransferSyntax1 = LittleEndianImplicit
[UNC]
TransferSyntax1 = LittleEndianExplicit
TransferSyntax2 = BigEndianExplicit
TransferSyntax3 = LittleEndianImplicit

[[PresentationContexts]]
[BEPC]
{be}
[IMPLPC]
{impl}
[NOMRPC]
{nomr}

[[Profiles]]
[OnlyBE]
PresentationContexts = BEPC
[OnlyImplicit]
PresentationContexts = IMPLPC
[NoMR]
PresentationContexts = NOMRPC
"""


def _pcs(classes: list[str], syntaxes: str) -> str:
    lines = ["PresentationContext1 = 1.2.840.10008.1.1\\UNC"]
    lines += [f"PresentationContext{n} = {uid}\\{syntaxes}" for n, uid in enumerate(classes, start=2)]
    return "\n".join(lines)


class StoreSCP:
    """DCMTK storescp on a free loopback port, writing what it receives to ``out``."""

    def __init__(self, tmp: Path, profile: str | None = None, aet: str = "STORESCP") -> None:
        self.out = tmp / f"received-{profile or 'any'}-{free_port()}"
        self.out.mkdir(parents=True)
        self.port = free_port()
        self.aet = aet
        args = [dcmtk("storescp"), "-aet", aet, "-od", str(self.out), "-dhl"]
        if profile:
            cfg = tmp / "storescp.cfg"
            cfg.write_text(SCP_CFG.format(
                be=_pcs(ALL_CLASSES, "BE"), impl=_pcs(ALL_CLASSES, "IMPL"),
                nomr=_pcs([c for c in ALL_CLASSES if c != MR], "UNC")))
            args += ["-xf", str(cfg), profile]
        args.append(str(self.port))
        self.log = open(tmp / f"storescp-{self.port}.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, TCP_NODELAY="1"))
        wait_port(self.port)

    def dest(self, **kw) -> Destination:
        return Destination(name=f"storescp-{self.port}", ae_title=self.aet, host="127.0.0.1", port=self.port,
                           calling_ae_title="DICOM_GATEWAY", **kw)

    def received(self) -> list[Path]:
        return sorted(p for p in self.out.iterdir() if p.is_file())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def storescp(tmp_path):
    started: list[StoreSCP] = []

    def start(profile: str | None = None) -> StoreSCP:
        scp = StoreSCP(tmp_path, profile)
        started.append(scp)
        return scp

    yield start
    for scp in started:
        scp.stop()


def _item(path: Path, **kw) -> Outgoing:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return Outgoing(path, str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID),
                    key=path.name, **kw)


def _items(corpus: Path, syntax: str, *types: str) -> list[Outgoing]:
    return [_item(p) for t in types for p in sorted((corpus / syntax / t).glob("*.dcm"))]


def _dump_syntax(path: Path) -> str:
    out = subprocess.run([dcmtk("dcmdump"), "-M", "+P", "0002,0010", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return out.split("=", 1)[1].split()[0]


def _by_uid(paths: list[Path]) -> dict[str, pydicom.Dataset]:
    found = {}
    for p in paths:
        ds = pydicom.dcmread(p)
        found[str(ds.SOPInstanceUID)] = ds
    return found


def _assert_pixels_equal(received: pydicom.Dataset, source: Path) -> None:
    src = pydicom.dcmread(source)
    assert received.PixelData != b"" and (received.pixel_array == src.pixel_array).all()


# ---- SND-2: syntax choice and conversion against DCMTK -------------------------------------

def test_big_endian_only_peer_gets_converted_objects(storescp, corpus_small):
    """SND-1/SND-2: Implicit-LE objects go to a peer that accepts only Explicit VR Big Endian,
    converted by the Rust transcoder; dcmdump sees Big Endian and the pixels are unchanged."""
    scp = storescp("OnlyBE")
    items = _items(corpus_small, "implicit", "CT", "PT")
    states: list[str] = []
    results = send_items(scp.dest(), items, None, on_state=states.append)
    assert [r.state for r in results] == ["done"] * len(items), [r.error for r in results]
    assert {r.syntax for r in results} == {EXPLICIT_BE}
    assert states == [CONNECTING, ACTIVE, COMPLETED]  # SND-3: one association for all
    received = scp.received()
    assert len(received) == len(items)
    assert {_dump_syntax(p) for p in received} == {"BigEndianExplicit"}
    got = _by_uid(received)
    for item in items:
        _assert_pixels_equal(got[item.sop_instance_uid], item.path)


def test_implicit_only_peer_gets_converted_objects(storescp, corpus_small):
    """SND-2: Explicit-BE objects to a peer that accepts only Implicit VR LE."""
    scp = storescp("OnlyImplicit")
    items = _items(corpus_small, "explicit-be", "MR", "SC")
    results = send_items(scp.dest(), items, None)
    assert all(r.ok for r in results), [r.error for r in results]
    assert {r.syntax for r in results} == {IMPLICIT_LE}
    received = scp.received()
    assert {_dump_syntax(p) for p in received} == {"LittleEndianImplicit"}
    got = _by_uid(received)
    for item in items:
        _assert_pixels_equal(got[item.sop_instance_uid], item.path)


def test_syntax_preference_order_and_route_preference(storescp, corpus_small):
    """SND-2: with all three accepted, Explicit LE wins over the stored Implicit LE; a route's
    preferred syntax (Explicit BE) goes first when the peer accepted it."""
    scp = storescp(None)  # storescp's default: every uncompressed syntax
    [plain] = _items(corpus_small, "implicit", "NM")
    preferred = _item(sorted((corpus_small / "implicit" / "RTSTRUCT").glob("*.dcm"))[0], preferred_syntax=EXPLICIT_BE)
    results = send_items(scp.dest(), [plain, preferred], None)
    assert [r.syntax for r in results] == [EXPLICIT_LE, EXPLICIT_BE]
    syntaxes = {str(ds.SOPInstanceUID): ds.file_meta.TransferSyntaxUID for ds in map(pydicom.dcmread, scp.received())}
    assert syntaxes == {plain.sop_instance_uid: EXPLICIT_LE, preferred.sop_instance_uid: EXPLICIT_BE}


def test_sop_class_not_accepted_is_failed_and_skipped(storescp, corpus_small):
    """SND-4: MR objects, whose SOP class the peer rejected, are Failed (not retryable) and
    skipped; everything else goes on the same association."""
    scp = storescp("NoMR")
    items = _items(corpus_small, "explicit-le", "CT", "MR", "PT")
    states: list[str] = []
    results = send_items(scp.dest(), items, None, on_state=states.append)
    by_class = {}
    for r in results:
        by_class.setdefault(r.item.sop_class_uid, set()).add((r.state, r.retryable))
    assert by_class[MR] == {("failed", False)}
    assert by_class[CT] == by_class[PT] == {("done", True)}
    assert "did not accept SOP class MR Image Storage" in next(r.error for r in results if r.item.sop_class_uid == MR)
    assert states.count(ACTIVE) == 1
    assert len(scp.received()) == 8


def test_multiframe_and_colour_sc_conversions_on_the_wire(storescp, corpus_small):
    """SND-7: a destination with multi-frame SC -> single-frame and colour SC as both receives
    one SC Image per frame (and a grayscale copy of each colour frame)."""
    scp = storescp(None)
    mfgray = _items(corpus_small, "explicit-le", "MFGRAY")[:1]
    mfrgb = _items(corpus_small, "explicit-le", "MFRGB")[:1]
    frames_gray = int(pydicom.dcmread(mfgray[0].path, stop_before_pixels=True).NumberOfFrames)
    frames_rgb = int(pydicom.dcmread(mfrgb[0].path, stop_before_pixels=True).NumberOfFrames)
    results = send_items(scp.dest(multiframe_sc_to_single=True, color_sc="both"), mfgray + mfrgb, None)
    assert all(r.ok for r in results), [r.error for r in results]
    assert [len(r.sent) for r in results] == [frames_gray, 2 * frames_rgb]
    received = [pydicom.dcmread(p) for p in scp.received()]
    assert len(received) == frames_gray + 2 * frames_rgb
    assert {str(ds.SOPClassUID) for ds in received} == {SC}
    assert sorted(ds.PhotometricInterpretation for ds in received).count("MONOCHROME2") == frames_gray + frames_rgb


# ---- SND-5 / SND-6 with a pynetdicom SCP in the test ---------------------------------------

class ScriptedSCP:
    """A Storage SCP answering a scripted status per SOP Instance UID (default Success),
    recording which association each object arrived on."""

    def __init__(self, statuses: dict[str, int] | None = None, delays: dict[str, float] | None = None,
                 default_delay: float = 0.0, extra_syntaxes: tuple[str, ...] = ()) -> None:
        self.statuses = statuses or {}
        self.delays = delays or {}
        self.default_delay = default_delay
        self.received: list[tuple[str, int]] = []  # (sop instance uid, association id)
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self.ae = AE(ae_title="SCRIPTED")
        for uid in ALL_CLASSES + ["1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.481.3"]:
            self.ae.add_supported_context(uid, [EXPLICIT_LE, EXPLICIT_BE, IMPLICIT_LE, *extra_syntaxes])
        self.ae.add_supported_context(Verification)
        self.port = free_port()
        # How each association ended, in order: ("released" | "aborted" | "closed", association id).
        self.ended: list[tuple[str, int]] = []
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, lambda e: self._ended("released", e)),
            (evt.EVT_ABORTED, lambda e: self._ended("aborted", e)),
            (evt.EVT_CONN_CLOSE, lambda e: self._ended("closed", e))])

    def _on_store(self, event):
        uid = str(event.request.AffectedSOPInstanceUID)
        self._stopping.wait(self.delays.get(uid, self.default_delay))  # cut short by stop()
        with self.lock:
            self.received.append((uid, id(event.assoc)))
        return self.statuses.get(uid, 0x0000)

    def _ended(self, how: str, event) -> None:
        with self.lock:
            self.ended.append((how, id(event.assoc)))

    def wait_ended(self, n: int, timeout: float = 10.0) -> list[tuple[str, int]]:
        """The first ``n`` association endings, waiting for them."""
        deadline = time.monotonic() + timeout
        while len(self.ended) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.ended[:n]

    def dest(self, **kw) -> Destination:
        return Destination(name="scripted", ae_title="SCRIPTED", host="127.0.0.1", port=self.port,
                           calling_ae_title="DICOM_GATEWAY", **kw)

    def stop(self) -> None:
        self._stopping.set()
        self.server.shutdown()


@pytest.fixture
def scripted():
    started: list[ScriptedSCP] = []

    def start(**kw) -> ScriptedSCP:
        scp = ScriptedSCP(**kw)
        started.append(scp)
        return scp

    yield start
    for scp in started:
        scp.stop()


def test_failure_status_continues_on_a_new_association(scripted, corpus_small):
    """SND-5: a failure (C000) marks that object Failed and the rest go on a NEW association;
    a warning (B000) counts as sent."""
    items = _items(corpus_small, "explicit-le", "CT")
    scp = scripted(statuses={items[1].sop_instance_uid: 0xC000, items[2].sop_instance_uid: 0xB000})
    states: list[str] = []
    results = send_items(scp.dest(), items, None, on_state=states.append)
    assert [r.state for r in results] == ["done", "failed", "done", "done"]
    assert results[1].status == 0xC000 and results[1].retryable and not results[1].refused
    assert results[2].status == 0xB000 and results[2].ok and "warning 0xB000" in results[2].error
    assert [uid for uid, _ in scp.received] == [i.sop_instance_uid for i in items]
    assocs = [a for _, a in scp.received]
    assert assocs[0] == assocs[1] != assocs[2] == assocs[3]
    assert states == [CONNECTING, ACTIVE, COMPLETED, CONNECTING, ACTIVE, COMPLETED]


def test_refused_ends_the_association(scripted, corpus_small):
    """SND-5: Refused (A700) ends the association; the objects not yet sent fail (retryable),
    nothing more reaches the peer."""
    items = _items(corpus_small, "explicit-le", "PT")
    scp = scripted(statuses={items[1].sop_instance_uid: 0xA700})
    # When send_items reports the association FAILED, the peer must already have seen it
    # end with an A-RELEASE: not left open for a caller's clean-up (the sender's) or the
    # garbage collector to close when send_items returns.
    seen_at_failed: list[list[tuple[str, int]]] = []
    states: list[str] = []

    def on_state(s: str) -> None:
        states.append(s)
        if s == "FAILED":
            seen_at_failed.append(scp.wait_ended(1, timeout=5.0))

    results = send_items(scp.dest(), items, None, on_state=on_state)
    assert [r.state for r in results] == ["done", "failed", "failed", "failed"]
    assert results[1].refused and results[1].status == 0xA700
    assert all(r.retryable and "refused an earlier object" in r.error for r in results[2:])
    assert [uid for uid, _ in scp.received] == [i.sop_instance_uid for i in items[:2]]
    assert states == ["CONNECTING", "ACTIVE", "FAILED"]
    assert seen_at_failed == [[("released", scp.received[0][1])]]


def test_dimse_timeout_aborts_and_fails_the_object(scripted, corpus_small):
    """SND-6: no C-STORE-RSP within the DIMSE timeout aborts the association and fails that
    object (retryable); the rest go on a new association."""
    items = _items(corpus_small, "explicit-le", "MR")[:3]
    scp = scripted(delays={items[0].sop_instance_uid: 30.0})  # answers only when the test ends
    started = time.monotonic()
    results = send_items(scp.dest(dimse_timeout=0.7), items, None)
    assert time.monotonic() - started < 20  # generous: waiting for the answer would take 30 s
    assert [r.state for r in results] == ["failed", "done", "done"]
    assert results[0].retryable and "DIMSE timeout" in results[0].error


def test_session_timeout_aborts_the_operation_in_progress(scripted, corpus_small):
    """SND-6: the session timer bounds the whole association; expiry during a C-STORE fails it."""
    items = _items(corpus_small, "explicit-le", "CT")[:3]
    scp = scripted(default_delay=0.6)
    results = send_items(scp.dest(session_timeout=1.0, dimse_timeout=10), items, None)
    assert [r.state for r in results] == ["done", "failed", "done"]
    assert "session timeout" in results[1].error and results[1].retryable


def test_association_timeout_on_a_silent_peer():
    """SND-6: a peer that accepts TCP but never answers A-ASSOCIATE-RQ fails within the association timer."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        dest = Destination("silent", "SILENT", "127.0.0.1", port, "DICOM_GATEWAY", association_timeout=0.8)
        started = time.monotonic()
        with pytest.raises(AssociationFailed) as err:
            StoreAssociation.open(dest, [], None)
        assert time.monotonic() - started < 3
    assert err.value.kind in ("unreachable", "aborted")


def test_unreachable_destination_fails_every_item_retryable(corpus_small):
    """Nothing listening: every item fails, retryable, with the reason; send_items never raises."""
    items = _items(corpus_small, "explicit-le", "NM")
    dest = Destination("down", "DOWN", "127.0.0.1", free_port(), "DICOM_GATEWAY", association_timeout=2)
    results = send_items(dest, items, None)
    assert [(r.state, r.retryable) for r in results] == [("failed", True)]
    assert "no association" in results[0].error or "cannot open" in results[0].error


def test_missing_and_damaged_files_fail_without_hurting_the_rest(scripted, corpus_small, tmp_path):
    """A missing or truncated stored file fails (not retryable); the association goes on."""
    good = _items(corpus_small, "explicit-le", "NM")[0]
    truncated = tmp_path / "trunc.dcm"
    truncated.write_bytes(good.path.read_bytes()[:200])
    items = [Outgoing(tmp_path / "gone.dcm", CT, "1.2.3.4", EXPLICIT_LE),
             Outgoing(truncated, good.sop_class_uid, "1.2.3.5", EXPLICIT_LE), good]
    scp = scripted()
    results = send_items(scp.dest(), items, None)
    assert [r.state for r in results][::2] == ["failed", "done"]
    assert results[0].retryable is False
    assert len({a for _, a in scp.received}) == 1


def test_compressed_object_goes_as_stored_or_fails_specifically(scripted, corpus_small, tmp_path):
    """SND-1: the object's own (compressed) syntax is proposed too and, when accepted, it goes as
    stored; a peer without it gets nothing and the item fails, not retryable, saying why."""
    from pydicom.uid import RLELossless

    ds = pydicom.dcmread(_items(corpus_small, "explicit-le", "CT")[0].path)
    ds.compress(RLELossless)
    path = tmp_path / "ct-rle.dcm"
    ds.save_as(path, enforce_file_format=True)
    item = _item(path)
    with_rle = scripted(extra_syntaxes=(RLELossless,))
    [ok] = send_items(with_rle.dest(), [item], None)
    assert (ok.state, ok.syntax) == ("done", RLELossless)
    without = scripted()
    [failed] = send_items(without.dest(), [item], None)
    assert failed.state == "failed" and not failed.retryable
    assert "did not accept SOP class CT Image Storage (1.2.840.10008.5.1.4.1.1.2) with RLE Lossless" in failed.error
    assert without.received == []


# ---- destinations ------------------------------------------------------------------------

def test_resolve_destination(tmp_path):
    """SND-7: a remote's settings (case-insensitive name) or AET@host:port; a helpful error otherwise."""
    from gateway.config import load_config

    cfg = load_config(write_config(tmp_path / "cfg", "[node]\nae_title = \"GW\"\n", **{
        "remotes/pacs.toml": """
            ae_title = "PACS"
            host = "10.0.0.5"
            port = 104
            dimse_timeout = 12
            session_timeout = 600
            multiframe_sc_to_single = true
            color_sc = "both"
            transfer_syntaxes = ["1.2.840.10008.1.2"]
        """}))
    d = resolve_destination("PACS", cfg)
    assert (d.name, d.ae_title, d.port, d.calling_ae_title, d.dimse_timeout, d.session_timeout) == \
        ("pacs", "PACS", 104, "GW", 12, 600)
    assert d.multiframe_sc_to_single and d.color_sc == "both" and d.transfer_syntaxes == (IMPLICIT_LE,)
    spec = resolve_destination("STORE_SCP@127.0.0.1:4242", cfg)
    assert (spec.ae_title, spec.host, spec.port, spec.calling_ae_title) == ("STORE_SCP", "127.0.0.1", 4242, "GW")
    with pytest.raises(LookupError, match="did you mean 'pacs'"):
        resolve_destination("pac", cfg)
    with pytest.raises(LookupError, match="port 70000"):
        resolve_destination("X@h:70000", cfg)


def test_remote_transfer_syntax_list_restricts_proposals(scripted, corpus_small):
    """SND-7: a remote's transfer_syntaxes list is all we propose (Implicit LE only here)."""
    scp = scripted()
    items = _items(corpus_small, "explicit-le", "NM")
    results = send_items(scp.dest(transfer_syntaxes=(IMPLICIT_LE,)), items, None)
    assert [(r.state, r.syntax) for r in results] == [("done", IMPLICIT_LE)]


# ---- Orthanc as a destination ----------------------------------------------------------------

def test_orthanc_destination(tmp_path, corpus_small):
    """SND-3 against Orthanc: a whole CT + PT set on one association, all stored."""
    orthanc = Path("/usr/sbin/Orthanc")
    if not orthanc.exists():
        missing_component("Orthanc not installed (scripts/test.sh installs it)")
    dicom_port, http_port = free_port(), free_port()
    storage = tmp_path / "orthanc"
    storage.mkdir()
    cfg = tmp_path / "orthanc.json"
    cfg.write_text(json.dumps({
        "Name": "send-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
        "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port, "HttpBindAddress": "127.0.0.1",
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "DicomCheckCalledAet": True,
        "DicomAlwaysAllowStore": True, "Plugins": [],
    }))
    log = open(tmp_path / "orthanc.log", "wb")
    proc = subprocess.Popen([str(orthanc), str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, TCP_NODELAY="1"))
    try:
        wait_port(dicom_port)
        items = _items(corpus_small, "explicit-be", "CT", "PT")
        dest = Destination("orthanc", "ORTHANC", "127.0.0.1", dicom_port, "DICOM_GATEWAY")
        results = send_items(dest, items, None)
        assert all(r.ok for r in results), [r.error for r in results]
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/statistics", timeout=5) as rsp:
            stats = json.load(rsp)
        assert stats["CountInstances"] == len(items)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# ---- the CLI ----------------------------------------------------------------------------------

def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("dicom-gateway")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "gateway.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_cli_send_folder_reports_each_object(storescp, corpus_small, tmp_path):
    """SND-3 for operators: `dicom-gateway send -v` a folder to a configured remote whose peer rejects MR:
    a line per object (In Progress / Done / Failed), the association states, exit 1 because of MR;
    without -v only the failures get a line; the summary counts objects, not attempts."""
    scp = storescp("NoMR")
    cfg = write_config(tmp_path / "cfg", f'[node]\nae_title = "GW_SEND"\ndata_dir = "{tmp_path / "data"}"\n',
                       **{"remotes/archive.toml": f'ae_title = "{scp.aet}"\nhost = "127.0.0.1"\nport = {scp.port}\n'})
    src = tmp_path / "src"
    shutil.copytree(corpus_small / "explicit-le" / "CT", src / "CT")
    shutil.copytree(corpus_small / "explicit-le" / "MR", src / "MR")
    (src / "README.txt").write_text("not DICOM")
    run = _cli("send", "archive", str(src), "--config", str(cfg), "-v")
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == f"association CONNECTING {scp.aet}@127.0.0.1:{scp.port}"
    assert sum(l.startswith("In Progress") for l in lines) == 4  # SND-4: MR never started
    assert sum(l.startswith("Done") for l in lines) == 4
    assert sum(l.startswith("Failed") and "MR Image Storage" in l for l in lines) == 4
    assert lines[-4].startswith("association COMPLETED")
    assert "skipped 1 file that is not DICOM Part 10" in run.stderr
    assert _summary(run.stdout) == {"destination": "archive", "objects": "8", "sent": "4", "with warning": "0",
                                    "failed": "4"}
    assert len(scp.received()) == 4

    quiet = _cli("send", "archive", str(src / "MR"), str(src / "CT"), "--config", str(cfg))
    assert quiet.returncode == 1, quiet.stdout + quiet.stderr
    per_object = [l for l in quiet.stdout.splitlines()[:-3]]
    assert len(per_object) == 4 and all(l.startswith("Failed") for l in per_object), quiet.stdout
    assert _summary(quiet.stdout)["sent"] == "4" and _summary(quiet.stdout)["failed"] == "4"


def _summary(stdout: str) -> dict[str, str]:
    """The summary table `send` ends with: header, dashes, one row (columns split on 2+ spaces)."""
    import re

    header, _dashes, row = stdout.splitlines()[-3:]
    return {k: v for k, v in zip(re.split(r"\s{2,}", header), re.split(r"\s{2,}", row))
            if k in ("destination", "objects", "sent", "with warning", "failed")}


def test_cli_send_study_from_the_index(storescp, corpus_small, tmp_path):
    """`dicom-gateway send DEST --study UID` reads the stored files through the index (exit 0)."""
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "cfg", f'[node]\ndata_dir = "{data}"\n')
    imported = _cli("import", str(corpus_small / "implicit" / "PT"), str(corpus_small / "implicit" / "CT"),
                    "--config", str(cfg))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    pt = pydicom.dcmread(sorted((corpus_small / "implicit" / "PT").glob("*.dcm"))[0], stop_before_pixels=True)
    scp = storescp("OnlyBE")
    run = _cli("send", f"{scp.aet}@127.0.0.1:{scp.port}", "--series", str(pt.SeriesInstanceUID),
               "--config", str(cfg))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Done" not in run.stdout and _summary(run.stdout)["sent"] == "4"
    verbose = _cli("send", f"{scp.aet}@127.0.0.1:{scp.port}", "--series", str(pt.SeriesInstanceUID),
                   "--config", str(cfg), "--verbose")
    assert verbose.stdout.count("Done ") == 4 and "Explicit VR Big Endian" in verbose.stdout
    assert {_dump_syntax(p) for p in scp.received()} == {"BigEndianExplicit"}
    study = _cli("send", f"{scp.aet}@127.0.0.1:{scp.port}", "--study", str(pt.StudyInstanceUID),
                 "--config", str(cfg), "-q")
    assert study.returncode == 0, study.stdout + study.stderr
    assert "Done" not in study.stdout and _summary(study.stdout) == {
        "destination": f"{scp.aet}@127.0.0.1:{scp.port}", "objects": "8", "sent": "8", "with warning": "0",
        "failed": "0"}


def test_cli_usage_errors(tmp_path, corpus_small):
    """Exit 2 with a specific message for usage errors: unknown destination, no source, both sources,
    a missing path, a study not in the index."""
    cfg = write_config(tmp_path / "cfg", f'[node]\ndata_dir = "{tmp_path / "data"}"\n')
    some = str(corpus_small / "explicit-le" / "NM")
    cases = [
        (["nowhere", some], "unknown destination 'nowhere'"),
        (["A@127.0.0.1:104"], "give either PATH"),
        (["A@127.0.0.1:104", some, "--study", "1.2.3"], "give either PATH"),
        (["A@127.0.0.1:104", str(tmp_path / "nope")], "no such file or folder"),
        (["A@127.0.0.1:104", "--study", "1.2.3.4"], "no index at"),  # a read never creates an index
    ]
    for args, message in cases:
        run = _cli("send", *args, "--config", str(cfg))
        assert run.returncode == 2 and message in run.stderr, (args, run.stderr)
