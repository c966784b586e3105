"""Command start-up (issue 13): building the command line loads every plugin's commands
and nothing of their services, so ``dicom-gateway --help`` and the fixed cost of every
command stay small. Guarded by what is imported, not by timing; the timings are in
bench/RESULTS.md ("Retrieve (issue 13)").

A plugin may name its ``gateway_register_commands`` as an entry point of its own (group
``dicom_gateway.commands``, under the plugin's name): the command line then calls that
and never imports the plugin's module. The built-ins whose modules import pydantic,
SQLAlchemy or pydicom for their services do; their two registrations must agree."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

#: Modules a parser must not need: the DICOM stack, the index, the config models and the
#: service modules of the built-ins that register their commands apart.
HEAVY = ("pynetdicom", "pydicom", "sqlalchemy", "numpy", "pydantic", "gateway.net.commitment",
         "gateway.index.schema", "gateway.config", "gateway_plugins.storage", "gateway_plugins.media",
         "gateway_plugins.prefetch", "gateway_plugins.query_retrieve_keys")

PROBE = """
import json, sys
from gateway.cli import build_parser
build_parser(warn=sys.stderr)
print(json.dumps(sorted(sys.modules)))
"""


def _imported_by_parser(env=None) -> set[str]:
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stderr
    return set(json.loads(run.stdout))


def test_building_the_command_line_imports_no_service_stack():
    loaded = _imported_by_parser()
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    # ...while every built-in plugin was asked for its commands: the light ones by their
    # module, the others by their registrar
    assert {"gateway_plugins.qr_scu", "gateway_plugins.verification", "gateway_plugins.commitment",
            "gateway_plugins.send_command", "gateway_plugins.media_command",
            "gateway_plugins.prefetch_command"} <= loaded


def test_help_lists_every_command_with_its_plugin():
    """`--help` from the registrars is the listing the plugins' own hooks give: the same
    commands under the same plugins, each sub-command with the same options."""
    from gateway.cli import build_parser
    from gateway.cli.registry import CommandRegistry
    from gateway.plugins import PluginHost

    def registry(host: PluginHost) -> tuple[CommandRegistry, dict[str, str]]:
        import argparse

        sub = argparse.ArgumentParser(prog="dicom-gateway").add_subparsers()
        commands = CommandRegistry(sub)
        host.collect("gateway_register_commands", commands, arg="commands")
        assert not host.failed, host.failed
        return commands, {name: p.format_help() for name, p in sub.choices.items()}

    light, light_help = registry(PluginHost().load_commands())
    full, full_help = registry(PluginHost().load(registrations=False))
    assert light.commands == full.commands
    assert light_help == full_help
    owners = {plugin for plugin, _ in light.commands.values()}
    assert {"storage", "media", "prefetch", "qr_scu", "verification", "commitment"} <= owners
    top = build_parser(warn=None).format_help()
    assert "commands from plugin 'storage':\n  archive" in top and "\n  send " in top
    assert "commands from plugin 'qr_scu':\n  find" in top


def test_the_commitment_plugin_states_the_sop_class_it_does_not_import():
    from gateway.net.commitment import STORAGE_COMMITMENT_PUSH_MODEL
    from gateway_plugins.commitment import STORAGE_COMMITMENT_PUSH_MODEL as stated

    assert stated == STORAGE_COMMITMENT_PUSH_MODEL


def _distribution(root: Path, entry_points: str, modules: dict[str, str]) -> dict[str, str]:
    """An installed distribution (``.dist-info`` with these entry points) holding ``modules``."""
    import os

    dist = root / "commands_demo-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: commands-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    return env


HEAVY_SERVICE = """
    raise RuntimeError("the service module was imported by the command line")
"""
REGISTRAR = """
    def add(commands):
        p = commands.add_parser("demo", help="a command registered apart from its service")
        p.set_defaults(func=lambda args: print("demo ran") or 0)
"""


def test_a_third_party_registrar_stands_in_for_its_module(tmp_path):
    """The commands entry point is the plugin's on the command line: its module is not
    imported (here it would raise), its command runs and is attributed to the plugin."""
    env = _distribution(tmp_path, """
        [dicom_gateway]
        demo = demo_service
        [dicom_gateway.commands]
        demo = demo_commands:add
    """, {"demo_service": HEAVY_SERVICE, "demo_commands": REGISTRAR})
    assert "demo_service" not in _imported_by_parser(env)
    top = subprocess.run([sys.executable, "-m", "gateway.cli", "--help"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert top.returncode == 0 and top.stderr == "", top.stderr
    assert "commands from plugin 'demo':\n  demo" in top.stdout
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "demo"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert (run.returncode, run.stdout) == (0, "demo ran\n"), run.stderr
    # the full host (serve, `plugins`) still imports the module: there it fails, named
    listed = subprocess.run([sys.executable, "-m", "gateway.cli", "plugins"], capture_output=True, text=True,
                            timeout=60, env=env)
    assert "the service module was imported by the command line" in listed.stdout


def test_a_broken_registrar_is_named_in_one_line(tmp_path):
    env = _distribution(tmp_path, """
        [dicom_gateway]
        demo = demo_service
        [dicom_gateway.commands]
        demo = demo_commands:missing
    """, {"demo_service": "", "demo_commands": REGISTRAR})
    top = subprocess.run([sys.executable, "-m", "gateway.cli", "--help"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert top.returncode == 0
    assert top.stderr.splitlines() == [
        "dicom-gateway: plugin 'demo' left out: import demo_commands:missing: "
        "AttributeError: module 'demo_commands' has no attribute 'missing'"], top.stderr
    assert "  echo" in top.stdout


def test_a_disabled_plugin_s_command_says_so(tmp_path):
    """Without the plugin host, `find` still honours `[plugins] disable` for its plugin."""
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "gateway.toml").write_text(f'[node]\ndata_dir = "{tmp_path / "d"}"\n[plugins]\ndisable = ["qr_scu"]\n')
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "find", "X@127.0.0.1:1", "--config", str(cfg)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert run.stderr.strip() == "dicom-gateway find: plugin 'qr_scu' is disabled by the config ([plugins] disable)"
