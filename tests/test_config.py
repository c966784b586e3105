"""The config directory (DESIGN §4, CFG-*, STO-9..11): defaults, a full round
trip, every error naming file, line and key (STYLE 13), the example directory."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from conftest import REPO
from gateway.config import ConfigError, ConfigIssue, check, check_command, load_config
from gateway.config.loader import digest_of

EXAMPLE = REPO / "examples" / "config"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def problems(root: Path, overrides: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(root, overrides)
    assert str(info.value) == "\n".join(str(i) for i in info.value.issues)
    return str(info.value)


# -- defaults and round trip ----------------------------------------------------

def test_embedded_defaults_need_no_files():
    c = load_config(None)
    assert c.source_dir is None and c.digest
    assert c.node.ae_title == "DICOM_GATEWAY" and c.node.data_dir == "./gateway-data"
    assert [(l.port, l.bind, l.ae_titles) for l in c.listeners] == [(11112, "0.0.0.0", ["DICOM_GATEWAY"])]
    assert c.node.max_associations == 0 and c.node.max_pdu == 65536  # STO-9, STO-10
    assert c.node.implementation_class_uid == "1.2.826.0.1.3680043.10.1472.1"  # STO-11
    assert c.node.implementation_version_name == "DICOM_GW_010"
    assert c.effective_database_url().startswith("sqlite:///")
    assert c.effective_database_url().endswith("gateway-data/index.db")
    assert c.effective_workers() >= 1
    assert c.http.enabled and (c.http.bind, c.http.port) == ("127.0.0.1", 8104)
    assert c.remotes == {} and c.routes == [] and c.printers == {} and c.disabled_plugins == frozenset()
    assert c.all_ae_titles() == {"DICOM_GATEWAY"}


def test_directory_without_gateway_toml_uses_node_defaults(tmp_path):
    c = load_config(write(tmp_path, {"remotes/pacs.toml": 'ae_title = "PACS"\nhost = "h"\nport = 104\n'}))
    assert c.node.ae_title == "DICOM_GATEWAY" and c.listeners[0].port == 11112
    assert c.remotes["pacs"].max_pdu == 16384 and c.calling_ae_title_for("pacs") == "DICOM_GATEWAY"
    assert c.source_dir == tmp_path


def test_missing_directory_is_an_error(tmp_path):
    assert "config directory does not exist" in problems(tmp_path / "nope")


def test_full_directory_round_trip(tmp_path):
    root = write(tmp_path, {
        "gateway.toml": """
[node]
ae_title = "GW"
data_dir = "/srv/gw"
database_url = "postgresql+psycopg://gw@db/gw"
workers = 3
implementation_class_uid = "1.2.3.4"
implementation_version_name = "V1"
max_associations = 4
max_pdu = 16384
max_message = 100000000
spool_threshold = 0
acse_timeout = 5
dimse_timeout = 6.5
network_timeout = 7
receive_path = "pynetdicom"
log_level = "DEBUG"
log_format = "text"

[[listeners]]
port = 104
bind = "127.0.0.1"
ae_titles = ["IMPORT", "GW"]
max_associations = 2

[[listeners]]
port = 11112

[http]
enabled = false
port = 9000

[plugins]
disable = ["storage"]
""",
        "remotes/pacs.toml": """
ae_title = "PACS"
host = "10.0.0.5"
port = 104
calling_ae_title = "GW_OUT"
max_pdu = 32768
association_timeout = 10
dimse_timeout = 20
session_timeout = 30
request_storage_commitment = true
commitment_ae_title = "PACS_SC"
commitment_host = "10.0.0.6"
commitment_port = 105
treat_as_archive = true
multiframe_sc_to_single = true
color_sc = "both"
transfer_syntaxes = ["1.2.840.10008.1.2.1"]
allow_query = false
allow_move = false
allow_store = true
""",
        "remotes/ws.toml": 'ae_title = "WS"\nhost = "ws"\nport = 4006\n',
        "routes/a.toml": '[[rule]]\nname = "one"\nmatch = { modality = "CT" }\nforward = ["pacs"]\n'
                         '\n[[rule]]\nname = "two"\naction = "drop"\n',
        "routes/b.toml": '[[rule]]\nname = "three"\naction = "hold"\nforward = ["pacs"]\n',
        "printers/film.toml": 'ae_title = "PRINTER"\nhost = "p"\nport = 104\nmedium_type = "BLUE FILM"\n',
        "plugins/verification.toml": "enabled = false\n",
        "plugins/storage.toml": 'duplicate_policy = "reject"\nenabled = true\n',
        "README.txt": "not TOML: ignored",
        "notes/x.toml": "not one of the four folders: ignored",
    })
    c = load_config(root)
    n = c.node
    assert (n.ae_title, n.data_dir, n.workers, n.max_associations, n.max_pdu) == ("GW", "/srv/gw", 3, 4, 16384)
    assert (n.implementation_class_uid, n.implementation_version_name) == ("1.2.3.4", "V1")
    assert (n.max_message, n.spool_threshold, n.acse_timeout, n.dimse_timeout, n.network_timeout) == \
        (100000000, 0, 5.0, 6.5, 7.0)
    assert (n.receive_path, n.log_level, n.log_format) == ("pynetdicom", "DEBUG", "text")
    assert c.effective_database_url() == "postgresql+psycopg://gw@db/gw" and c.effective_workers() == 3
    assert [(l.port, l.bind, l.ae_titles, l.max_associations) for l in c.listeners] == \
        [(104, "127.0.0.1", ["IMPORT", "GW"], 2), (11112, "0.0.0.0", ["GW"], 0)]
    assert c.all_ae_titles() == {"GW", "IMPORT"} and c.listener_for_port(11112).ae_titles == ["GW"]
    assert not c.http.enabled and c.http.port == 9000
    p = c.remotes["pacs"]
    assert (p.ae_title, p.host, p.port, p.calling_ae_title, p.max_pdu) == ("PACS", "10.0.0.5", 104, "GW_OUT", 32768)
    assert (p.association_timeout, p.dimse_timeout, p.session_timeout) == (10, 20, 30)
    assert p.request_storage_commitment and (p.commitment_ae_title, p.commitment_host, p.commitment_port) == \
        ("PACS_SC", "10.0.0.6", 105)
    assert p.treat_as_archive and p.multiframe_sc_to_single and p.color_sc == "both"
    assert p.transfer_syntaxes == ["1.2.840.10008.1.2.1"]
    assert (p.allow_query, p.allow_move, p.allow_store) == (False, False, True)
    assert c.calling_ae_title_for("ws") == "GW"
    assert [(r.file, r.line, r.name) for r in c.routes] == \
        [("routes/a.toml", 1, "one"), ("routes/a.toml", 6, "two"), ("routes/b.toml", 1, "three")]
    assert c.routes[0].body == {"name": "one", "match": {"modality": "CT"}, "forward": ["pacs"]}
    assert c.printers["film"].body["medium_type"] == "BLUE FILM"
    assert c.disabled_plugins == {"storage", "verification"}
    assert c.plugin_settings("storage") == {"duplicate_policy": "reject"}
    assert c.plugin_settings("absent") == {}
    # Frozen: running associations can keep a reference safely.
    with pytest.raises(pydantic.ValidationError):
        c.node.ae_title = "X"  # type: ignore[misc]
    # Digest: stable, over content, equal to the cheap digest_of the watcher uses.
    assert c.digest == load_config(root).digest == digest_of(root)
    (root / "routes" / "b.toml").write_text('[[rule]]\nname = "three"\naction = "drop"\n')
    assert load_config(root).digest != c.digest


def test_cli_overrides():
    c = load_config(None, {"port": 4242, "ae_title": "OTHER", "data_dir": "/tmp/x", "workers": 3})
    assert c.listeners[0].port == 4242 and c.listeners[0].ae_titles == ["OTHER"]
    assert c.node.ae_title == "OTHER" and c.node.data_dir == "/tmp/x" and c.effective_workers() == 3


def test_cli_overrides_on_a_directory(tmp_path):
    root = write(tmp_path, {"gateway.toml": '[[listeners]]\nport = 1000\n\n[[listeners]]\nport = 1001\n'
                                            'ae_titles = ["KEEP"]\n'})
    c = load_config(root, {"port": 2000, "ae_title": "NEW"})
    assert [(l.port, l.ae_titles) for l in c.listeners] == [(2000, ["NEW"]), (1001, ["KEEP"])]
    assert (root / "gateway.toml").read_text().count("1000") == 1  # the file is untouched
    text = problems(root, {"ae_title": "BAD\\AE", "port": 0})
    assert "<command line>: key '--ae-title'" in text and "<command line>: key '--port'" in text


def test_example_directory_passes_check(capsys):
    assert check(EXAMPLE) == []
    assert check_command(EXAMPLE) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 2 remotes, 3 routes, 1 listeners")
    c = load_config(EXAMPLE)
    assert c.remotes["pacs"].port == 104 and c.routes[0].name == "pet-ct-to-pacs"
    assert "verification" in c.plugin_files and "verification" not in c.disabled_plugins
    assert c.plugin_settings("storage")["duplicate_policy"] == "overwrite"
    for name in ("gateway.toml", "remotes/pacs.toml", "routes/pet-ct.toml", "plugins/verification.toml"):
        assert (EXAMPLE / name).is_file()


def test_check_command_lists_problems(tmp_path, capsys):
    root = write(tmp_path, {"gateway.toml": "[node]\nworkers = -1\n"})
    assert check(root) == ["gateway.toml:2: key 'node.workers': Input should be greater than or equal to 0, got -1"]
    assert check_command(root) == 1
    out = capsys.readouterr().out
    assert "1 problem(s)" in out and "gateway.toml:2: key 'node.workers'" in out


def test_every_documented_key_is_a_model_field():
    """docs/configuration.md and the models agree (a renamed key would break operators)."""
    from gateway.config.models import Forwarding, Http, Listener, Node, Remote
    from gateway.routing import RouteRule

    doc = (REPO / "docs" / "configuration.md").read_text()
    for model in (Node, Listener, Http, Remote, Forwarding, RouteRule):
        for field in model.model_fields:
            assert f"`{field}`" in doc, f"{model.__name__}.{field} is not documented"


# -- errors: file, line, key, what was expected ---------------------------------------

def test_issue_rendering():
    assert str(ConfigIssue(Path("remotes/pacs.toml"), 4, "port", "Input should be a valid integer, got 'abc'")) == \
        "remotes/pacs.toml:4: key 'port': Input should be a valid integer, got 'abc'"
    assert str(ConfigIssue(Path("gateway.toml"), None, "", "x")) == "gateway.toml: x"


def test_typo_key_suggests_the_right_one(tmp_path):
    text = problems(write(tmp_path, {
        "gateway.toml": '[node]\nae_title = "GW"\nworkres = 2\n\n[[listeners]]\nport = 1\n\n[[listeners]]\n'
                        'port = 2\n# comment\nae_title = ["X"]\n\n[htp]\nport = 1\n',
        "remotes/pacs.toml": 'ae_title = "PACS"\nhost = "h"\nport = 104\n\nmax_pud = 1\n',
    }))
    assert "gateway.toml:3: key 'node.workres': unknown key; did you mean 'workers'? expected one of: ae_title," in text
    assert "gateway.toml:11: key 'listeners[1].ae_title': unknown key; did you mean 'ae_titles'?" in text
    assert "gateway.toml:13: key 'htp': unknown key; did you mean 'http'?" in text
    assert "remotes/pacs.toml:5: key 'max_pud': unknown key; did you mean 'max_pdu'?" in text


def test_bad_types_and_values(tmp_path):
    text = problems(write(tmp_path, {
        "gateway.toml": '[node]\nworkers = "many"\nmax_pdu = 100\nlog_format = "xml"\n'
                        'implementation_class_uid = "1.2.03"\nimplementation_version_name = "WAY_TOO_LONG_NAME_"\n'
                        '[http]\nenabled = "maybe"\n',
        "remotes/pacs.toml": 'ae_title = "PACS"\nhost = "h"\n\nport = "abc"\ncolor_sc = "grey"\n'
                             'transfer_syntaxes = [\n  "1.2.840.10008.1.2.1",\n  "not-a-uid",\n]\n',
    }))
    assert "gateway.toml:2: key 'node.workers': Input should be a valid integer, got 'many'" in text
    assert "gateway.toml:3: key 'node.max_pdu': max_pdu is 0 (unlimited) or at least 1024 bytes, got 100" in text
    assert "gateway.toml:4: key 'node.log_format': Input should be 'json' or 'text', got 'xml'" in text
    assert "gateway.toml:5: key 'node.implementation_class_uid': a UID is up to 64 digits and dots" in text
    assert "gateway.toml:6: key 'node.implementation_version_name': String should have at most 16 characters" in text
    assert "gateway.toml:8: key 'http.enabled': Input should be a valid boolean, got 'maybe'" in text
    assert "remotes/pacs.toml:4: key 'port': Input should be a valid integer, got 'abc'" in text
    assert "remotes/pacs.toml:5: key 'color_sc': Input should be 'color', 'grayscale' or 'both', got 'grey'" in text
    assert "remotes/pacs.toml:8: key 'transfer_syntaxes[1]': a UID" in text


@pytest.mark.parametrize("title, why", [
    ('"THIS_TITLE_IS_TOO_LONG"', "1 to 16 characters, got 22"),
    ('""', "1 to 16 characters, got 0"),
    ('"    "', "cannot be all spaces"),
    ('"A\\\\B"', "no backslash"),
    ('"A\\tB"', "printable ASCII"),
    ('"ÄÖ"', "printable ASCII"),
])
def test_bad_ae_titles(tmp_path, title, why):
    text = problems(write(tmp_path, {
        "gateway.toml": f'[node]\nae_title = {title}\n\n[[listeners]]\nport = 1\nae_titles = ["OK", {title}]\n',
        "remotes/r.toml": f'host = "h"\nport = 1\nae_title = {title}\n',
    }))
    assert "gateway.toml:2: key 'node.ae_title': an AE title" in text and why in text
    assert "gateway.toml:6: key 'listeners[0].ae_titles[1]': an AE title" in text
    assert "remotes/r.toml:3: key 'ae_title': an AE title" in text


def test_duplicate_ports(tmp_path):
    text = problems(write(tmp_path, {
        "gateway.toml": "[[listeners]]\nport = 5\n[[listeners]]\nport = 6\n[[listeners]]\nport = 5\n"
                        "[http]\nport = 6\n"}))
    assert "gateway.toml:6: key 'listeners[2].port': port 5 is already used by listeners[0]" in text
    assert "gateway.toml:8: key 'http.port': port 6 is already used by listeners[1]" in text
    # A disabled HTTP endpoint may share the number.
    load_config(write(tmp_path / "b", {"gateway.toml": "[[listeners]]\nport = 6\n[http]\nenabled = false\nport = 6\n"}))


def test_toml_syntax_errors_name_the_line(tmp_path):
    text = problems(write(tmp_path, {
        "gateway.toml": "[node]\n\nae_title = \n",
        "remotes/pacs.toml": 'ae_title = "PACS"\nhost = "h\nport = 1\n',
    }))
    assert "gateway.toml:3: TOML syntax error: Invalid value (column 12)" in text
    assert "remotes/pacs.toml:2: TOML syntax error" in text


def test_missing_required_remote_keys_and_duplicate_names(tmp_path):
    text = problems(write(tmp_path, {
        "remotes/pacs.toml": '# no AE title\nhost = "h"\n',
        "remotes/PACS.toml": 'ae_title = "P"\nhost = "h"\nport = 1\n',
        "remotes/table.toml": '[ae_title]\nx = 1\n',
    }))
    assert "remotes/pacs.toml: key 'ae_title': required key is missing" in text
    assert "remotes/pacs.toml: key 'port': required key is missing" in text
    assert "remote 'pacs' is also defined in remotes/PACS.toml (remote names ignore case)" in text
    assert "remotes/table.toml:1: key 'ae_title': Input should be a valid string" in text


def test_route_and_plugin_file_errors(tmp_path):
    text = problems(write(tmp_path, {
        "routes/a.toml": '[[rule]]\nname = "x"\n\n[[rule]]\nforward = ["p"]\n',
        "routes/b.toml": '[[rule]]\n\nname = "x"\n[[rule]]\nname = 3\n\n[other]\n',
        "plugins/storage.toml": "enabled = 'no'\n",
        "printers/p.toml": "medium_type = \n",
    }))
    assert "routes/a.toml:4: key 'rule[1].name': every rule needs a name" in text
    assert "routes/b.toml:3: key 'rule[0].name': rule 'x' is also defined in routes/a.toml" in text
    assert "routes/b.toml:5: key 'rule[1].name': every rule needs a name (a non-empty string, " \
           "unique across routes/), got 3" in text
    assert "routes/b.toml:7: key 'other': unknown key: a routes file holds [[rule]] tables" in text
    assert "plugins/storage.toml:1: key 'enabled': must be true or false, got 'no'" in text
    assert "printers/p.toml:1: TOML syntax error" in text


def test_stray_top_level_toml_is_an_error(tmp_path):
    text = problems(write(tmp_path, {"gateway.toml": "", "pacs.toml": "", "gatway.toml": ""}))
    assert "pacs.toml: unknown config file: the top level holds gateway.toml" in text
    assert "gatway.toml: unknown config file" in text


def test_all_problems_reported_at_once(tmp_path):
    root = write(tmp_path, {"gateway.toml": "[node]\nworkers = -1\nmax_pdu = 1\n",
                            "remotes/a.toml": "port = 0\n", "routes/r.toml": "[[rule]]\n"})
    with pytest.raises(ConfigError) as info:
        load_config(root)
    files = {i.file.as_posix() for i in info.value.issues}
    assert files == {"gateway.toml", "remotes/a.toml", "routes/r.toml"} and len(info.value.issues) >= 5
    assert all(isinstance(i.file, Path) for i in info.value.issues)
