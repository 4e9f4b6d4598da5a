"""The plugin manager: built-ins, entry points, allow and block lists, name clashes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from marketcore import PluginError, get_plugin_manager
from marketcore.cli import main

SINK_PLUGIN = """
from marketcore import hookimpl

class EchoSink:
    name = "echo"
    def __init__(self, options): self.options = options
    async def start(self): pass
    async def publish(self, batch): return ()
    async def close(self): pass

@hookimpl
def marketcore_register_sinks(register):
    register("echo", EchoSink)
"""

CLASHING_PLUGIN = """
from marketcore import hookimpl

@hookimpl
def marketcore_register_sinks(register):
    register("echo", lambda options: None)
"""

BUILTIN_CLASH = """
from marketcore import hookimpl

@hookimpl
def marketcore_register_calculators(register):
    register("health", lambda options: None)
"""

BUILTINS = {
    "builtin.synthetic": "venue: synthetic",
    "builtin.local": "coordinator: local",
    "builtin.stdout": "sink: stdout",
    "builtin.jsonl": "sink: jsonl",
    "builtin.http": "sink: http",
    "builtin.health": "calculator: health",
}


def test_every_builtin_is_listed_with_what_it_registers(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for name, registers in BUILTINS.items():
        assert f"{name}  (marketcore " in out
        block = out.split(f"{name}  (")[1].split("\n\n")[0]
        assert registers in block


def test_builtins_register_through_the_same_registries():
    registries = get_plugin_manager(environ={}, load_entry_points=False).registries
    assert set(registries.venues) == {"synthetic"}
    assert set(registries.coordinators) == {"local"}
    assert set(registries.sinks) == {"stdout", "jsonl", "http"}
    assert set(registries.calculators) == {"health"}
    assert registries.sinks["stdout"].distribution == "marketcore"


def test_installed_plugin_appears_in_marketcore_plugins(install_plugin):
    install_plugin("marketcore-echo", "mc_echo", SINK_PLUGIN)
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from marketcore.cli import main; sys.exit(main(['plugins']))"],
        capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "marketcore-echo  (marketcore-echo 0.1)" in result.stdout
    assert "sink: echo" in result.stdout


def test_two_plugins_with_one_name_fail_naming_both_distributions(install_plugin):
    install_plugin("marketcore-echo", "mc_echo", SINK_PLUGIN)
    install_plugin("other-echo", "mc_other_echo", CLASHING_PLUGIN)
    with pytest.raises(PluginError) as raised:
        get_plugin_manager(environ={})
    message = str(raised.value)
    assert "sink 'echo' is registered twice" in message
    assert "marketcore-echo 0.1" in message and "other-echo 0.1" in message


def test_clash_with_a_builtin_names_marketcore(install_plugin):
    install_plugin("health-clash", "mc_health_clash", BUILTIN_CLASH)
    with pytest.raises(PluginError, match=r"calculator 'health' is registered twice: by marketcore .* and by health-clash 0.1"):
        get_plugin_manager(environ={})


def test_cli_reports_a_clash_in_one_line_and_fails(install_plugin, capsys):
    install_plugin("marketcore-echo", "mc_echo", SINK_PLUGIN)
    install_plugin("other-echo", "mc_other_echo", CLASHING_PLUGIN)
    assert main(["plugins"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: sink 'echo' is registered twice")
    assert err[1].startswith("hint:")


def test_allow_list_loads_only_named_plugins(install_plugin):
    install_plugin("marketcore-echo", "mc_echo", SINK_PLUGIN)
    assert "echo" not in get_plugin_manager(environ={"MARKETCORE_LOAD_PLUGINS": ""}).registries.sinks
    allowed = get_plugin_manager(environ={"MARKETCORE_LOAD_PLUGINS": "marketcore-echo"})
    assert "echo" in allowed.registries.sinks
    assert "stdout" in allowed.registries.sinks  # built-ins are not subject to the allow list


def test_block_list_blocks_installed_and_builtin_plugins(install_plugin):
    install_plugin("marketcore-echo", "mc_echo", SINK_PLUGIN)
    pm = get_plugin_manager(environ={"MARKETCORE_DISABLE_PLUGINS": "marketcore-echo, builtin.stdout"})
    assert set(pm.registries.sinks) == {"jsonl", "http"}


def test_block_list_resolves_a_clash(install_plugin):
    install_plugin("marketcore-echo", "mc_echo", SINK_PLUGIN)
    install_plugin("other-echo", "mc_other_echo", CLASHING_PLUGIN)
    pm = get_plugin_manager(environ={"MARKETCORE_DISABLE_PLUGINS": "other-echo"})
    assert pm.registries.sinks["echo"].distribution == "marketcore-echo"


def test_a_misspelt_hook_is_rejected_by_check_pending(install_plugin):
    install_plugin("typo", "mc_typo", """
        from marketcore import hookimpl

        @hookimpl
        def marketcore_register_venue(register):
            pass
    """)
    with pytest.raises(PluginError, match="marketcore_register_venue"):
        get_plugin_manager(environ={})


def test_a_plugin_that_fails_to_import_is_named(install_plugin):
    install_plugin("broken", "mc_broken", "raise RuntimeError('boom')\n")
    with pytest.raises(PluginError, match="plugin 'broken' from broken failed to load: boom"):
        get_plugin_manager(environ={})


def test_invalid_component_names_and_options_are_rejected(plugin_manager):
    class BadName:
        @staticmethod
        def marketcore_register_sinks(register):
            register("no spaces please", lambda options: None)

    from marketcore import hookimpl

    BadName.marketcore_register_sinks = hookimpl(BadName.marketcore_register_sinks)
    pm = plugin_manager(("bad-name", BadName))
    with pytest.raises(PluginError, match="invalid name 'no spaces please'"):
        pm.registries  # noqa: B018


def test_no_work_at_import_time():
    code = ("import sys, marketcore; "
            "loaded = [m for m in marketcore.DEFAULT_PLUGINS if m in sys.modules]; "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
