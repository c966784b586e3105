"""What the commands print for people: counted nouns, where a read-only command
looked, and that it creates nothing there (issue: a newcomer's first hour)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import write_cts

from gateway.terminal import plural


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_plural():
    assert [plural(n, "instance") for n in (0, 1, 2)] == ["0 instances", "1 instance", "2 instances"]
    assert plural(1, "study") == "1 study" and plural(3, "study") == "3 studies"
    assert plural(1, "series") == "1 series" and plural(2, "series") == "2 series"


def test_read_only_commands_in_an_empty_folder_create_nothing(tmp_path):
    """`ls`, `queue ls` and `commit ls` where nothing was ever stored: exit 1, say which
    data directory they looked in, and leave no ./gateway-data behind."""
    for command in (["ls"], ["queue", "ls"], ["commit", "ls"]):
        run = _cli(*command, cwd=tmp_path)
        assert run.returncode == 1, (command, run.stdout, run.stderr)
        expected = tmp_path / "gateway-data" / "index.db"
        assert f"no index at {expected}" in run.stderr and "--data-dir" in run.stderr, run.stderr
        assert not (tmp_path / "gateway-data").exists(), command


def test_ls_counts_and_says_which_index(tmp_path):
    """One instance reads '1 instance'; the summary names the index file it read."""
    data = tmp_path / "data"
    write_cts(tmp_path / "in", 1, patient_id="ONE")
    imported = _cli("import", str(tmp_path / "in"), "--data-dir", str(data), cwd=tmp_path)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    run = _cli("ls", "--data-dir", str(data), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("ONE") and lines[0].endswith("1 study")
    assert "1 series, 1 instance " in lines[1] and "1 instance " in lines[2]
    assert lines[-1] == f"1 patient, 1 study in {(data / 'index.db').resolve()}"


def test_opening_the_index_logs_only_schema_changes(tmp_path):
    """Alembic's plugin set-up lines are not repeated in every process; a migration is still logged."""
    import io

    from gateway import logs
    from gateway.index import Index

    stream = io.StringIO()
    logs.setup("INFO", "text", stream=stream)
    try:
        Index(tmp_path / "index.db").close()
        Index(tmp_path / "index.db").close()  # already at head: nothing to say
    finally:
        logs.setup("WARNING", "text")
    lines = stream.getvalue().splitlines()
    assert lines and all("Running upgrade" in line for line in lines), lines
    assert sum("-> 0001" in line for line in lines) == 1


def test_readme_lists_every_command():
    """Every subcommand `dicom-gateway --help` shows has a line in the README's command list."""
    import argparse

    from gateway.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [name for name in sub.choices if f"dicom-gateway {name}" not in readme]
    assert not missing, f"README.md does not show: {missing}"


def test_serve_logs_one_line_per_stored_instance(gateway_process, tmp_path):
    """An info line per stored instance, scoped to its association: calling AE, SOP class,
    UIDs, bytes and milliseconds; and no Alembic set-up noise in the log."""
    import json

    from conftest import basic_toml, dcmtk, free_port

    port = free_port()
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "gateway.toml").write_text(basic_toml(port, tmp_path / "data").replace('log_format = "text"',
                                                                                 'log_format = "json"'))
    files = write_cts(tmp_path / "in", 2, patient_id="LOG-1")
    gp = gateway_process(["serve", "--config", str(cfg)], port)
    gp.wait_for_output("gateway ready")
    subprocess.run([dcmtk("storescu"), "-aet", "MODALITY1", "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port),
                    *map(str, files)], check=True, capture_output=True, timeout=60)
    gp.wait_for_output('"instance stored"')
    assert gp.stop() == 0
    events = [json.loads(line) for line in gp.output().splitlines() if line.startswith("{")]
    stored = [e for e in events if e["event"] == "instance stored"]
    assert len(stored) == 2
    assert {e["sop_instance_uid"] for e in stored} == {p.stem for p in files}
    for e in stored:
        assert e["calling_ae"] == "MODALITY1" and e["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.2"
        assert e["bytes"] > 128 and e["ms"] > 0 and e["assoc"]
    assert len({e["assoc"] for e in stored}) == 1  # one association, named on each line
    assert not any("setup plugin" in e["event"] for e in events)


def test_listening_socket_backlog_is_the_system_maximum(inprocess_gateway, tmp_path):
    """A burst of reconnecting modalities must not wait for SYN retries: the DICOM port
    listens with the system's maximum backlog, not socketserver's 5 (`ss` shows it as Send-Q)."""
    import shutil

    from conftest import basic_toml, free_port, missing_component

    if not shutil.which("ss"):
        missing_component("ss (iproute2) not installed")
    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "data"), sender=False)
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    backlogs = {int(line.split()[2]) for line in out.splitlines() if line.strip()}
    assert backlogs == {somaxconn}, out
