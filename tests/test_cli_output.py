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
