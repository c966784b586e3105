"""The repository stands alone: a clone of HEAD alone in an empty folder makes its own test
data with gateway.testing.corpus, byte for byte the same on every run, and its tests run on
it without skipping for want of data. The compiled extension is not in git (*.so): it is
copied from the installed package.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

STO_1 = {  # CONFORMANCE.md STO-1, written out here rather than taken from the generator under test
    "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.20",
    "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.2",
    "1.2.840.10008.5.1.4.1.1.7.4", "1.2.840.10008.5.1.4.1.1.481.3", "1.2.840.10008.5.1.4.1.1.9",
    "1.2.840.113619.4.27",
}
STO_2 = {"implicit": "1.2.840.10008.1.2", "explicit-le": "1.2.840.10008.1.2.1", "explicit-be": "1.2.840.10008.1.2.2"}


def _git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A clone of HEAD, alone in a fresh folder, with the built extension."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.fail(f"{REPO} is not a git checkout (or git is not installed): this test clones it")
    clone = tmp_path_factory.mktemp("standalone") / "clone"
    _git("clone", "--quiet", str(REPO), str(clone))
    import gateway._rust

    shutil.copy2(gateway._rust.__file__, clone / "python" / "gateway")
    return clone


def _run(clone: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Python in the clone, importing the clone's gateway and plugins before the installed ones."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(clone / "python"), str(clone / "plugins")]),
               PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, *args], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_clone_imports_its_own_code(clone):
    root = clone
    out = _run(root, "-c", "import gateway, gateway.testing.corpus as c, gateway_plugins as p; "
                           "print(gateway.__file__); print(c.__file__); print(p.__file__)")
    assert out.returncode == 0, out.stderr
    assert all(line.startswith(str(root)) for line in out.stdout.split()), out.stdout


def test_generator_in_the_clone_is_reproducible_and_complete(clone, tmp_path):
    root = clone
    runs = []
    for n in (1, 2):
        out = tmp_path / f"run{n}"
        res = _run(root, "-m", "gateway.testing.corpus", "--out", str(out), "--profile", "small", "--syntax", "all")
        assert res.returncode == 0, f"generator failed in the clone:\n{res.stderr}"
        runs.append(_tree(out))
    assert runs[0].keys() == runs[1].keys()
    differ = [path for path in runs[0] if runs[0][path] != runs[1][path]]
    assert not differ, f"two runs with the same arguments differ in {differ}"

    manifest = json.loads(runs[0]["manifest.json"].decode("utf-8"))
    files = manifest["files"]
    assert manifest["format"] == "dicom-gateway-corpus/1" and manifest["syntaxes"] == list(STO_2)
    assert {(f["sop_class_uid"], f["transfer_syntax_uid"]) for f in files} == {
        (c, ts) for c in STO_1 for ts in STO_2.values()}, "not every STO-1 class in every STO-2 syntax"
    assert sorted(f["path"] for f in files) == sorted(p for p in runs[0] if p != "manifest.json")
    for f in files:
        data = runs[0][f["path"]]
        assert f["path"].startswith(f["syntax"] + "/") and STO_2[f["syntax"]] == f["transfer_syntax_uid"]
        assert (len(data), hashlib.sha256(data).hexdigest()) == (f["size"], f["sha256"]), f["path"]
    per_syntax = {s: sum(f["syntax"] == s for f in files) for s in STO_2}
    assert per_syntax == dict.fromkeys(STO_2, 23)  # the small profile
    assert len(manifest["patients"]) == 3 and len(manifest["studies"]) == 4


def _pytest(root: Path, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    res = _run(root, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *args, timeout=280)
    return res, res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""


def test_sample_of_the_suite_runs_in_the_clone_without_skips(clone):
    root = clone
    res, summary = _pytest(root, "tests/test_transcode.py", "tests/test_index.py", "-x")
    assert res.returncode == 0 and "passed" in summary and "skipped" not in summary, (
        f"in the clone: {summary}\n"
        f"{res.stdout[-4000:]}\n{res.stderr[-2000:]}")


def test_private_dictionary_check_says_it_did_not_run_without_the_seed_text(clone):
    """The seed text is not in the repository: the staleness check skips, saying where it looked."""
    root = clone
    assert [p.name for p in root.parent.iterdir()] == ["clone"]  # nothing beside it
    res, summary = _pytest(root, "tests/test_storage.py", "-k", "test_private_dictionary_module_is_current")
    assert res.returncode == 0 and summary.startswith("1 skipped"), res.stdout[-3000:]
    assert "seed text is not part of the repository" in res.stdout and "did not run" in res.stdout
