"""The config directory (DESIGN §4): defaults, validation with file:line:key, the example."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO
from gateway.config import ConfigError, check_command, load_config
from gateway.config.locate import key_lines, line_of


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def issues(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(root)
    return [str(i) for i in info.value.issues]


def test_embedded_defaults():
    c = load_config(None)
    assert c.node.ae_title == "DICOM_GATEWAY"
    assert [(l.port, l.ae_titles) for l in c.listeners] == [(11112, ["DICOM_GATEWAY"])]
    assert c.effective_database_url().endswith("gateway-data/index.db")


def test_overrides_from_cli():
    c = load_config(None, {"port": 4242, "ae_title": "OTHER", "data_dir": "/tmp/x", "workers": 3})
    assert c.listeners[0].port == 4242 and c.listeners[0].ae_titles == ["OTHER"]
    assert c.node.data_dir == "/tmp/x" and c.effective_workers() == 3


def test_example_directory_is_valid(capsys):
    assert check_command(REPO / "examples" / "config") == 0
    assert "OK" in capsys.readouterr().out
    c = load_config(REPO / "examples" / "config")
    assert c.remotes["pacs"].port == 104 and c.routes[0].name == "pet-ct-to-pacs"
    assert c.plugin_settings("storage")["duplicate_policy"] == "overwrite"


def test_errors_name_file_line_and_key(tmp_path):
    found = issues(write(tmp_path, {
        "gateway.toml": '[node]\nae_title = "OK"\nworkers = "many"\nmax_pdu = 100\n\n[[listeners]]\nport = 104\n\n'
                        '[[listeners]]\nport = 104\nae_titles = ["THIS_TITLE_IS_TOO_LONG"]\ntypo_key = 1\n',
        "remotes/pacs.toml": 'ae_title = "PACS"\nhost = "h"\nport = "abc"\n',
        "remotes/PACS2.toml": 'host = "h"\nport = 1\n',
        "routes/a.toml": '[[rule]]\nname = "x"\n[[rule]]\nname = "x"\n',
    }))
    text = "\n".join(found)
    assert "gateway.toml:3: key 'node.workers'" in text
    assert "gateway.toml:4: key 'node.max_pdu'" in text and "1024" in text
    assert "gateway.toml:11: key 'listeners[1].ae_titles[0]'" in text and "1 to 16" in text
    assert "gateway.toml:12: key 'listeners[1].typo_key': unknown key" in text
    assert "remotes/pacs.toml:3: key 'port'" in text and "'abc'" in text
    assert "remotes/PACS2.toml" in text and "key 'ae_title': required key is missing" in text
    assert "routes/a.toml:3: key 'rule[1].name'" in text and "also defined" in text


def test_duplicate_ports_and_syntax_errors(tmp_path):
    text = "\n".join(issues(write(tmp_path / "a", {
        "gateway.toml": "[[listeners]]\nport = 5\n[[listeners]]\nport = 5\n"})))
    assert "gateway.toml:4: key 'listeners[1].port': port 5 is already used" in text
    text = "\n".join(issues(write(tmp_path / "b", {"gateway.toml": "[node]\nae_title = \n"})))
    assert text.startswith("gateway.toml:2: TOML syntax error")
    text = "\n".join(issues(write(tmp_path / "c", {"gateway.toml": "", "pacs.toml": ""})))
    assert "pacs.toml: unknown config file" in text


def test_plugin_files_enable_and_settings(tmp_path):
    c = load_config(write(tmp_path, {"plugins/verification.toml": "enabled = false\n",
                                     "plugins/storage.toml": 'duplicate_policy = "reject"\n'}))
    assert "verification" in c.disabled_plugins
    assert c.plugin_settings("storage") == {"duplicate_policy": "reject"}


def test_locator_handles_tables_arrays_and_inline_tables():
    lines = key_lines('a = 1\n[node]\nx = 2\n[[l]]\np = 1\n[[l]]\np = 2\nm = { k = 1, j = "v" }\n"q.z" = 3\n')
    assert line_of(lines, ("a",)) == 1 and line_of(lines, ("node", "x")) == 3
    assert line_of(lines, ("l", 1, "p")) == 7 and line_of(lines, ("l", 1, "m", "j")) == 8
    assert line_of(lines, ("l", 1, "q.z")) == 9 and line_of(lines, ("l", 0, "nope")) == 4


def test_watcher_reloads_and_reports_errors(tmp_path):
    import threading

    from gateway.config.reload import ConfigWatcher

    root = write(tmp_path, {"gateway.toml": "[node]\nae_title = \"A\"\n"})
    changes, errors = [], []
    done = threading.Event()
    w = ConfigWatcher(root, lambda c: (changes.append(c), done.set()), lambda e: (errors.append(e), done.set()),
                      debounce=0.1).start()
    try:
        (root / "gateway.toml").write_text("[node]\nae_title = \"B\"\n")
        assert done.wait(10) and changes[-1].node.ae_title == "B"
        done.clear()
        (root / "gateway.toml").write_text("[node\n")
        assert done.wait(10) and "gateway.toml:1" in str(errors[-1])
        done.clear()
        (root / "gateway.toml").write_text("[node\n")  # same content: no new event handled
        assert not done.wait(0.5)
    finally:
        w.stop()
