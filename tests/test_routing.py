"""Routing rules (routes/*.toml) and the transactional outbox: the rule language,
its config errors, `route test`, jobs written with the instance row (DESIGN §2),
series completeness, and the gateway_route hook."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import basic_toml, dcmtk, free_port, write_config
from gateway.config import ConfigError, load_config
from gateway.index import Index
from gateway.index.queue import ForwardQueue
from gateway.messages import AssociationInfo, RoutedInstance
from gateway.routing import Router

CT, PT = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.128"
PACS = """
ae_title = "PACS"
host = "127.0.0.1"
port = 4104
"""


def _config(tmp_path: Path, routes: str, **files: str):
    return load_config(write_config(tmp_path / "cfg", "", **{"remotes/pacs.toml": PACS,
                                                             "routes/r.toml": routes, **files}))


def _instance(modality="CT", calling="SCANNER1", called="DICOM_GATEWAY", host="10.1.2.3", **attrs) -> RoutedInstance:
    from pydicom.dataset import Dataset

    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    who = AssociationInfo("a1", calling, called, host, 5000, 11112)
    return RoutedInstance("1.2.3.4", CT if modality == "CT" else PT, "1.2.3", "1.2.3.1", modality,
                          "1.2.840.10008.1.2.1", who, _dataset=ds)


def _destinations(router: Router, instance: RoutedInstance) -> list[str]:
    return sorted(p.destination for p in router.decide(instance).plans)


def test_match_fixed_keys_wildcards_and_lists(tmp_path):
    router = Router(_config(tmp_path, """
        [[rule]]
        name = "pet-ct"
        match = { modality = ["CT", "PT"], calling_ae = "SCANNER*", called_ae = "DICOM_GATEWAY", source = "10.1.0.0/16" }
        forward = ["pacs"]
        """))
    assert _destinations(router, _instance()) == ["pacs"]
    assert _destinations(router, _instance(modality="PT")) == ["pacs"]
    assert _destinations(router, _instance(modality="NM")) == []
    assert _destinations(router, _instance(calling="WORKSTATION")) == []
    assert _destinations(router, _instance(host="192.168.0.1")) == []
    verdict = router.decide(_instance(calling="WS1", host="192.168.0.1")).verdicts[0]
    assert not verdict.matched
    assert any(r.startswith("calling_ae: 'WS1' does not match 'SCANNER*'") for r in verdict.reasons)
    assert any(r.startswith("source: '192.168.0.1' not in 10.1.0.0/16") for r in verdict.reasons)


def test_match_any_tag_regex_numeric_and_date_ranges(tmp_path):
    router = Router(_config(tmp_path, """
        [[rule]]
        name = "heavy-ge"
        match = { Manufacturer = { regex = "^GE" }, PatientWeight = { min = 50, max = 120 }, "0008,0020" = { date = "20250101-" } }
        forward = ["pacs"]

        [[rule]]
        name = "not-philips"
        match = { Manufacturer = { not = "Philips*" }, sop_class = "1.2.840.10008.5.1.4.1.1.2" }
        forward = ["ARCHIVE@127.0.0.1:4105"]
        """))
    assert router.needs_dataset
    ok = _instance(Manufacturer="GE MEDICAL", PatientWeight="80.5", StudyDate="20260301")
    assert _destinations(router, ok) == ["ARCHIVE@127.0.0.1:4105", "pacs"]
    assert _destinations(router, _instance(Manufacturer="GE", PatientWeight="130", StudyDate="20260301")) \
        == ["ARCHIVE@127.0.0.1:4105"]
    assert _destinations(router, _instance(Manufacturer="GE", PatientWeight="80", StudyDate="20241231")) \
        == ["ARCHIVE@127.0.0.1:4105"]
    assert _destinations(router, _instance(Manufacturer="Philips Medical", PatientWeight="80")) == []
    # An absent attribute matches nothing, except a negation.
    assert _destinations(router, _instance()) == ["ARCHIVE@127.0.0.1:4105"]


def test_actions_drop_hold_priority_syntax_and_completeness(tmp_path):
    config = _config(tmp_path, """
        [[rule]]
        name = "all-ct"
        match = { modality = "CT" }
        forward = ["pacs"]
        syntax = "explicit-be"

        [[rule]]
        name = "urgent-ct"
        match = { modality = "CT", calling_ae = "ER*" }
        forward = ["pacs"]
        priority = 9

        [[rule]]
        name = "hold-pt"
        match = { modality = "PT" }
        action = "hold"
        forward = ["pacs"]

        [[rule]]
        name = "series-ct"
        match = { modality = "CT" }
        forward = ["ARCHIVE@127.0.0.1:4105"]
        after_series_complete = "association"

        [[rule]]
        name = "quiet-ct"
        match = { modality = "CT" }
        forward = ["LATE@127.0.0.1:4106"]
        after_series_complete = "quiet"

        [[rule]]
        name = "no-test-patients"
        match = { PatientID = "TEST*" }
        action = "drop"
        """)
    router = Router(config)
    plans = {p.destination: p for p in router.decide(_instance(calling="ER1")).plans}
    assert plans["pacs"].priority == 9 and plans["pacs"].rule == "all-ct"  # one job, highest priority
    assert plans["pacs"].options == {"syntax": "1.2.840.10008.1.2.2"} and plans["pacs"].state == "pending"
    assert plans["ARCHIVE@127.0.0.1:4105"].state == "waiting"
    assert plans["ARCHIVE@127.0.0.1:4105"].complete_after == -1
    assert plans["LATE@127.0.0.1:4106"].complete_after == config.forwarding.series_quiet_time
    assert [p.state for p in router.decide(_instance(modality="PT")).plans] == ["held"]
    dropped = router.decide(_instance(PatientID="TEST-1"))
    assert dropped.plans == [] and dropped.dropped_by == "no-test-patients"


@pytest.mark.parametrize("routes, expected", [
    ('[[rule]]\nname = "a"\nmatch = { Manufaktur = "GE" }\nforward = ["pacs"]\n',
     "routes/r.toml:3: key 'rule[0].match': unknown match key 'Manufaktur'"),
    ('[[rule]]\nname = "a"\nmatch = { modality = "CT" }\nforward = ["nowhere"]\n',
     "routes/r.toml:4: key 'rule[0].forward[0]': unknown destination 'nowhere'"),
    ('[[rule]]\nname = "a"\nmatch = { modality = "CT" }\n',
     "routes/r.toml:1: key 'rule[0]': action 'forward' needs forward"),
    ('[[rule]]\nname = "a"\nmatch = { Rows = { min = "x" } }\nforward = ["pacs"]\n',
     "routes/r.toml:3: key 'rule[0].match': match.Rows: min/max are numbers"),
    ('[[rule]]\nname = "a"\nmatch = { CallingAE = { regex = "(" } }\nforward = ["pacs"]\n',
     "unknown match key 'CallingAE'"),
    ('[[rule]]\nname = "a"\nmatch = { Manufacturer = { regex = "(" } }\nforward = ["pacs"]\n',
     "match.Manufacturer.regex: missing ), unterminated subpattern"),
    ('[[rule]]\nname = "a"\nmatch = { modality = "CT" }\nforward = ["pacs"]\nsyntax = "jpeg"\n',
     "routes/r.toml:5: key 'rule[0].syntax': one of explicit-le, implicit-le, explicit-be"),
    ('[[rule]]\nname = "a"\nmatch = { source = "10.0.0.300" }\nforward = ["pacs"]\n',
     "match.source: an IP address or CIDR block"),
])
def test_rule_errors_name_file_line_and_key(tmp_path, routes, expected):
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, routes)
    assert expected in str(err.value)


def test_route_test_command_explains_each_rule(tmp_path, corpus_small):
    cfg = write_config(tmp_path / "cfg", "", **{"remotes/pacs.toml": PACS, "routes/r.toml": """
        [[rule]]
        name = "pet-ct"
        match = { modality = ["CT", "PT"], calling_ae = "SCANNER*" }
        forward = ["pacs"]

        [[rule]]
        name = "nm-only"
        match = { modality = "NM" }
        forward = ["NMVIEW@127.0.0.1:4999"]
        """})
    ct = sorted((corpus_small / "explicit-le" / "CT").glob("*.dcm"))[0]
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "route", "test", "--config", str(cfg),
                          "--calling-ae", "SCANNER7", str(ct)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "MATCH    pet-ct (routes/r.toml:2) -> forward pacs" in out.stdout
    assert "no match nm-only (routes/r.toml:7): modality: 'CT' != 'NM'" in out.stdout
    assert "=> forward to pacs (rule pet-ct)" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "gateway.cli", "route", "test", "--config", str(cfg),
                          str(tmp_path / "cfg" / "gateway.toml")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "cannot read as DICOM" in bad.stderr


def _send(port: int, files: list[Path], calling="SCANNER1") -> None:
    subprocess.run([dcmtk("storescu"), "-aet", calling, "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port),
                    *map(str, files)], check=True, capture_output=True, timeout=60,
                   env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"})


def test_jobs_are_written_with_the_instance(inprocess_gateway, tmp_path, corpus_small):
    """DESIGN §2: every stored instance that a rule or a plugin routes has its jobs
    committed with its index row; an identical resend (STO-6 no-op) adds none."""
    import route_plugin

    port = free_port()
    data = tmp_path / "data"
    gw = inprocess_gateway(basic_toml(port, data, modules=["route_plugin"],
                                      extra="[forwarding]\nenabled = false\n"),
                           **{"remotes/pacs.toml": PACS, "routes/r.toml": """
        [[rule]]
        name = "pet-ct"
        match = { modality = ["CT", "PT"], calling_ae = "SCANNER*" }
        forward = ["pacs"]

        [[rule]]
        name = "pt-after-series"
        match = { modality = "PT" }
        forward = ["ARCHIVE@127.0.0.1:4105"]
        after_series_complete = "association"
        """})
    root = corpus_small / "explicit-le"
    files = sorted((root / "CT").glob("*.dcm"))[:3] + sorted((root / "PT").glob("*.dcm"))[:2] \
        + sorted((root / "NM").glob("*.dcm"))[:1]
    route_plugin.SEEN.clear()
    _send(port, files)
    index = Index(gw.worker.runtime.config.effective_database_url())
    jobs = ForwardQueue(index).list()
    by_dest: dict[str, list] = {}
    for job in jobs:
        by_dest.setdefault(job.destination, []).append(job)
    assert len(by_dest["pacs"]) == 5 and all(j.state == "pending" for j in by_dest["pacs"])
    assert len(by_dest["NMVIEW@127.0.0.1:4999"]) == 1 and by_dest["NMVIEW@127.0.0.1:4999"][0].rule == "plugin"
    # The hook saw what the rules chose.
    assert any(dests == ("pacs",) for _, dests in route_plugin.SEEN)
    # Completeness: the PT jobs waited for the sender's association to end, which it has.
    waiting = by_dest["ARCHIVE@127.0.0.1:4105"]
    assert len(waiting) == 2 and {j.state for j in waiting} <= {"waiting", "pending"}
    deadline = time.monotonic() + 5
    completed = []
    while time.monotonic() < deadline:
        completed += ForwardQueue(index).complete_series(quiet_time=3600)
        if {j.state for j in ForwardQueue(index).list(destination="ARCHIVE@127.0.0.1:4105")} == {"pending"}:
            break
        time.sleep(0.1)
    assert {j.state for j in ForwardQueue(index).list(destination="ARCHIVE@127.0.0.1:4105")} == {"pending"}
    assert len(completed) >= 2  # the CT series and the PT series (association ended)

    # Identical resend: no new jobs. A late arrival reopens its series.
    before = len(ForwardQueue(index).list())
    _send(port, files[:1])
    assert len(ForwardQueue(index).list()) == before


def test_late_arrival_after_completion_is_forwarded(tmp_path):
    """Issue 5.4: an instance arriving after its series completed waits for the next
    completion and is released then — never lost."""
    from gateway.index.queue import ForwardPlan, enqueue, touch_series

    index = Index(tmp_path / "index.db")
    q = ForwardQueue(index)
    t0 = datetime(2026, 1, 1, 12, 0, 0)
    uids = dict(sop_class_uid=CT, series_instance_uid="1.2.3.1", study_instance_uid="1.2.3")
    plan = [ForwardPlan("pacs", "r", state="waiting", complete_after=10.0)]
    with index.transaction() as tx:
        touch_series(tx.conn, series_instance_uid="1.2.3.1", study_instance_uid="1.2.3", association="p:1", now=t0)
        enqueue(tx.conn, plan, sop_instance_uid="1.2.3.1.1", now=t0, **uids)
    assert q.complete_series(60, now=t0 + timedelta(seconds=5)) == []
    assert q.complete_series(60, now=t0 + timedelta(seconds=11)) == []  # job released, series not yet quiet 60 s
    assert [j.state for j in q.list()] == ["pending"]
    assert q.complete_series(60, now=t0 + timedelta(seconds=61)) == [("1.2.3.1", "1.2.3", 1)]
    late = t0 + timedelta(seconds=100)
    with index.transaction() as tx:
        touch_series(tx.conn, series_instance_uid="1.2.3.1", study_instance_uid="1.2.3", association="p:2", now=late)
        enqueue(tx.conn, plan, sop_instance_uid="1.2.3.1.2", now=late, **uids)
    assert [j.state for j in q.list()] == ["pending", "waiting"]
    assert q.complete_series(60, now=late + timedelta(seconds=11)) == []
    assert [j.state for j in q.list()] == ["pending", "pending"]
    assert q.complete_series(60, now=late + timedelta(seconds=61)) == [("1.2.3.1", "1.2.3", 2)]


def test_hook_route(tmp_path):
    """gateway_route adds destinations; a matching drop rule vetoes them too."""
    from gateway.plugins import load_host

    config = _config(tmp_path, """
        [[rule]]
        name = "drop-test"
        match = { PatientID = "TEST*" }
        action = "drop"
        """)
    host = load_host((), ["route_plugin"])
    router = Router(config, host)
    assert router.active
    assert _destinations(router, _instance(modality="NM")) == ["NMVIEW@127.0.0.1:4999"]
    assert _destinations(router, _instance(modality="CT", Manufacturer="ROUTE-ME")) == ["pacs"]
    assert _destinations(router, _instance(modality="NM", PatientID="TEST1")) == []
    # Without rules or an implementation, routing costs nothing per instance.
    empty = load_config(write_config(tmp_path / "empty", ""))
    assert not Router(empty, load_host()).active


def test_rules_hot_reload(inprocess_gateway, tmp_path, corpus_small):
    """Issue 5.2: a changed routes/*.toml applies to the next association without a
    restart; an invalid one keeps the last good rules."""
    from test_reload import wait_for

    port = free_port()
    gw = inprocess_gateway(basic_toml(port, tmp_path / "data", extra="[forwarding]\nenabled = false\n"),
                           **{"remotes/pacs.toml": PACS, "routes/r.toml": """
        [[rule]]
        name = "ct"
        match = { modality = "CT" }
        forward = ["pacs"]
        """})
    ct = sorted((corpus_small / "explicit-le" / "CT").glob("*.dcm"))
    pt = sorted((corpus_small / "explicit-le" / "PT").glob("*.dcm"))
    _send(port, [ct[0], pt[0]])
    index = Index(gw.worker.runtime.config.effective_database_url())
    assert [j.sop_class_uid for j in ForwardQueue(index).list()] == [CT]
    (gw.config_dir / "routes" / "r.toml").write_text(
        '[[rule]]\nname = "pt"\nmatch = { modality = "PT" }\nforward = ["pacs"]\n')
    wait_for(lambda: gw.worker.runtime.generation == 2, what="reload")
    _send(port, [ct[1], pt[1]])
    assert [j.sop_class_uid for j in ForwardQueue(index).list()] == [CT, PT]
    (gw.config_dir / "routes" / "r.toml").write_text(
        '[[rule]]\nname = "pt"\nmatch = { Modalty = "PT" }\nforward = ["pacs"]\n')
    wait_for(lambda: "Modalty" in (gw.worker.last_reload_error or ""), what="rejected reload")
    _send(port, [ct[2], pt[2]])
    assert [j.sop_class_uid for j in ForwardQueue(index).list()] == [CT, PT, PT]
