"""Storage Commitment Push Model SCU (SND-8, PS3.4 Annex J) against real peers:
Orthanc as the Storage Commitment SCP (result on a new association to our
listener), a pynetdicom SCP in the test that reports on the N-ACTION
association, and pynetdicom requestors that open an association to us with the
SCP role (PS3.7 D.3.3.4 role selection)."""

from __future__ import annotations

import inspect
import io
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, build_role, evt

from conftest import TEST_PLUGINS, InProcessGateway, basic_toml, dcmtk, missing_component, free_port, wait_port, wait_for, write_config, write_cts, stop_process
from gateway.config import load_config
from gateway.index import FileRecord, Index, extract_attributes
from gateway.index import schema as S
from gateway.index.commitments import RESEND_RULE, CommitmentStore
from gateway.net import commitment as sc
from gateway.net.storescu import resolve_destination

SC = sc.STORAGE_COMMITMENT_PUSH_MODEL
CT = "1.2.840.10008.5.1.4.1.1.2"
NODELAY = dict(os.environ, TCP_NODELAY="1")
ORTHANC = Path("/usr/sbin/Orthanc")
GW_AE = "GW_COMMIT"


def _plugin_modules() -> list[str]:
    # Built in through the entry point once installed; before that, by config.
    names = {ep.name for ep in metadata.entry_points(group="dicom_gateway")}
    return [] if "commitment" in names else ["gateway_plugins.commitment"]


def make_config(tmp_path: Path, *, port: int | None = None, remotes: dict[str, dict] | None = None,
                extra_node: str = "", **settings) -> Path:
    """A config dir: our listener, the commitment plugin, remotes, plugins/commitment.toml.
    The sender is off: these tests drive the commitment functions themselves."""
    port = port or free_port()
    files = {f"remotes/{name}.toml": "".join(f"{k} = {json.dumps(v)}\n" for k, v in body.items())
             for name, body in (remotes or {}).items()}
    settings.setdefault("report_wait", 2.0)
    files["plugins/commitment.toml"] = "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    toml = basic_toml(port, tmp_path / "data", ae_titles=(GW_AE,), modules=_plugin_modules(),
                      extra_node=extra_node, extra="[forwarding]\nenabled = false\n")
    return write_config(tmp_path / "config", toml, **files)


def make_instances(directory: Path, n: int, study: str | None = None) -> list[Path]:
    """Small CT objects of one study and series, as Part 10 files (Explicit VR LE)."""
    return write_cts(directory, n, study=study, patient_id="SC0001", patient_name="Commitment^Test")


def index_files(index: Index, paths: list[Path]) -> list[tuple[str, str, str]]:
    """Put the objects in the index as the storage service would; returns `sent` triples."""
    out = []
    with index.transaction() as tx:
        for path in paths:
            attrs = extract_attributes(path, has_file_meta=True)
            tx.store_instance(attrs, FileRecord(f"x/{path.name}", path.stat().st_size, "0" * 64,
                                                ExplicitVRLittleEndian))
            out.append((attrs.sop_class_uid, attrs.sop_instance_uid, attrs.study_instance_uid))
    return out


def jobs(index: Index) -> list:
    with index._connect(write=False) as conn:
        return conn.execute(sa.select(S.forward_jobs).order_by(S.forward_jobs.c.id)).all()


def start_gateway(cfg_dir: Path) -> InProcessGateway:
    # Listener only: these tests call the commitment functions as the sender would.
    no_sender = {"sender": False} if "sender" in inspect.signature(InProcessGateway).parameters else {}
    return InProcessGateway(cfg_dir, **no_sender)


@contextmanager
def gateway(cfg_dir: Path):
    gw = start_gateway(cfg_dir)
    try:
        yield gw
    finally:
        gw.stop()


# ---- peers ---------------------------------------------------------------------------


@contextmanager
def orthanc(tmp_path: Path, gateway_port: int):
    """Orthanc on loopback as a Storage Commitment SCP that knows our AE (it
    sends its N-EVENT-REPORT on a new association to our listener)."""
    if not ORTHANC.exists():
        missing_component("Orthanc not installed (scripts/test.sh installs it)")
    dicom_port, http_port = free_port(), free_port()
    root = tmp_path / "orthanc"
    root.mkdir()
    cfg = {
        "Name": "commitment-test", "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port,
        "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomAlwaysAllowEcho": True, "DicomAlwaysAllowStore": True, "DicomScuTimeout": 10,
        "DicomModalities": {"gateway": [GW_AE, "127.0.0.1", gateway_port]},
        "Plugins": [],
    }
    (root / "orthanc.json").write_text(json.dumps(cfg))
    log = open(root / "orthanc.log", "wb")
    proc = subprocess.Popen([str(ORTHANC), str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                            env=NODELAY)
    try:
        wait_port(dicom_port)
        yield dicom_port
    finally:
        stop_process(proc)
        log.close()


class CommitSCP:
    """A Storage Commitment SCP (pynetdicom) that reports on the N-ACTION association.

    ``failed``: instance UIDs it reports as failed (0112 No Such Object Instance);
    ``transaction_uid``: report under this Transaction UID instead of the requested one.
    """

    def __init__(self, port: int | None = None, failed: set[str] = frozenset(), transaction_uid: str | None = None,
                 action_status: int = 0x0000, supports: bool = True):
        self.port = port or free_port()
        self.failed = set(failed)
        self.transaction_uid = transaction_uid
        self.action_status = action_status
        self.actions: list[Dataset] = []
        self.roles: list[dict] = []
        self.report_statuses: list[int] = []
        self.ae = AE("COMMIT_SCP")
        if supports:
            self.ae.add_supported_context(SC, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        self.ae.add_supported_context("1.2.840.10008.1.1")
        self.ae.dimse_timeout = 10

    def on_action(self, event):
        info = event.action_information
        self.actions.append(info)
        if self.action_status:
            return self.action_status, None
        self.roles.append({str(uid): (r.scu_role, r.scp_role) for uid, r in event.assoc.requestor.role_selection.items()})
        report = Dataset()
        report.TransactionUID = self.transaction_uid or info.TransactionUID
        ok, bad = [], []
        for ref in info.ReferencedSOPSequence:
            item = Dataset()
            item.ReferencedSOPClassUID = ref.ReferencedSOPClassUID
            item.ReferencedSOPInstanceUID = ref.ReferencedSOPInstanceUID
            if ref.ReferencedSOPInstanceUID in self.failed:
                item.FailureReason = 0x0112
                bad.append(item)
            else:
                ok.append(item)
        if ok:
            report.ReferencedSOPSequence = ok
        if bad:
            report.FailedSOPSequence = bad
        # PS3.4 J.3.3: the result on the same association (here ahead of the N-ACTION-RSP).
        rsp, _ = event.assoc.send_n_event_report(report, 2 if bad else 1, SC, sc.STORAGE_COMMITMENT_INSTANCE)
        self.report_statuses.append(int(rsp.Status) if rsp else -1)
        return 0x0000, None

    def __enter__(self) -> "CommitSCP":
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                           evt_handlers=[(evt.EVT_N_ACTION, self.on_action)])
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()


def send_report(port: int, event_type: int, info: Dataset | None, *, roles=(False, True),
                instance: str = sc.STORAGE_COMMITMENT_INSTANCE, calling: str = "ORTHANC") -> tuple[int | None, bool]:
    """Open an association to our listener as a Storage Commitment SCP would
    (proposing the SCP role) and send one N-EVENT-REPORT; (status, context accepted)."""
    ae = AE(calling)
    ae.add_requested_context(SC, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    ae.add_requested_context("1.2.840.10008.1.1")  # Verification: established even if SC is refused
    ext = [build_role(SC, scu_role=roles[0], scp_role=roles[1])] if roles else None
    assoc = ae.associate("127.0.0.1", port, ae_title=GW_AE, ext_neg=ext)
    assert assoc.is_established
    try:
        cx = [c for c in assoc.accepted_contexts if c.abstract_syntax == SC]
        if not cx:
            return None, False
        rsp, _ = assoc.send_n_event_report(info, event_type, SC, instance)
        return (int(rsp.Status) if rsp else None), True
    finally:
        assoc.release()


def report(transaction_uid: str, committed=(), failed=()) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    def items(refs, reason=None):
        out = []
        for sop_class, sop_instance in refs:
            it = Dataset()
            it.ReferencedSOPClassUID = sop_class
            it.ReferencedSOPInstanceUID = sop_instance
            if reason is not None:
                it.FailureReason = reason
            out.append(it)
        return out
    if committed:
        ds.ReferencedSOPSequence = items(committed)
    if failed:
        ds.FailedSOPSequence = items(failed, 0x0112)
    return ds


# ---- tests ------------------------------------------------------------------------------


def test_orthanc_commits_what_it_holds_and_fails_the_rest(tmp_path):
    """SND-8 against Orthanc: N-ACTION for two instances it holds and one it does
    not; Orthanc reports on a NEW association to our listener (PS3.4 J.3.3); the two
    become committed, the missing one failed (0112) and is queued to be sent again;
    `commit ls` shows the study at this archive destination (SND-7) as not archived."""
    port = free_port()
    with orthanc(tmp_path, port) as orthanc_port:
        cfg_dir = make_config(tmp_path, port=port, report_wait=0.2, remotes={"orthanc": dict(
            ae_title="ORTHANC", host="127.0.0.1", port=orthanc_port, request_storage_commitment=True,
            treat_as_archive=True, dimse_timeout=10)})
        config = load_config(cfg_dir)
        paths = make_instances(tmp_path / "objects", 3)
        index = Index(config.effective_database_url())
        sent = index_files(index, paths)
        out = subprocess.run([dcmtk("storescu"), "-aet", GW_AE, "-aec", "ORTHANC", "127.0.0.1", str(orthanc_port),
                              str(paths[0]), str(paths[1])], capture_output=True, text=True, env=NODELAY, timeout=30)
        assert out.returncode == 0, out.stderr
        dest = resolve_destination("orthanc", config)
        store = CommitmentStore(index)
        with gateway(cfg_dir):
            uid = sc.request_commitment(dest, sent, index, config)
            done = wait_for(lambda: (c := store.get(uid)) and c.state != "requested" and c, what="Orthanc's report")
        assert done.state == "partial" and done.action_status == 0
        states = {i.sop_instance_uid: (i.state, i.failure_reason) for i in done.items}
        assert states[sent[0][1]] == ("committed", None)
        assert states[sent[1][1]] == ("committed", None)
        assert states[sent[2][1]] == ("failed", 0x0112)
        resend = [j for j in jobs(index) if j.rule == RESEND_RULE]
        assert [(j.destination, j.sop_instance_uid, j.state) for j in resend] == [("orthanc", sent[2][1], "pending")]

        env = dict(os.environ, PYTHONPATH=str(TEST_PLUGINS))
        ls = subprocess.run([sys.executable, "-m", "gateway.cli", "commit", "ls", "--config", str(cfg_dir)],
                            capture_output=True, text=True, timeout=60, env=env)
        assert ls.returncode == 0, ls.stderr
        row = next(line.split() for line in ls.stdout.splitlines() if line.startswith("orthanc"))
        # destination study instances committed pending re-sending failed state archived
        assert row[1:9] == [sent[0][2], "3", "2", "0", "1", "0", "pending", "no"]


def test_report_on_the_same_association(tmp_path):
    """SND-8: the SCP answers N-EVENT-REPORT on the N-ACTION association; it is
    recorded (all committed) before request_commitment returns, and our response
    is Success. The N-ACTION carried every instance and our role selection item."""
    with CommitSCP() as scp:
        config = load_config(make_config(tmp_path, remotes={"pacs": dict(
            ae_title="COMMIT_SCP", host="127.0.0.1", port=scp.port, request_storage_commitment=True)}))
        index = Index(config.effective_database_url())
        sent = index_files(index, make_instances(tmp_path / "objects", 2))
        started = time.monotonic()
        uid = sc.request_commitment(resolve_destination("pacs", config), sent, index, config)
        assert time.monotonic() - started < 2.0  # released once reported, not after report_wait
    c = CommitmentStore(index).get(uid)
    assert c.state == "committed" and c.destination == "pacs"
    assert {i.state for i in c.items} == {"committed"}
    assert scp.report_statuses == [0x0000]
    assert [r.ReferencedSOPInstanceUID for r in scp.actions[0].ReferencedSOPSequence] == [s[1] for s in sent]
    assert scp.actions[0].TransactionUID == uid
    assert scp.roles == [{SC: (True, False)}]
    assert jobs(index) == []


def test_unknown_transaction_on_the_same_association(tmp_path):
    """PS3.4 J.3.3 / PS3.7 10.1.1.1.8: a report naming a transaction we never
    requested is answered 0115 Invalid Argument Value; ours stays requested."""
    with CommitSCP(transaction_uid="1.2.3.999") as scp:
        config = load_config(make_config(tmp_path, report_wait=0.3, remotes={"pacs": dict(
            ae_title="COMMIT_SCP", host="127.0.0.1", port=scp.port, request_storage_commitment=True)}))
        index = Index(config.effective_database_url())
        sent = index_files(index, make_instances(tmp_path / "objects", 1))
        uid = sc.request_commitment(resolve_destination("pacs", config), sent, index, config)
    assert scp.report_statuses == [sc.INVALID_ARGUMENT_VALUE]
    c = CommitmentStore(index).get(uid)
    assert c.state == "requested" and c.action_status == 0
    assert [p.transaction_uid for p in sc.pending_commitments(index)] == [uid]


@pytest.mark.parametrize("scp_kwargs, status", [
    (dict(action_status=0x0213), 0x0213),   # N-ACTION-RSP Resource Limitation
    (dict(supports=False), 0x0122),         # context refused: SOP Class not supported
])
def test_refused_n_action_is_an_error_not_retried(tmp_path, scp_kwargs, status):
    """SND-8: an SCP that refuses the N-ACTION (a failure status, or no context for
    the SOP class) leaves the transaction in state error with that status, visible
    in `commit ls --transactions`; it is not pending for retry."""
    with CommitSCP(**scp_kwargs) as scp:
        config = load_config(make_config(tmp_path, retry_after=0.01, report_wait=0.2, remotes={"pacs": dict(
            ae_title="COMMIT_SCP", host="127.0.0.1", port=scp.port, request_storage_commitment=True)}))
        index = Index(config.effective_database_url())
        sent = index_files(index, make_instances(tmp_path / "objects", 1))
        uid = sc.request_commitment(resolve_destination("pacs", config), sent, index, config)
    c = CommitmentStore(index).get(uid)
    assert (c.state, c.action_status) == ("error", status)
    time.sleep(0.05)
    assert sc.pending_commitments(index) == [] and sc.retry_outstanding(index, config) == 0
    from gateway_plugins.commit_command import commit_ls

    out = io.StringIO()
    commit_ls(index, config, type("Args", (), dict(study=None, destination=None, instances=False,
                                                   transactions=True))(), out)
    assert f"error  0x{status:04X}" in out.getvalue()


def test_report_on_a_new_association_with_scp_role(request, tmp_path):
    """SND-8 result on a new association: the SCP proposes the SCP role (PS3.7
    D.3.3.4) and our listener accepts it as SCU. Partial result -> the failed
    instance is re-queued; unknown transaction -> 0115; unknown event type -> 0113;
    another SOP instance -> 0112; a peer proposing to be SCU (asking us to commit)
    gets the context rejected. Storage SCUs proposing their SCU role still store.
    Reports above the spool threshold arrive spooled by the Rust receiver and are read from there."""
    port = free_port()
    cfg_dir = make_config(tmp_path, port=port, extra_node="spool_threshold = 100", remotes={"pacs": dict(
        ae_title="PACS", host="127.0.0.1", port=free_port(), request_storage_commitment=True)})
    gw = start_gateway(cfg_dir)
    request.addfinalizer(gw.stop)
    config = load_config(cfg_dir)
    index = Index(config.effective_database_url())
    sent = index_files(index, make_instances(tmp_path / "objects", 3))
    store = CommitmentStore(index)
    store.create("1.2.826.0.1.3680043.10.1472.3.77", "pacs", sent)

    status, accepted = send_report(port, 2, report("1.2.826.0.1.3680043.10.1472.3.77",
                                                   committed=[s[:2] for s in sent[:2]], failed=[sent[2][:2]]))
    assert (status, accepted) == (0x0000, True)
    c = store.get("1.2.826.0.1.3680043.10.1472.3.77")
    assert c.state == "partial"
    assert [(i.state, i.failure_reason) for i in c.items] == [("committed", None), ("committed", None), ("failed", 0x0112)]
    assert [(j.rule, j.sop_instance_uid, j.series_instance_uid) for j in jobs(index)] == [
        (RESEND_RULE, sent[2][1], extract_attributes(next((tmp_path / "objects").glob("*.dcm")),
                                                     has_file_meta=True).series_instance_uid)]

    assert send_report(port, 1, report("1.2.3.4.5.404", committed=[sent[0][:2]]))[0] == sc.INVALID_ARGUMENT_VALUE
    assert send_report(port, 7, report("1.2.826.0.1.3680043.10.1472.3.77"))[0] == sc.NO_SUCH_EVENT_TYPE
    assert send_report(port, 1, report("1.2.826.0.1.3680043.10.1472.3.77"),
                       instance="1.2.3.4")[0] == sc.NO_SUCH_SOP_INSTANCE
    assert send_report(port, 1, None)[0] == sc.INVALID_ARGUMENT_VALUE  # no Event Information at all
    # A repeated report changes nothing (no second re-send job).
    assert send_report(port, 2, report("1.2.826.0.1.3680043.10.1472.3.77", failed=[s[:2] for s in sent]))[0] == 0
    assert len(jobs(index)) == 1 and store.get("1.2.826.0.1.3680043.10.1472.3.77").state == "partial"
    # We are not a Storage Commitment SCP: a requestor proposing only the SCU role is refused the context.
    assert send_report(port, 1, None, roles=(True, False)) == (None, False)

    # contexts.py roles: a Storage SCU proposing SCP/SCU role selection for its own role still stores.
    ae = AE("ROLE_SCU")
    ae.add_requested_context(CT, ["1.2.840.10008.1.2.1"])
    assoc = ae.associate("127.0.0.1", port, ae_title=GW_AE, ext_neg=[build_role(CT, scu_role=True)])
    assert assoc.is_established
    try:
        from pydicom import dcmread

        ds = dcmread(make_instances(tmp_path / "more", 1)[0])
        assert int(assoc.send_c_store(ds).Status) == 0
    finally:
        assoc.release()


def test_resends_are_bounded(tmp_path):
    """After `max_resends` failed commitments of one instance at one destination it
    is left failed (no new job) and `commit ls` says so; other destinations count apart."""
    config = load_config(make_config(tmp_path, max_resends=1))
    index = Index(config.effective_database_url())
    sent = index_files(index, make_instances(tmp_path / "objects", 1))
    store = CommitmentStore(index)
    one = sent[0][:2]
    for n, dest in enumerate(["pacs", "pacs", "other"]):
        store.create(f"1.2.3.{n}", dest, sent)
        status, _ = sc.apply_event_report(index, config, 2, report(f"1.2.3.{n}", failed=[one]))
        assert status == 0
        # the pending re-send job is consumed, as a sender would
        with index._connect(write=True) as conn:
            conn.execute(sa.update(S.forward_jobs).values(state="done"))
    rules = [(j.destination, j.rule) for j in jobs(index)]
    assert rules == [("pacs", RESEND_RULE), ("other", RESEND_RULE)]
    by_dest = {s.destination: s for s in store.studies()}
    assert by_dest["pacs"].state == "failed" and by_dest["pacs"].gave_up == 1
    out = io.StringIO()
    from gateway_plugins.commit_command import commit_ls

    class Args:
        study = None
        destination = "PACS"  # remote names ignore case
        instances = True
        transactions = False

    commit_ls(index, config, Args(), out)
    line = next(l for l in out.getvalue().splitlines() if l.startswith("pacs"))
    assert line.split()[3:6] == ["failed", "0x0112", "2"]


def test_outstanding_transactions_survive_restart(tmp_path):
    """SND-8: the N-ACTION cannot be delivered (SCP down): request_commitment does
    not raise and the transaction stays requested. After a "restart" (a new Index
    on the same database) retry_outstanding sends the N-ACTION again with the same
    Transaction UID, and the report settles it."""
    scp_port = free_port()
    cfg_dir = make_config(tmp_path, retry_after=0.05, report_wait=2.0, remotes={"pacs": dict(
        ae_title="COMMIT_SCP", host="127.0.0.1", port=scp_port, request_storage_commitment=True,
        association_timeout=2)})
    config = load_config(cfg_dir)
    first = Index(config.effective_database_url())
    sent = index_files(first, make_instances(tmp_path / "objects", 2))
    uid = sc.request_commitment(resolve_destination("pacs", config), sent, first, config)
    c = CommitmentStore(first).get(uid)
    assert c.state == "requested" and c.action_status is None
    first.close()

    restarted = Index(config.effective_database_url())
    time.sleep(0.1)
    assert [p.transaction_uid for p in sc.pending_commitments(restarted, older_than=0.05)] == [uid]
    with CommitSCP(port=scp_port) as scp:
        assert sc.retry_outstanding(restarted, config) == 1
    assert scp.actions[0].TransactionUID == uid
    assert CommitmentStore(restarted).get(uid).state == "committed"
    assert sc.retry_outstanding(restarted, config) == 0


def test_outstanding_transactions_give_up(tmp_path):
    """A transaction with no report after `give_up_after` is failed, not retried
    for ever (its instances were delivered: they are not re-sent)."""
    config = load_config(make_config(tmp_path, retry_after=0.01, give_up_after=0.01))
    index = Index(config.effective_database_url())
    sent = index_files(index, make_instances(tmp_path / "objects", 1))
    CommitmentStore(index).create("1.2.3.5", "pacs", sent)
    time.sleep(0.05)
    assert sc.retry_outstanding(index, config) == 0
    c = CommitmentStore(index).get("1.2.3.5")
    assert c.state == "failed" and c.items[0].state == "failed"
    assert jobs(index) == []


def test_bad_settings_are_reported(tmp_path):
    """plugins/commitment.toml is validated when the config loads (file, key, reason)."""
    from gateway.plugins import load_host
    from gateway.runtime import PluginConfigError, build_runtime

    config = load_config(make_config(tmp_path, max_resends=-1))
    with pytest.raises(PluginConfigError, match=r"commitment.toml:\d+: key 'max_resends'"):
        build_runtime(config, 1, load_host(config.disabled_plugins, config.plugins.modules))
