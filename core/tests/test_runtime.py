"""The node end to end: live runs, shutdown, replay determinism, slow/fast merge, overruns."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

from marketcore import Cycle, Needs, hookimpl
from marketcore.cli import main
from marketcore.profile import load_default_profile
from marketcore.testing import (
    CollectingSink,
    make_plugin_manager,
    replay_reports,
    run_node,
    validate_report,
)

MARKETCORE = [sys.executable, "-c", "import sys; from marketcore.cli import main; sys.exit(main())"]

SYNTHETIC = """
[node]
symbols = ["BTCUSDT", "ETHUSDT", "XRPUSDT"]
[venue]
use = "synthetic"
seed = 3
replay_duration_s = 20
"""


def test_run_with_duration_shows_every_default_symbol_and_exits_zero():
    result = subprocess.run([*MARKETCORE, "run", "--duration", "3", "--json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["symbol"] for r in reports} == set(load_default_profile(environ={}).node.symbols)
    for report in reports:
        validate_report(report)
    assert reports[-1]["ingestion"]["status"] == "ok"
    assert reports[-1]["health"]["score"] > 50


def test_table_output_lists_symbols():
    result = subprocess.run([*MARKETCORE, "run", "--duration", "2"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "SYMBOL" in result.stdout and "BTCUSDT" in result.stdout and "HEALTH" in result.stdout


def test_sigint_and_sigterm_shut_down_cleanly():
    for sig in (signal.SIGINT, signal.SIGTERM):
        process = subprocess.Popen([*MARKETCORE, "run", "--json"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            first = process.stdout.readline()  # a report: the node is up
            assert json.loads(first)["schemaVersion"] == "1.1"
            os.kill(process.pid, sig)
            _out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, err
        assert "Traceback" not in err


def test_replay_of_one_seed_twice_is_byte_identical(tmp_path, write_profile):
    profile = write_profile(SYNTHETIC)
    outputs = []
    for name in ("a.jsonl", "b.jsonl"):
        out = tmp_path / name
        assert main(["replay", str(profile), "--out", str(out), "--speed", "max"]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    lines = outputs[0].splitlines()
    # every fast tick strictly inside the 20 s of generated data (250 … 19 750 ms), 3 symbols
    assert len(lines) == 3 * (20_000 // 250 - 1)
    for line in lines:
        validate_report(json.loads(line))


def test_replay_reports_are_on_the_recording_clock():
    reports = replay_reports(SYNTHETIC, duration_s=5)
    times = sorted({r["generated_at"] for r in reports})
    assert all(t % 250 == 0 for t in times)  # on the period grid
    assert [b - a for a, b in itertools.pairwise(times)] == [250] * (len(times) - 1)
    assert all(r["writer"]["nodeId"] == "replay" for r in reports)


def test_different_seeds_give_different_reports():
    a = replay_reports(SYNTHETIC, duration_s=3)
    b = replay_reports(SYNTHETIC.replace("seed = 3", "seed = 4"), duration_s=3)
    assert [r["last_price"] for r in a] != [r["last_price"] for r in b]


class SlowSection:
    """A slow-cycle calculator stamping when it ran; and a fast one that reads it."""

    name = "stamp"
    cycle = Cycle.SLOW
    sections = ("stamp",)
    needs = Needs()

    def compute(self, state, ctx):
        return {"stamp": {"slow_at": ctx.now_ms}}


class Stamp:
    @hookimpl
    def marketcore_register_calculators(self, register):
        register("stamp", lambda options: SlowSection())


def test_slow_results_are_cached_and_merged_into_fast_reports():
    pm = make_plugin_manager(("stamp", Stamp()))
    profile = SYNTHETIC + "\n[pipeline.slow]\nperiod_ms = 1000\n"
    reports = replay_reports(profile, duration_s=4, plugin_manager=pm)
    with_stamp = [r for r in reports if "ext" in r]
    assert with_stamp, "the slow section never reached a fast report"
    for report in with_stamp:
        slow_at = report["ext"]["stamp"]["slow_at"]
        assert slow_at % 1000 == 0
        assert 0 <= report["generated_at"] - slow_at < 1000  # the latest slow result
    first = with_stamp[0]["generated_at"]
    assert all("ext" not in r for r in reports if r["generated_at"] < first)


class Sleepy:
    name = "sleepy"
    cycle = Cycle.FAST
    sections = ("sleepy",)
    needs = Needs()

    def compute(self, state, ctx):
        time.sleep(0.12)
        return {"sleepy": {}}


class SleepyPlugin:
    @hookimpl
    def marketcore_register_calculators(self, register):
        register("sleepy", lambda options: Sleepy())


def test_an_overrunning_cycle_skips_ticks_instead_of_queueing():
    pm = make_plugin_manager(("sleepy", SleepyPlugin()))
    profile = """
        [node]
        symbols = ["BTCUSDT", "ETHUSDT"]
        [venue]
        use = "synthetic"
        [pipeline.fast]
        period_ms = 100
        calculators = ["sleepy"]
        budget_ms = 100
        [[sink]]
        use = "jsonl"
        path = "/dev/null"
    """
    info = run_node(profile, duration_s=2.0, plugin_manager=pm)
    fast = info.stats.fast
    assert fast.runs >= 3
    # each cycle takes >= 240 ms of a 100 ms period: ticks are skipped, never queued
    assert fast.skipped_ticks >= fast.runs
    assert fast.runs + fast.skipped_ticks <= 2.0 / 0.1 + 2


STUBBORN_VENUE = """
import asyncio
from marketcore import hookimpl

class Stubborn:
    name = "stubborn"
    def __init__(self, options): pass
    async def run(self, emit):
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # the bug under test: it swallows its cancellation
    def subscribe(self, symbols): pass
    def unsubscribe(self, symbols): pass
    def replay(self, recordings, symbols): return iter(())

@hookimpl
def marketcore_register_venues(register):
    register("stubborn", Stubborn)
"""


def test_a_venue_that_ignores_cancellation_cannot_hang_shutdown(install_plugin, write_profile):
    install_plugin("stubborn-venue", "mc_stubborn", STUBBORN_VENUE)
    profile = write_profile('[node]\nsymbols = ["BTCUSDT"]\n[venue]\nuse = "stubborn"\n')
    result = subprocess.run([*MARKETCORE, "run", str(profile), "--duration", "1", "--json"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "venue stubborn did not stop within 10 s" in result.stderr
    assert "task(s) did not stop" in result.stderr


class LateCoordinator:
    """Owns BTCUSDT from the start and ETHUSDT 1.5 s later, as a fleet peer handing a
    symbol over would."""

    name = "late"

    def __init__(self, options) -> None:
        pass

    async def run(self, ownership) -> None:
        import asyncio

        from marketcore import WriterToken

        ownership.acquired("BTCUSDT", WriterToken(0, 1))
        await asyncio.sleep(1.5)
        ownership.acquired("ETHUSDT", WriterToken(0, 1))
        await asyncio.Event().wait()

    def refused(self, symbol: str) -> None:
        pass


class LatePlugin:
    def __init__(self) -> None:
        self.sink = CollectingSink()

    @hookimpl
    def marketcore_register_coordinators(self, register):
        register("late", LateCoordinator)

    @hookimpl
    def marketcore_register_sinks(self, register):
        register("collect", lambda options: self.sink)


def test_a_newly_acquired_symbol_is_published_without_waiting_for_the_next_tick():
    """In 2.4 s a 1,000 ms fast period has two regular ticks (at 1 s and 2 s). Each
    acquisition (BTCUSDT at the start, ETHUSDT at 1.5 s) runs one cycle early on top,
    so the new owner publishes at once instead of up to a period later."""
    plugin = LatePlugin()
    pm = make_plugin_manager(("late", plugin))
    profile = """
        [node]
        symbols = ["BTCUSDT", "ETHUSDT"]
        [venue]
        use = "synthetic"
        [coordinator]
        use = "late"
        [pipeline.fast]
        period_ms = 1000
        [pipeline.slow]
        period_ms = 60000
        [[sink]]
        use = "collect"
    """
    info = run_node(profile, duration_s=2.4, plugin_manager=pm)
    symbols = [report["symbol"] for report in plugin.sink.reports]
    assert symbols[0] == "BTCUSDT" and "ETHUSDT" in symbols, symbols
    assert info.stats.fast.runs >= 3, info.stats.fast  # > the 2 regular ticks
    assert info.stats.fast.skipped_ticks == 0


class PacedSink:
    """A sink whose every publish takes 100 ms of waiting (a slow network), recording
    when each was in progress."""

    name = "paced"

    def __init__(self) -> None:
        self.busy: list[tuple[float, float]] = []

    async def start(self) -> None:
        pass

    async def publish(self, batch):
        import asyncio

        started = time.monotonic()
        await asyncio.sleep(0.1)
        self.busy.append((started, time.monotonic()))
        return ()

    async def close(self) -> None:
        pass


class Busy:
    """A slow-cycle calculator that takes 4 ms a symbol and notes when it ran."""

    name = "busy"
    cycle = Cycle.SLOW
    sections = ("busy",)
    needs = Needs()

    def __init__(self) -> None:
        self.ran: list[float] = []

    def compute(self, state, ctx):
        until = time.perf_counter() + 0.004
        while time.perf_counter() < until:
            pass
        self.ran.append(time.monotonic())
        return {"busy": {}}


class PacingPlugin:
    def __init__(self) -> None:
        self.sink, self.busy = PacedSink(), Busy()

    @hookimpl
    def marketcore_register_sinks(self, register):
        register("paced", lambda options: self.sink)

    @hookimpl
    def marketcore_register_calculators(self, register):
        register("busy", lambda options: self.busy)


def test_the_slow_cycle_never_runs_while_a_fast_cycle_publishes():
    """Twenty symbols × 4 ms make each slow cycle ~80 ms of work in ~16 slices; the fast
    cycle spends 100 ms of every 250 waiting on its sink. No slice may run inside that
    wait: each would hold the fast cycle's resumption."""
    plugin = PacingPlugin()
    pm = make_plugin_manager(("pacing", plugin))
    symbols = [f"S{k:02d}USDT" for k in range(20)]
    profile = f"""
        [node]
        symbols = {json.dumps(symbols)}
        [venue]
        use = "synthetic"
        seed = 5
        [pipeline.fast]
        period_ms = 250
        calculators = []
        [pipeline.slow]
        period_ms = 500
        calculators = ["busy"]
        [[sink]]
        use = "paced"
    """
    info = run_node(profile, duration_s=4, plugin_manager=pm)
    assert info.stats.slow.runs >= 5 and len(plugin.sink.busy) >= 10
    inside = [t for t in plugin.busy.ran
              for start, end in plugin.sink.busy if start < t < end]
    assert inside == [], f"{len(inside)} of {len(plugin.busy.ran)} slow calls ran mid-publish"


class GcWatch:
    """A fast-cycle calculator noting the collector's thresholds and frozen objects."""

    name = "gcwatch"
    cycle = Cycle.FAST
    sections = ()
    needs = Needs()

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[int, int, int], int]] = []

    def compute(self, state, ctx):
        import gc

        self.seen.append((gc.get_threshold(), gc.get_freeze_count()))
        return {}


class GcWatchPlugin:
    def __init__(self) -> None:
        self.watch = GcWatch()

    @hookimpl
    def marketcore_register_calculators(self, register):
        register("gcwatch", lambda options: self.watch)


def test_a_live_node_tunes_the_collector_and_restores_it():
    import gc

    before = gc.get_threshold()
    plugin = GcWatchPlugin()
    pm = make_plugin_manager(("gcwatch", plugin))
    run_node(SYNTHETIC + '\n[pipeline.fast]\ncalculators = ["gcwatch"]\n', duration_s=1,
             plugin_manager=pm)
    assert plugin.watch.seen, "the calculator never ran"
    for thresholds, frozen in plugin.watch.seen:
        assert thresholds[0] >= 10 * before[0] and thresholds[1:] == before[1:]
        assert frozen > 1000  # the startup heap: modules, classes, functions
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
