"""Hot reload of the config directory (DESIGN §4, STYLE 12): debounce, digest skip,
validation before anyone sees it, last good config kept on error. (The gateway
end-to-end reload, ports and all, is tests/test_reload.py.)"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from gateway.config.reload import ConfigHolder, ConfigWatcher


class Events:
    def __init__(self) -> None:
        self.changes: list = []
        self.errors: list = []
        self.seen = threading.Event()

    def on_change(self, config) -> None:
        self.changes.append(config)
        self.seen.set()

    def on_error(self, exc) -> None:
        self.errors.append(exc)
        self.seen.set()

    def wait(self, timeout: float = 5.0) -> bool:
        ok = self.seen.wait(timeout)
        self.seen.clear()
        return ok


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "gateway.toml").write_text('[node]\nae_title = "A"\n')
    return tmp_path


def test_watcher_change_error_and_digest_skip(root):
    ev = Events()
    w = ConfigWatcher(root, ev.on_change, ev.on_error, debounce=0.05).start()
    try:
        (root / "gateway.toml").write_text('[node]\nae_title = "B"\n')
        assert ev.wait() and ev.changes[-1].node.ae_title == "B"
        # A new file in a subfolder is seen too (recursive).
        (root / "remotes").mkdir()
        (root / "remotes" / "pacs.toml").write_text('ae_title = "PACS"\nhost = "h"\nport = 104\n')
        assert ev.wait() and "pacs" in ev.changes[-1].remotes
        # Broken: on_error with file:line, no on_change.
        (root / "gateway.toml").write_text("[node\n")
        assert ev.wait() and isinstance(ev.errors[-1], ConfigError)
        assert str(ev.errors[-1]).startswith("gateway.toml:1: TOML syntax error")
        assert len(ev.changes) == 2
        # Same content again: events arrive but the digest is unchanged; nothing is reported.
        (root / "gateway.toml").write_text("[node\n")
        assert not ev.wait(0.4)
        assert w.check() is False
        # Non-TOML files don't even trigger a check.
        (root / "notes.txt").write_text("hello")
        assert not ev.wait(0.3)
        (root / "gateway.toml").write_text('[node]\nae_title = "C"\n')
        assert ev.wait() and ev.changes[-1].node.ae_title == "C"
        assert (len(ev.changes), len(ev.errors)) == (3, 1)
    finally:
        w.stop()


def test_debounce_collapses_a_burst(root):
    ev = Events()
    w = ConfigWatcher(root, ev.on_change, ev.on_error, debounce=0.3).start()
    try:
        for i in range(5):
            (root / "gateway.toml").write_text(f'[node]\nae_title = "T{i}"\n')
        assert ev.wait()
        assert not ev.wait(0.6)
        assert [c.node.ae_title for c in ev.changes] == ["T4"]
    finally:
        w.stop()


def test_holder_keeps_last_good_and_counts(root):
    holder = ConfigHolder(load_config(root))
    first = holder.current
    provisioned = []

    def provision(new):
        if new.node.ae_title == "REFUSE":
            raise OSError("port in use")
        provisioned.append(new.node.ae_title)

    w = holder.watch(root, provision=provision, debounce=0.05)
    w.check()  # nothing changed since load: no-op
    assert holder.generation == 1 and holder.reloads_ok == 0
    try:
        (root / "gateway.toml").write_text('[node]\nae_title = "B"\n')
        assert _wait(lambda: holder.generation == 2)
        assert holder.current.node.ae_title == "B" and holder.reloads_ok == 1 and holder.last_reload_ok_ts
        assert first.node.ae_title == "A"  # the old reference is untouched (associations drain on it)
        (root / "gateway.toml").write_text('[node]\nae_titel = "C"\n')
        assert _wait(lambda: holder.reloads_failed == 1)
        assert "gateway.toml:2: key 'node.ae_titel'" in holder.last_error
        assert holder.current.node.ae_title == "B" and holder.generation == 2
        (root / "gateway.toml").write_text('[node]\nae_title = "REFUSE"\n')
        assert _wait(lambda: holder.reloads_failed == 2)
        assert holder.last_error == "port in use" and holder.current.node.ae_title == "B"
        (root / "gateway.toml").write_text('[node]\nae_title = "D"\n')
        assert _wait(lambda: holder.generation == 3)
        assert holder.last_error is None and provisioned == ["B", "D"]
    finally:
        w.stop()


def test_swap_is_a_reference_swap():
    a, b = load_config(None), load_config(None, {"ae_title": "B"})
    holder = ConfigHolder(a)
    assert holder.swap(b) is a and holder.current is b and holder.generation == 2
    holder.fail(ValueError("x"))
    assert holder.current is b and holder.reloads_failed == 1 and holder.last_error == "x"


def _wait(predicate, timeout: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_data_directory_inside_the_config_directory_is_not_watched(root):
    """`serve --config .` with the default ./gateway-data: stored files under the config
    directory cause no config check at all; a config subdirectory made after start
    (mkdir remotes) is watched from then on."""
    ev = Events()
    w = ConfigWatcher(root, ev.on_change, ev.on_error, debounce=0.05)
    checks = []
    original = w.check
    w.check = lambda: checks.append(1) or original()
    w.start()
    try:
        archive = root / "gateway-data" / "archive" / "1.2.3" / "1.2.3.4"
        archive.mkdir(parents=True)
        for i in range(50):
            (archive / f"{i}.dcm").write_bytes(b"x" * 1000)
            (archive / f"{i}.toml").write_text("not config: below the config subdirectories")
        (root / "remotes").mkdir()
        (root / "remotes" / "pacs.toml").write_text('ae_title = "PACS"\nhost = "127.0.0.1"\nport = 104\n')
        assert ev.wait(), "a remote in a subdirectory made after start was not seen"
        assert [list(c.remotes) for c in ev.changes] == [["pacs"]]
        assert len(checks) <= 2  # the mkdir and the new file, debounced; nothing for the archive
    finally:
        w.stop()
