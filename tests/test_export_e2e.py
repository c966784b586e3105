"""Issue 5 end to end: a scanner stores into the gateway, a route forwards to
Orthanc, the sender delivers (SND-1..5) and asks Orthanc for Storage Commitment
(SND-8), Orthanc reports on a new association, and the study shows as archived
at that destination (SND-7 "treat as archive")."""

from __future__ import annotations

import subprocess
import sys

from conftest import InProcessGateway, basic_toml, dcmtk, free_port, write_config
from test_forward import peers  # noqa: F401  (fixture)
from gateway.index import Index
from gateway.index.commitments import CommitmentStore
from gateway.index.queue import ForwardQueue
from test_commitment import GW_AE, NODELAY, _plugin_modules, make_instances, orthanc, wait_for


def test_received_routed_sent_and_committed_by_orthanc(tmp_path):
    port = free_port()
    with orthanc(tmp_path, port) as orthanc_port:
        toml = basic_toml(port, tmp_path / "data", ae_titles=(GW_AE,), modules=_plugin_modules(),
                          extra="[forwarding]\npoll_interval = 0.05\nbackoff_initial = 0.1\n")
        cfg = write_config(tmp_path / "config", toml, **{
            "remotes/orthanc.toml": f'ae_title = "ORTHANC"\nhost = "127.0.0.1"\nport = {orthanc_port}\n'
                                    'request_storage_commitment = true\ntreat_as_archive = true\n',
            "routes/r.toml": '[[rule]]\nname = "ct-to-orthanc"\nmatch = { modality = "CT", calling_ae = "SCANNER*" }\n'
                             'forward = ["orthanc"]\n',
            "plugins/commitment.toml": "report_wait = 0.5\n",
        })
        paths = make_instances(tmp_path / "objects", 4)
        gw = InProcessGateway(cfg)
        try:
            out = subprocess.run([dcmtk("storescu"), "-aet", "SCANNER1", "-aec", GW_AE, "127.0.0.1", str(port),
                                  *map(str, paths)], capture_output=True, text=True, env=NODELAY, timeout=30)
            assert out.returncode == 0, out.stderr
            index = Index(gw.worker.runtime.config.effective_database_url())
            queue = ForwardQueue(index)
            wait_for(lambda: [j.state for j in queue.list()] == ["done"] * 4, timeout=30, what="delivery")
            store = CommitmentStore(index)
            studies = wait_for(lambda: [s for s in store.studies() if s.committed == 4], timeout=30,
                               what="Orthanc's commitment report")
        finally:
            gw.stop()
        assert len(studies) == 1 and studies[0].destination == "orthanc"
        ls = subprocess.run([sys.executable, "-m", "gateway.cli", "commit", "ls", "--config", str(cfg)],
                            capture_output=True, text=True, timeout=60)
        assert ls.returncode == 0, ls.stderr
        row = next(line.split() for line in ls.stdout.splitlines() if line.startswith("orthanc"))
        # destination study instances committed pending re-sending failed state archived
        assert row[2:9] == ["4", "4", "0", "0", "0", "committed", "yes"]


def test_hook_stored_file_path(tmp_path):
    """The storage service tells the core where its files are (the core never
    imports a plugin); a backend nobody registered is nobody's."""
    from gateway.config import load_config
    from gateway.index import FileRecord
    from gateway.plugins import load_host

    config = load_config(write_config(tmp_path / "cfg", f'[node]\ndata_dir = "{tmp_path / "data"}"\n',
                                      **{"plugins/storage.toml": f'root = "{tmp_path / "arch"}"\n'}))
    host = load_host(config.disabled_plugins, config.plugins.modules)
    record = FileRecord("1.2/1.2.3/1.2.3.4.dcm", 10, "0" * 64, "1.2.840.10008.1.2.1")
    assert host.call("gateway_stored_file_path", file=record, config=config) == \
        tmp_path / "arch" / "1.2" / "1.2.3" / "1.2.3.4.dcm"
    elsewhere = FileRecord("x.dcm", 1, "0" * 64, "1.2.840.10008.1.2.1", backend="tape")
    assert host.call("gateway_stored_file_path", file=elsewhere, config=config) is None


def test_hook_transform_outgoing(inprocess_gateway, tmp_path, peers):
    """Plugins change objects on the way out (DESIGN §3); the archive keeps them as
    received (STO-5), and a plugin that raises fails that object, not the sender."""
    import pydicom

    from conftest import write_cts
    from test_forward import Storescp, forwarding, queue_of, remote, route, send, states, wait_until

    port, scp_port = free_port(), free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "data", modules=["outgoing_plugin"], extra=forwarding()),
                           **{"remotes/pacs.toml": remote("PACS", scp_port), "routes/r.toml": route("pacs")})
    scp = peers(Storescp(tmp_path / "received", scp_port))
    files = write_cts(tmp_path / "in", 2, patient_name="Outgoing^Test")
    files += write_cts(tmp_path / "in", 1, patient_name="BROKEN")
    for f in files:
        ds = pydicom.dcmread(f)
        ds.PatientBirthDate = "19700101"
        ds.save_as(f, enforce_file_format=True)
    send(port, files)
    q = queue_of(gw)
    wait_until(lambda: states(q) == ["done", "done", "failed"], what="two sent, one refused by the plugin")
    failed = [j for j in q.list() if j.state == "failed"]
    assert "gateway_transform_outgoing" in failed[0].last_error and "refusing" in failed[0].last_error
    received = [pydicom.dcmread(p) for p in sorted(scp.out.iterdir())]
    assert len(received) == 2
    for ds in received:
        assert ds.InstitutionName == "VIA PACS" and "PatientBirthDate" not in ds
        assert ds.PixelData == pydicom.dcmread(next(f for f in files if f.stem == ds.SOPInstanceUID)).PixelData
    archived = [pydicom.dcmread(p) for p in (tmp_path / "data" / "archive").rglob("*.dcm")]
    assert len(archived) == 3 and all(ds.PatientBirthDate == "19700101" for ds in archived)


def test_send_command_applies_transform_outgoing(tmp_path, peers):
    """`dicom-gateway send` runs the same hook as the sender."""
    import os

    import pydicom

    from conftest import TEST_PLUGINS, write_cts
    from test_forward import Storescp

    scp_port = free_port()
    scp = peers(Storescp(tmp_path / "received", scp_port, "ARCH"))
    cfg = write_config(tmp_path / "cfg", f'[node]\ndata_dir = "{tmp_path / "data"}"\n'
                                         '[plugins]\nmodules = ["outgoing_plugin"]\n')
    files = write_cts(tmp_path / "in", 2)
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "send", f"ARCH@127.0.0.1:{scp_port}",
                          str(tmp_path / "in"), "--config", str(cfg)], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(TEST_PLUGINS)))
    assert out.returncode == 0, out.stdout + out.stderr
    received = [pydicom.dcmread(p) for p in sorted(scp.out.iterdir())]
    assert sorted(ds.SOPInstanceUID for ds in received) == sorted(f.stem for f in files)
    assert {ds.InstitutionName for ds in received} == {"VIA ARCH"}
