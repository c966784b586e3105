"""Commands from plugins (issue 11 item 1): a third-party distribution on the path
adds a ``dicom-gateway`` subcommand through ``gateway_register_commands``; a name
taken twice, a plugin that does not import and one whose hook raises are each
named in one line while the rest of the command line works."""

from __future__ import annotations

import subprocess
import sys

from conftest import third_party_plugins


def _cli(env, *args):
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env)


HELLO = '''
    from gateway.hookspecs import hookimpl

    @hookimpl
    def gateway_register_commands(commands):
        p = commands.add_parser("hello", help="say hello from a third-party plugin",
                                examples="dicom-gateway hello --name PET")
        p.add_argument("--name", default="world")
        p.set_defaults(func=lambda args: print(f"hello {args.name}") or 3)
'''


def test_hook_register_commands(tmp_path):
    env = third_party_plugins(tmp_path, {"hello": HELLO})
    run = _cli(env, "hello", "--name", "PET")
    assert (run.returncode, run.stdout, run.stderr) == (3, "hello PET\n", "")
    top = _cli(env, "--help")
    assert top.returncode == 0 and top.stderr == ""
    block = top.stdout.split("commands from plugin 'hello':\n", 1)[1]
    assert block.splitlines()[0].split() == ["hello", "say", "hello", "from", "a", "third-party", "plugin"]
    # the built-ins' commands come through the same hook, grouped under their plugin
    assert "commands from plugin 'storage':\n  archive" in top.stdout and "\n  send " in top.stdout
    sub = _cli(env, "hello", "--help")
    assert "examples:\n  dicom-gateway hello --name PET" in sub.stdout


def test_a_command_name_taken_twice_is_refused_naming_both(tmp_path):
    # "aaa" sorts before the built-ins: the built-in keeps its name all the same
    env = third_party_plugins(tmp_path, {"aaa": HELLO.replace('"hello"', '"send"')})
    top = _cli(env, "--help")
    assert top.returncode == 0
    assert top.stderr.splitlines() == [
        "dicom-gateway: plugin 'aaa' left out: gateway_register_commands: "
        "CommandTaken: command 'send' is already added by 'storage'"]
    assert "commands from plugin 'aaa'" not in top.stdout
    send = _cli(env, "send", "--help")
    assert send.returncode == 0 and "usage: dicom-gateway send [-h] [--study UID]" in send.stdout


def test_a_broken_plugin_is_named_in_one_line_and_the_rest_works(tmp_path):
    env = third_party_plugins(tmp_path, {
        "noimport": "import module_that_is_not_installed\n",
        "raises": '''
            from gateway.hookspecs import hookimpl

            @hookimpl
            def gateway_register_commands(commands):
                commands.add_parser("half", help="added before the hook failed")
                raise RuntimeError("settings file missing")
        ''',
        "hello": HELLO,
    })
    top = _cli(env, "--help")
    assert top.returncode == 0, top.stderr
    assert top.stderr.splitlines() == [
        "dicom-gateway: plugin 'noimport' left out: import noimport_plugin: "
        "ModuleNotFoundError: No module named 'module_that_is_not_installed'",
        "dicom-gateway: plugin 'raises' left out: gateway_register_commands: RuntimeError: settings file missing",
    ]
    assert "  hello" in top.stdout and "  echo" in top.stdout
    assert "half" not in top.stdout  # what the failing hook added is taken back
    half = _cli(env, "half")
    assert half.returncode == 2 and "invalid choice: 'half'" in half.stderr
    hello = _cli(env, "hello")
    assert hello.returncode == 3 and hello.stdout == "hello world\n"
    # `plugins` lists them as failed, too, with the same reason
    listed = _cli(env, "plugins")
    assert "noimport" in listed.stdout and "module_that_is_not_installed" in listed.stdout
