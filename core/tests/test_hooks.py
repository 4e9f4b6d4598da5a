"""Every hook, exercised through a real node: registration and lifecycle."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import ClassVar

import attrs
from marketcore import Cycle, Needs, WriterToken, hookimpl
from marketcore.testing import make_plugin_manager, replay_reports

PROFILE = """
[node]
symbols = ["BTCUSDT", "ETHUSDT"]
[venue]
use = "replayed"
[coordinator]
use = "half"
[pipeline.fast]
period_ms = 250
calculators = ["mid", "health"]
[[sink]]
use = "memory"
label = "m1"
[calculators.mid]
scale = 2.0
"""


@attrs.frozen
class MidOptions:
    scale: float = 1.0


class MidCalculator:
    name = "mid"
    cycle = Cycle.FAST
    sections = ("scaled_mid",)
    needs = Needs()

    def __init__(self, options: MidOptions) -> None:
        self.scale = options.scale

    def compute(self, state, ctx):
        bid, ask = state.book.best_bid(), state.book.best_ask()
        return {"scaled_mid": {"value": (bid[0] + ask[0]) / 2 * self.scale}}


class ReplayedVenue:
    """A venue replaying the synthetic generator, to prove a third-party venue plugs in."""

    name = "replayed"

    def __init__(self, options):
        self.options = options

    async def run(self, emit):
        await asyncio.Event().wait()

    def subscribe(self, symbols):
        pass

    def unsubscribe(self, symbols):
        pass

    def replay(self, recordings, symbols):
        from marketcore.synthetic import SyntheticConfig, SyntheticMarket

        config = SyntheticConfig(seed=5)
        return SyntheticMarket(sorted(symbols), config).events(until_ms=config.start_ms + 3000)


class HalfCoordinator:
    name = "half"

    async def run(self, ownership):
        for symbol in ownership.universe[:1]:
            ownership.acquired(symbol, WriterToken(1, 7))
        await asyncio.Event().wait()

    def refused(self, symbol):
        pass


class MemorySink:
    """Keeps what it was given in a class attribute the test reads back."""

    name = "memory"
    published: ClassVar[list] = []

    def __init__(self, options):
        self.options = options

    async def start(self):
        pass

    async def publish(self, batch):
        MemorySink.published.extend(batch)
        return ()

    async def close(self):
        pass


class Recorder:
    """Implements every hook and records what it was called with."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def marketcore_register_venues(self, register):
        register("replayed", ReplayedVenue)

    @hookimpl
    def marketcore_register_calculators(self, register):
        register("mid", MidCalculator, options=MidOptions)

    @hookimpl
    def marketcore_register_coordinators(self, register):
        register("half", lambda options: HalfCoordinator())

    @hookimpl
    def marketcore_register_sinks(self, register):
        register("memory", MemorySink)

    @hookimpl
    def marketcore_startup(self, node):
        self.calls.append(("startup", node.node_id, node.mode, node.venue, node.fast_calculators))

    @hookimpl
    def marketcore_shutdown(self, node):
        self.calls.append(("shutdown", node.node_id, node.stats.reports_published > 0))

    @hookimpl
    def marketcore_symbol_acquired(self, symbol, token):
        self.calls.append(("acquired", symbol, token))

    @hookimpl
    def marketcore_symbol_released(self, symbol, reason):
        self.calls.append(("released", symbol, reason))


def test_registration_hooks_supply_components_a_profile_can_name():
    recorder = Recorder()
    pm = make_plugin_manager(("recorder", recorder))
    reports = replay_reports(PROFILE, plugin_manager=pm)
    assert reports
    for report in reports:
        assert report["ext"]["scaled_mid"]["value"] > 0  # marketcore_register_calculators, options
        assert report["venue"] == "replayed"  # marketcore_register_venues
        assert "health" in report


def test_lifecycle_hooks_are_called_in_order():
    recorder = Recorder()
    pm = make_plugin_manager(("recorder", recorder))
    replay_reports(PROFILE, plugin_manager=pm)
    names = [call[0] for call in recorder.calls]
    assert names == ["startup", "acquired", "acquired", "released", "released", "shutdown"]
    assert recorder.calls[0] == ("startup", "replay", "replay", "replayed", ("mid", "health"))
    assert recorder.calls[1] == ("acquired", "BTCUSDT", WriterToken(0, 1))
    assert recorder.calls[3] == ("released", "BTCUSDT", "replay finished")
    assert recorder.calls[-1] == ("shutdown", "replay", True)


def test_coordinator_and_sink_hooks_in_a_live_node():
    from marketcore.testing import run_node

    recorder = Recorder()
    pm = make_plugin_manager(("recorder", recorder))
    MemorySink.published.clear()
    profile = PROFILE.replace('use = "replayed"', 'use = "synthetic"')
    run_node(profile, duration_s=1.5, plugin_manager=pm)
    symbols = {p.symbol for p in MemorySink.published}
    assert symbols == {"BTCUSDT"}  # the coordinator granted only the first symbol
    assert {p.token for p in MemorySink.published} == {WriterToken(1, 7)}
    assert ("released", "BTCUSDT", "shutdown") in recorder.calls


COMMAND_PLUGIN = """
from marketcore import hookimpl

def configure(parser):
    parser.add_argument("--name", default="world")

def run(args):
    print(f"hello {args.name}")
    return 3

@hookimpl
def marketcore_register_commands(cli):
    cli.add_command("hello", help="say hello", configure=configure, run=run)
"""


def test_register_commands_adds_a_cli_sub_command(install_plugin):
    install_plugin("marketcore-hello", "mc_hello", COMMAND_PLUGIN)
    code = "import sys; from marketcore.cli import main; sys.exit(main(['hello', '--name', 'fleet']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "hello fleet\n"


DEFAULT_PROFILE_PLUGIN = """
from marketcore import hookimpl

@hookimpl
def marketcore_default_profile():
    return '[node]\\nsymbols = ["DOGEUSDT"]\\n[venue]\\nuse = "synthetic"\\nreplay_duration_s = 2\\n'
"""


def test_a_plugin_can_offer_the_default_profile(install_plugin, tmp_path):
    out = tmp_path / "reports.jsonl"
    code = f"import sys; from marketcore.cli import main; sys.exit(main(['replay', '--out', {str(out)!r}]))"
    run = [sys.executable, "-c", code]
    only = {**os.environ, "MARKETCORE_LOAD_PLUGINS": ""}  # built-ins only, whatever is installed
    result = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False, env=only)
    assert result.returncode == 0, result.stderr
    assert "DOGEUSDT" not in out.read_text()  # the core's own default: the synthetic venue's symbols
    install_plugin("my-default", "mc_default", DEFAULT_PROFILE_PLUGIN)
    only = {**os.environ, "MARKETCORE_LOAD_PLUGINS": "my-default"}
    result = subprocess.run(run, capture_output=True, text=True, timeout=60, check=False, env=only)
    assert result.returncode == 0, result.stderr
    symbols = {json.loads(line)["symbol"] for line in out.read_text().splitlines()}
    assert symbols == {"DOGEUSDT"}
