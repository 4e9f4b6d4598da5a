"""The node: owned symbols' states, the two cycles, publishing; live and replay.

One asyncio event loop per process. Live, timers drive the cycles; in a
replay, the recording's receive times drive a :class:`SimulatedClock` and the
very same cycle code runs between events, so a replay is deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from marketcore import _logging
from marketcore._assembly import Components, assemble
from marketcore._plugins import Hooks, PluginManager
from marketcore.clock import Clock, SimulatedClock
from marketcore.components import Publication, Sink, WriterToken, stats_of
from marketcore.events import Event
from marketcore.node import CycleStats, NodeInfo, NodeStats
from marketcore.profile import Profile, default_node_id
from marketcore.report import (
    MERGED_SECTIONS,
    Preencoded,
    base_report,
    encode_report,
    preencode,
)
from marketcore.state import SymbolState

if TYPE_CHECKING:
    from marketcore._metrics import MetricsServer

log = logging.getLogger("marketcore.node")

SLOW_SLICE_S = 0.005
"""Longest stretch of a live slow cycle between yields to the loop: the fast cycle and
the venue's frames never wait behind more than about this much slow work (a count of
symbols per slice would not bound it — one dense book's slow sections take ~2 ms)."""


class Node:
    """A node's state and cycles. Implements :class:`marketcore.components.Ownership`."""

    def __init__(self, *, profile: Profile, components: Components, hooks: Hooks, clock: Clock,
                 node_id: str, mode: str) -> None:
        self.profile = profile
        self.components = components
        self.hooks = hooks
        self.clock = clock
        self.node_id = node_id
        self.universe = profile.node.symbols
        self.states: dict[str, SymbolState] = {}
        self.tokens: dict[str, WriterToken] = {}
        self._order: tuple[str, ...] = ()
        self._slow_cache: dict[str, tuple[dict[str, Any], dict[str, str], Preencoded]] = {}
        """Per symbol: the last slow cycle's sections, what it omitted, and the sections'
        JSON, which every fast report until the next slow cycle splices in."""
        self.stats = NodeStats()
        self._sink_logged: dict[str, float] = {}
        self.fast_wake: asyncio.Event | None = None
        self.fast_idle: asyncio.Event | None = None
        """Set while no fast cycle is in progress (live); the slow cycle waits for it."""
        """Set (live runs) when a symbol is newly acquired: the fast loop runs a cycle early,
        so a symbol handed over gracefully is published by its new owner at once."""
        self.info = NodeInfo(
            node_id=node_id, mode=mode, profile=profile,
            venue=components.venue.name, coordinator=components.coordinator.name,
            sinks=tuple(s.name for s in components.sinks),
            fast_calculators=components.fast.names, slow_calculators=components.slow.names,
            stats=self.stats, owned=lambda: self._order,
            component_stats=self.component_stats, components=self.component_map,
            calculator_stats=self.calculator_stats, last_event_ms=self.last_event_ms,
        )

    def component_map(self) -> dict[str, object]:
        found: dict[str, object] = {"venue": self.components.venue,
                                    "coordinator": self.components.coordinator}
        for sink in self.components.sinks:
            found[f"sink.{sink.name}"] = sink
        return found

    def component_stats(self) -> dict[str, dict[str, float]]:
        return {key: stats_of(component) for key, component in self.component_map().items()}

    def calculator_stats(self) -> dict[str, dict[str, Any]]:
        return {"fast": dict(self.components.fast.stats), "slow": dict(self.components.slow.stats)}

    def last_event_ms(self) -> dict[str, int | None]:
        return {symbol: state.last_event_ms for symbol, state in self.states.items()}

    # -- ownership (called by the coordinator) ---------------------------------

    def acquired(self, symbol: str, token: WriterToken) -> None:
        is_new = symbol not in self.states
        if is_new:
            self.states[symbol] = SymbolState(
                symbol, self.components.venue.name, self.components.needs,
                max_trades=self.profile.state.max_trades,
            )
            self._order = tuple(sorted(self.states))
            self.components.venue.subscribe([symbol])
            self.stats.acquisitions += 1
        self.tokens[symbol] = token
        if is_new:
            self.hooks.symbol_acquired(symbol, token)
            if self.fast_wake is not None:
                self.fast_wake.set()

    def released(self, symbol: str, reason: str) -> None:
        if symbol not in self.states:
            return
        self.components.venue.unsubscribe([symbol])
        del self.states[symbol]
        self.tokens.pop(symbol, None)
        self._slow_cache.pop(symbol, None)
        self._order = tuple(sorted(self.states))
        self.stats.releases += 1
        self.hooks.symbol_released(symbol, reason)

    def release_all(self, reason: str) -> None:
        for symbol in self._order:
            self.released(symbol, reason)

    # -- events (called by the venue) ------------------------------------------

    def emit(self, event: Event) -> None:
        symbol = event.symbol
        if symbol is None:  # a venue-wide status
            for state in self.states.values():
                state.apply(event)
            return
        state = self.states.get(symbol)
        if state is None:
            self.stats.unowned_events += 1
            return
        state.apply(event)

    # -- cycles -----------------------------------------------------------------

    def slow_one(self, symbol: str, now_ms: int) -> None:
        state = self.states.get(symbol)
        if state is None:
            return
        sections: dict[str, Any] = {}
        omitted: dict[str, str] = {}
        self.components.slow.run(state, now_ms, sections, omitted)
        self._slow_cache[symbol] = (sections, omitted, preencode(sections))

    def slow_cycle(self, now_ms: int) -> None:
        """The whole slow cycle at once (replay, tests)."""
        for symbol in self._order:
            self.slow_one(symbol, now_ms)

    async def slow_cycle_sliced(self) -> None:
        """The slow cycle in slices, yielding to the loop between them (live).

        A slice never runs while a fast cycle is in progress: the fast cycle awaits its
        sinks, and every slice the loop ran meanwhile would delay the fast cycle's
        resumption by up to :data:`SLOW_SLICE_S`, several times per publish.
        """
        await self._fast_done()
        slice_started = time.perf_counter()
        for symbol in self._order:  # a symbol released meanwhile is skipped by slow_one
            self.slow_one(symbol, self.clock.now_ms())
            if time.perf_counter() - slice_started >= SLOW_SLICE_S:
                await asyncio.sleep(0)
                await self._fast_done()
                slice_started = time.perf_counter()

    async def _fast_done(self) -> None:
        idle = self.fast_idle
        if idle is not None and not idle.is_set():
            await idle.wait()

    def fast_cycle(self, now_ms: int) -> list[Publication]:
        """Build every owned symbol's report: base fields, slow sections, fast sections."""
        batch = []
        depth = self.profile.state.level_sample_depth
        fast = self.components.fast
        data_age = self.stats.data_age
        for symbol in self._order:
            state = self.states[symbol]
            token = self.tokens[symbol]
            state.sample_levels(depth)
            report = base_report(state, node_id=self.node_id, token=token, now_ms=now_ms)
            age = report["data_age_ms"]
            if age is not None:
                data_age.record(age)
            omitted: dict[str, str] = {}
            cached = self._slow_cache.get(symbol)
            preencoded = None
            if cached is not None:
                _merge(report, cached[0])
                omitted.update(cached[1])
                preencoded = cached[2]
            fast.run(state, now_ms, report, omitted)
            if omitted:
                health = report.get("health")
                if isinstance(health, dict):
                    health["omitted"] = omitted
                else:
                    report["omitted"] = omitted
            batch.append(Publication(symbol, token, report, encode_report(report, preencoded)))
        return batch

    def _log_sink_failure(self, name: str, error: BaseException, errors: int) -> None:
        now = time.monotonic()
        if now - self._sink_logged.get(name, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            self._sink_logged[name] = now
            log.warning("sink %s failed (%d failures so far): %s", name, errors, error,
                        extra={"component": f"sink.{name}", "sink": name, "failures": errors})

    async def _publish_timed(self, sink: Sink, batch: list[Publication]) -> Any:
        started = time.perf_counter()
        try:
            return await sink.publish(batch)
        finally:
            self.stats.record_publish(sink.name, (time.perf_counter() - started) * 1000)

    async def publish(self, batch: list[Publication]) -> None:
        """Hand the batch to every sink at once; drop symbols a fencing sink refused."""
        if not batch:
            return
        sinks = self.components.sinks
        results = await asyncio.gather(*(self._publish_timed(sink, batch) for sink in sinks),
                                       return_exceptions=True)
        refused: set[str] = set()
        for sink, result in zip(sinks, results, strict=True):
            if isinstance(result, BaseException):
                errors = self.stats.sink_errors.get(sink.name, 0) + 1
                self.stats.sink_errors[sink.name] = errors
                self._log_sink_failure(sink.name, result, errors)
            else:
                refused.update(result)
        self.stats.reports_published += len(batch)
        for symbol in sorted(refused):
            self.stats.refused += 1
            self.components.coordinator.refused(symbol)
            self.released(symbol, "refused by sink")


def make_node(profile: Profile, pm: PluginManager, *, mode: str, clock: Clock,
              sinks: tuple[Sink, ...] | None = None) -> Node:
    """Assemble the profile's components and a node around them.

    ``mode="replay"`` turns time budgets off (they would make a replay depend
    on the CPU) and names the node ``replay`` unless the profile names it;
    ``sinks`` replaces the profile's sinks.
    """
    replay = mode == "replay"
    components = assemble(profile, pm.registries, enforce_budgets=not replay,
                          sink_override=None if sinks is None else (lambda: sinks))
    node_id = profile.node.id or ("replay" if replay else default_node_id())
    return Node(profile=profile, components=components, hooks=pm.hooks, clock=clock,
                node_id=node_id, mode=mode)


_LOG_EVERY_S = 10.0
"""A failing sink is logged once per this interval, with the count, not every cycle."""


def _merge(report: dict[str, Any], sections: dict[str, Any]) -> None:
    for key, value in sections.items():
        if key in MERGED_SECTIONS:
            report.setdefault(key, {}).update(value)
        else:
            report[key] = value


# ---------------------------------------------------------------------------
# Live
# ---------------------------------------------------------------------------


async def _every(period_ms: int, tick: Callable[[], Awaitable[None]], stats: CycleStats, *,
                 name: str = "cycle", wake: asyncio.Event | None = None) -> None:
    """Run ``tick`` every period; an overrun skips the ticks it covered (logged, rate-limited).

    ``wake`` set runs one extra tick early — at least a quarter period after the last one
    started, so a burst of wake-ups costs at most a few extra cycles — without moving the
    schedule of the regular ticks.
    """
    loop = asyncio.get_running_loop()
    period = period_ms / 1000
    next_at = loop.time() + period
    last_started = loop.time()
    while True:
        delay = next_at - loop.time()
        early = False
        if delay > 0:
            if wake is None:
                await asyncio.sleep(delay)
            else:
                early = await _woken(wake, delay, last_started + period / 4)
        started = last_started = loop.time()
        await tick()
        now = loop.time()
        stats.record((now - started) * 1000)
        if early:
            continue  # an extra tick: the regular schedule stands
        next_at += period
        if now > next_at:
            missed = int((now - next_at) // period) + 1
            stats.skipped_ticks += missed
            next_at += missed * period
            log.warning("%s cycle overran its period (%.1f ms > %d ms); %d tick(s) skipped",
                        name, stats.last_ms, period_ms, missed,
                        extra={"component": "node", "cycle": name, "elapsed_ms":
                               round(stats.last_ms, 3), "period_ms": period_ms,
                               "skipped": missed})


async def _woken(wake: asyncio.Event, delay: float, not_before: float) -> bool:
    """Sleep ``delay`` seconds or until ``wake`` is set (then not before ``not_before`` on
    the loop's clock); True when woken early. Clears ``wake``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + delay
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(delay):
            await wake.wait()
    if not wake.is_set():
        return False
    wake.clear()
    hold = not_before - loop.time()
    if hold > 0:
        await asyncio.sleep(min(hold, max(0.0, deadline - loop.time())))
    return loop.time() < deadline


async def _supervise(name: str, run: Callable[[], Awaitable[None]], stats: NodeStats) -> None:
    """Keep a component's ``run`` going: a crash is logged and restarted with backoff."""
    delay = 0.5
    while True:
        started = time.monotonic()
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            stats.component_restarts[name] = stats.component_restarts.get(name, 0) + 1
            log.exception("%s stopped with an error; restarting in %.1f s", name, delay)
        if time.monotonic() - started > 60:
            delay = 0.5
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


STOP_TIMEOUT_S = 10.0
"""How long a component may take to stop once cancelled before shutdown goes on without it."""


async def _cancel(task: asyncio.Task[Any] | None, name: str) -> None:
    """Cancel ``task`` and wait for it, but never longer than :data:`STOP_TIMEOUT_S`.

    A plugin that swallows its cancellation is logged and left behind rather than
    allowed to hang the node's shutdown (the CLI then exits without waiting for it).
    """
    if task is None:
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT_S)
    if not done:
        log.error("%s did not stop within %.0f s of being cancelled; shutting down without it",
                  name, STOP_TIMEOUT_S)
    elif not task.cancelled() and task.exception() is not None:
        log.error("%s failed while stopping: %r", name, task.exception())


async def run_live(node: Node, *, duration_s: float | None = None) -> None:
    """Run until SIGINT/SIGTERM or ``duration_s``; then shut down cleanly.

    Metrics are served on the profile's ``[metrics] bind`` for the whole run (a bind
    that fails is logged and the node runs on without them); every log record of the
    run carries the node's id. Shutdown order: stop the cycles, let the coordinator
    release its leases, release what is left, stop the venue, flush and close the
    sinks, stop serving metrics, then call ``marketcore_shutdown``.
    """
    with _logging.node_context(node.node_id):
        await _run_live(node, duration_s=duration_s)


def _log_started(node: Node) -> None:
    """One line saying what the node runs and where it connects (secrets redacted)."""
    profile = node.profile
    log.info("node %s started: venue %s, coordinator %s, sinks %s, %d symbols in the universe",
             node.node_id, node.components.venue.name, node.components.coordinator.name,
             ", ".join(s.name for s in node.components.sinks) or "none", len(node.universe),
             extra={"component": "node", "profile": profile.source,
                    "coordinator_options": dict(profile.coordinator.options),
                    "sink_options": {s.name: dict(s.options) for s in profile.sink},
                    "metrics_bind": profile.metrics.bind})


GC_YOUNG_THRESHOLD = 10_000
"""Allocations between collections of the youngest generation on a live node."""


def _freeze_startup_heap() -> tuple[int, ...]:
    """Keep what exists at startup out of every later garbage collection.

    A full (generation 2) collection visits every tracked object, and a started node
    holds tens of thousands that live as long as the process: modules, classes,
    functions, plugin and component objects. Each fast cycle allocates and frees
    thousands of report containers, which triggers a full collection every few seconds;
    measured on a 100-symbol node, one took up to 147 ms, an overrun of the fast cycle.
    ``gc.freeze`` moves the startup objects to a permanent generation that collections
    skip (reference counting still frees them); the collection before it leaves no
    garbage behind to be frozen.

    The youngest generation's threshold is raised from 700 to :data:`GC_YOUNG_THRESHOLD`
    allocations: almost everything a cycle allocates is freed by reference counting,
    and at 700 the collector still ran about 28 times a second on a 100-symbol node
    for 15 ms/s of pauses, some landing inside a fast cycle; at 10,000 it ran 7 times
    in 30 s (1.5 ms/s) with the same RSS (``benchmarks/bench_node.py``). The older
    generations keep their default ratios, so cyclic garbage is still collected,
    only less often.

    Returns the thresholds it replaced, for :func:`_thaw_heap`.
    """
    gc.collect()
    gc.freeze()
    before = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *before[1:])
    return before


def _thaw_heap(thresholds: tuple[int, ...]) -> None:
    """Undo :func:`_freeze_startup_heap`: what the node leaves behind is collectable again
    and the thresholds are what they were (a test process runs many nodes)."""
    gc.unfreeze()
    gc.set_threshold(*thresholds)


async def _run_live(node: Node, *, duration_s: float | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    c = node.components
    tasks: dict[str, asyncio.Task[Any]] = {}
    started_sinks = []
    metrics: MetricsServer | None = None
    thresholds: tuple[int, ...] | None = None  # the collector's, while the node runs
    started = time.monotonic()
    try:
        _log_started(node)
        node.hooks.startup(node.info)
        if node.profile.metrics.bind:
            from marketcore._metrics import MetricsServer  # prometheus-client: only when served

            metrics = await MetricsServer.start(node.info, node.profile.metrics.bind)
        for sink in c.sinks:
            await sink.start()
            started_sinks.append(sink)
        node.fast_wake = asyncio.Event()  # before the coordinator can acquire anything
        node.fast_idle = asyncio.Event()
        node.fast_idle.set()
        thresholds = _freeze_startup_heap()
        tasks["venue"] = asyncio.create_task(
            _supervise("venue", lambda: c.venue.run(node.emit), node.stats))
        tasks["coordinator"] = asyncio.create_task(
            _supervise("coordinator", lambda: c.coordinator.run(node), node.stats))

        async def fast_tick() -> None:
            node.fast_idle.clear()  # the slow cycle pauses until the reports are out
            try:
                await node.publish(node.fast_cycle(node.clock.now_ms()))
            finally:
                node.fast_idle.set()

        tasks["fast"] = asyncio.create_task(
            _every(node.profile.pipeline.fast.period_ms, fast_tick, node.stats.fast, name="fast",
                   wake=node.fast_wake))
        tasks["slow"] = asyncio.create_task(
            _every(node.profile.pipeline.slow.period_ms, node.slow_cycle_sliced, node.stats.slow,
                   name="slow"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=duration_s)
    finally:
        if thresholds is not None:
            _thaw_heap(thresholds)
        for sig in signals:
            loop.remove_signal_handler(sig)
        await _cancel(tasks.get("fast"), "the fast cycle")
        await _cancel(tasks.get("slow"), "the slow cycle")
        await _cancel(tasks.get("coordinator"), f"coordinator {c.coordinator.name}")
        node.release_all("shutdown")
        await _cancel(tasks.get("venue"), f"venue {c.venue.name}")
        for sink in started_sinks:
            try:
                await sink.close()
            except Exception:
                log.exception("sink %s failed to close", sink.name)
        if metrics is not None:
            await metrics.close()
        try:
            node.hooks.shutdown(node.info)
        except Exception:
            log.exception("a marketcore_shutdown hook failed")
        log.info("node %s stopped after %.1f s: %d reports published", node.node_id,
                 time.monotonic() - started, node.stats.reports_published,
                 extra={"component": "node", "uptime_s": round(time.monotonic() - started, 3),
                        "reports_published": node.stats.reports_published})
        _logging.flush_suppressed()


# ---------------------------------------------------------------------------
# Replay
# ---------------------------------------------------------------------------


async def run_replay(node: Node, events: Iterable[Event], clock: SimulatedClock, *,
                     speed: float | None = None, duration_s: float | None = None,
                     progress: bool = False) -> int:
    """Drive the cycles on the events' receive times; returns the events applied.

    Cycle ticks sit on the period grid (multiples of the period in UTC ms), so
    the same recording always gives the same ticks. When a fast and a slow tick
    fall on the same instant the slow one runs first, so the fast report
    carries the fresh slow sections. ``speed`` paces the replay at that many
    times real time (``None``: as fast as the CPU allows).
    """
    fast_ms = node.profile.pipeline.fast.period_ms
    slow_ms = node.profile.pipeline.slow.period_ms
    next_fast = next_slow = first_ms = None
    wall_start = time.monotonic()
    last_progress = wall_start
    applied = 0
    node.hooks.startup(node.info)
    for sink in node.components.sinks:
        await sink.start()
    try:
        for symbol in node.universe:
            node.acquired(symbol, WriterToken(0, 1))
        for event in events:
            t_ms = event.recv_ns // 1_000_000
            if first_ms is None:
                first_ms = t_ms
                clock.set(t_ms)
                next_fast = (t_ms // fast_ms + 1) * fast_ms
                next_slow = (t_ms // slow_ms + 1) * slow_ms
            if duration_s is not None and t_ms - first_ms > duration_s * 1000:
                break
            while min(next_fast, next_slow) <= t_ms:
                if next_slow <= next_fast:
                    clock.set(next_slow)
                    node.slow_cycle(next_slow)
                    next_slow += slow_ms
                else:
                    clock.set(next_fast)
                    await node.publish(node.fast_cycle(next_fast))
                    next_fast += fast_ms
            if speed is not None:
                ahead = (t_ms - first_ms) / 1000 / speed - (time.monotonic() - wall_start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            clock.set(t_ms)
            node.emit(event)
            applied += 1
            if progress and applied % 4096 == 0 and time.monotonic() - last_progress > 1:
                last_progress = time.monotonic()
                print(f"\rreplayed {applied:,} events, {(t_ms - first_ms) / 1000:,.1f} s of "
                      f"market time, {node.stats.reports_published:,} reports", end="",
                      file=sys.stderr, flush=True)
    finally:
        if progress:
            print(file=sys.stderr)
        node.release_all("replay finished")
        for sink in node.components.sinks:
            await sink.close()
        node.hooks.shutdown(node.info)
    return applied
