"""Who may query and retrieve (issue 12): a calling AE title that is a remote's with
``allow_query = false`` gets its C-FIND refused, with ``allow_move = false`` its C-MOVE and
C-GET (status C124 "Unable to process" with an Error Comment, the association accepted);
``unknown_callers = "refuse"`` in plugins/query_retrieve.toml refuses every other caller.
DCMTK findscu / movescu / getscu as the peers. And QRS-8: an association idle past
``node.network_timeout`` is aborted (A-ABORT) with a log line, on both receive paths."""

from __future__ import annotations

import logging
import os
import subprocess
import time

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from conftest import InProcessGateway, basic_toml, dcmtk, free_port, wait_port, write_config, write_cts

NODELAY = dict(os.environ, TCP_NODELAY="1")
STUDY, SERIES = "1.2.826.0.1.3680043.8.498.91.1", "1.2.826.0.1.3680043.8.498.91.1.1"


def _remote(ae: str, port: int, **flags: bool) -> str:
    return f'ae_title = "{ae}"\nhost = "127.0.0.1"\nport = {port}\n' + "".join(
        f"{k} = {str(v).lower()}\n" for k, v in flags.items())


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qraccess")
    port, dest_port = free_port(), free_port()
    cfg = write_config(tmp / "cfg", basic_toml(port, tmp / "data"), **{
        "plugins/query_retrieve.toml": 'unknown_callers = "refuse"\n',
        "remotes/viewer.toml": _remote("VIEWER", dest_port),
        "remotes/noquery.toml": _remote("NOQUERY", dest_port, allow_query=False),
        "remotes/nomove.toml": _remote("NOMOVE", dest_port, allow_move=False),
        # two remotes share an AE title: the one whose host is the peer's decides
        "remotes/shared_here.toml": _remote("SHARED", dest_port),
        "remotes/shared_there.toml": 'ae_title = "SHARED"\nhost = "10.255.0.1"\nport = 104\nallow_query = false\n',
    })
    g = InProcessGateway(cfg, sender=False)
    files = write_cts(tmp / "ct", 3, study=STUDY, series=SERIES, patient_id="ACC-1", patient_name="Access^Test")
    subprocess.run([dcmtk("storescu"), "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port), *map(str, files)],
                   check=True, capture_output=True, timeout=60, env=NODELAY)
    yield {"gw": g, "port": port, "dest_port": dest_port, "tmp": tmp}
    g.stop()


def findscu(gw, aet: str, tmp_path) -> tuple[int, str]:
    out = subprocess.run([dcmtk("findscu"), "-v", "-S", "-aet", aet, "-aec", "DICOM_GATEWAY", "-X", "-od",
                          str(tmp_path), "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
                          "-k", "PatientName", "127.0.0.1", str(gw["port"])],
                         capture_output=True, text=True, timeout=30, env=NODELAY)
    return len(list(tmp_path.glob("rsp*.dcm"))), out.stdout + out.stderr


def movescu(gw, aet: str) -> str:
    out = subprocess.run([dcmtk("movescu"), "-v", "-S", "-aet", aet, "-aec", "DICOM_GATEWAY", "-aem", "VIEWER",
                          "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={STUDY}",
                          "-k", f"SeriesInstanceUID={SERIES}", "127.0.0.1", str(gw["port"])],
                         capture_output=True, text=True, timeout=60, env=NODELAY)
    return out.stdout + out.stderr


def getscu(gw, aet: str, tmp_path) -> str:
    out = subprocess.run([dcmtk("getscu"), "-v", "-S", "-aet", aet, "-aec", "DICOM_GATEWAY", "-od", str(tmp_path),
                          "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={STUDY}",
                          "-k", f"SeriesInstanceUID={SERIES}", "127.0.0.1", str(gw["port"])],
                         capture_output=True, text=True, timeout=60, env=NODELAY)
    return out.stdout + out.stderr


@pytest.fixture
def viewer(gw, tmp_path):
    out = tmp_path / "viewer"
    out.mkdir()
    proc = subprocess.Popen([dcmtk("storescp"), "-aet", "VIEWER", "-od", str(out), str(gw["dest_port"])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=NODELAY)
    wait_port(gw["dest_port"])
    yield out
    proc.terminate()
    proc.wait(10)


def _refused(log: str) -> bool:
    # DCMTK names the Cxxx range "Failed: UnableToProcess"
    return "Failed: UnableToProcess" in log or "c124" in log.lower()


def test_find_allowed_and_refused(gw, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gateway.qr")
    for n, (aet, allowed) in enumerate([("VIEWER", True), ("NOMOVE", True), ("NOQUERY", False),
                                        ("STRANGER", False), ("SHARED", True)]):
        (tmp_path / aet).mkdir()
        answers, log = findscu(gw, aet, tmp_path / aet)
        if allowed:
            assert answers == 1, (aet, log)
        else:
            assert answers == 0 and _refused(log), (aet, log)
            assert "Association Accepted" in log or "Association Request Acknowledged" in log
    msgs = [r.getMessage() for r in caplog.records if r.name == "gateway.qr"]
    assert any("C-FIND refused: calling AE NOQUERY (remote noquery) has allow_query = false" in m for m in msgs), msgs
    assert any("C-FIND refused: AE STRANGER is no configured remote" in m for m in msgs), msgs


def test_move_and_get_allowed_and_refused(gw, viewer, tmp_path):
    log = movescu(gw, "NOQUERY")  # may not query, may retrieve
    assert "Received Final Move Response (Success)" in log, log
    for aet in ("NOMOVE", "STRANGER"):
        log = movescu(gw, aet)
        assert _refused(log) and "Success" not in log.split("Final Move Response", 1)[-1][:40], (aet, log)
        (tmp_path / aet).mkdir()
        log = getscu(gw, aet, tmp_path / aet)
        assert _refused(log) and not list((tmp_path / aet).iterdir()), (aet, log)
    (tmp_path / "ok").mkdir()
    log = getscu(gw, "VIEWER", tmp_path / "ok")
    assert "Received C-GET Response (Success)" in log and len(list((tmp_path / "ok").iterdir())) == 3, log


def test_refusal_carries_an_error_comment(gw):
    ae = AE(ae_title="NOQUERY")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", gw["port"], ae_title="DICOM_GATEWAY")
    assert assoc.is_established  # accepted: only the operation is refused
    try:
        ident = pydicom.Dataset()
        ident.QueryRetrieveLevel, ident.StudyInstanceUID = "STUDY", ""
        [(status, _)] = list(assoc.send_c_find(ident, StudyRootQueryRetrieveInformationModelFind))
        assert status.Status == 0xC124
        assert "allow_query = false" in status.ErrorComment
    finally:
        assoc.release()


def test_invalid_setting_is_refused_with_file_line_key(tmp_path):
    """plugins/query_retrieve.toml is validated when the config loads (file:line: key), also
    with the C-FIND plugin disabled (then the C-MOVE plugin reports it, once)."""
    from gateway.config import load_config
    from gateway.plugins import load_host
    from gateway.runtime import PluginConfigError, build_runtime

    for disable in ("", '\n[plugins]\ndisable = ["query_retrieve"]\n'):
        toml = basic_toml(free_port(), tmp_path / "data")
        if disable:
            toml = toml.replace("[plugins]\n", '[plugins]\ndisable = ["query_retrieve"]\n')
        cfg = write_config(tmp_path / f"cfg{bool(disable)}", toml,
                           **{"plugins/query_retrieve.toml": '# who may ask\nunknown_callers = "maybe"\n'})
        config = load_config(cfg)
        with pytest.raises(PluginConfigError, match=r"query_retrieve.toml:2: key 'unknown_callers'") as err:
            build_runtime(config, 1, load_host(config.disabled_plugins, config.plugins.modules))
        assert str(err.value).count("unknown_callers") == 1


# ---- QRS-8: idle timeout ----------------------------------------------------------------------

@pytest.mark.parametrize("receive_path", ["rust", "pynetdicom"])
def test_idle_association_is_aborted_and_logged(tmp_path, caplog, receive_path):
    caplog.set_level(logging.INFO)
    port = free_port()
    cfg = write_config(tmp_path / "cfg", basic_toml(port, tmp_path / "data", receive_path=receive_path,
                                                    extra_node="network_timeout = 1"))
    g = InProcessGateway(cfg, sender=False)
    try:
        ae = AE(ae_title="IDLER")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
        assert assoc.is_established
        ident = pydicom.Dataset()
        ident.QueryRetrieveLevel, ident.StudyInstanceUID = "STUDY", ""
        assert [int(s.Status) for s, _ in assoc.send_c_find(ident, StudyRootQueryRetrieveInformationModelFind)] \
            == [0x0000]  # empty archive: a request answered, then idle
        deadline = time.monotonic() + 5
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.05)
        assert assoc.is_aborted, "the gateway did not abort the idle association"
        assert time.monotonic() - (deadline - 5) < 4.0
        msgs = [r.getMessage().lower() for r in caplog.records]
        assert any("network timeout reached" in m for m in msgs), msgs
    finally:
        g.stop()
