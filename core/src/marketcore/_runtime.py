"""The node: owned symbols' states, the two cycles, publishing; live and replay.

One asyncio event loop per process. Live, timers drive the cycles; in a
replay, the recording's receive times drive a :class:`SimulatedClock` and the
very same cycle code runs between events, so a replay is deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from marketcore._assembly import Components, assemble
from marketcore._plugins import Hooks, PluginManager
from marketcore.clock import Clock, SimulatedClock
from marketcore.components import Publication, Sink, WriterToken
from marketcore.events import Event
from marketcore.node import CycleStats, NodeInfo, NodeStats
from marketcore.profile import Profile, default_node_id
from marketcore.report import base_report, encode_report
from marketcore.state import SymbolState

log = logging.getLogger("marketcore.node")

SLOW_CHUNK = 32
"""Symbols per slice of a live slow cycle; the loop is yielded between slices
so the fast cycle never waits behind a whole slow cycle."""


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
        self._slow_cache: dict[str, tuple[dict[str, Any], dict[str, str]]] = {}
        self.stats = NodeStats()
        self._sink_logged: dict[str, float] = {}
        self.info = NodeInfo(
            node_id=node_id, mode=mode, profile=profile,
            venue=components.venue.name, coordinator=components.coordinator.name,
            sinks=tuple(s.name for s in components.sinks),
            fast_calculators=components.fast.names, slow_calculators=components.slow.names,
            stats=self.stats, owned=lambda: self._order,
        )

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
        self.tokens[symbol] = token
        if is_new:
            self.hooks.symbol_acquired(symbol, token)

    def released(self, symbol: str, reason: str) -> None:
        if symbol not in self.states:
            return
        self.components.venue.unsubscribe([symbol])
        del self.states[symbol]
        self.tokens.pop(symbol, None)
        self._slow_cache.pop(symbol, None)
        self._order = tuple(sorted(self.states))
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
        self._slow_cache[symbol] = (sections, omitted)

    def slow_cycle(self, now_ms: int) -> None:
        """The whole slow cycle at once (replay, tests)."""
        for symbol in self._order:
            self.slow_one(symbol, now_ms)

    async def slow_cycle_sliced(self) -> None:
        """The slow cycle in slices, yielding to the loop between them (live)."""
        for index, symbol in enumerate(self._order):
            self.slow_one(symbol, self.clock.now_ms())
            if index % SLOW_CHUNK == SLOW_CHUNK - 1:
                await asyncio.sleep(0)

    def fast_cycle(self, now_ms: int) -> list[Publication]:
        """Build every owned symbol's report: base fields, slow sections, fast sections."""
        batch = []
        depth = self.profile.state.level_sample_depth
        fast = self.components.fast
        for symbol in self._order:
            state = self.states[symbol]
            token = self.tokens[symbol]
            state.sample_levels(depth)
            report = base_report(state, node_id=self.node_id, token=token, now_ms=now_ms)
            omitted: dict[str, str] = {}
            cached = self._slow_cache.get(symbol)
            if cached is not None:
                _merge(report, cached[0])
                omitted.update(cached[1])
            fast.run(state, now_ms, report, omitted)
            if omitted:
                health = report.get("health")
                if isinstance(health, dict):
                    health["omitted"] = omitted
                else:
                    report["omitted"] = omitted
            batch.append(Publication(symbol, token, report, encode_report(report)))
        return batch

    def _log_sink_failure(self, name: str, error: BaseException, errors: int) -> None:
        now = time.monotonic()
        if now - self._sink_logged.get(name, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            self._sink_logged[name] = now
            log.warning("sink %s failed (%d failures so far): %s", name, errors, error)

    async def publish(self, batch: list[Publication]) -> None:
        """Hand the batch to every sink at once; drop symbols a fencing sink refused."""
        if not batch:
            return
        sinks = self.components.sinks
        results = await asyncio.gather(*(sink.publish(batch) for sink in sinks),
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
        if key in ("liquidity", "ext"):
            report.setdefault(key, {}).update(value)
        else:
            report[key] = value


# ---------------------------------------------------------------------------
# Live
# ---------------------------------------------------------------------------


async def _every(period_ms: int, tick: Callable[[], Awaitable[None]], stats: CycleStats) -> None:
    """Run ``tick`` every period; an overrun skips the ticks it covered."""
    loop = asyncio.get_running_loop()
    period = period_ms / 1000
    next_at = loop.time() + period
    while True:
        delay = next_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        started = loop.time()
        await tick()
        now = loop.time()
        stats.record((now - started) * 1000)
        next_at += period
        if now > next_at:
            missed = int((now - next_at) // period) + 1
            stats.skipped_ticks += missed
            next_at += missed * period


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

    Shutdown order: stop the cycles, let the coordinator release its leases,
    release what is left, stop the venue, flush and close the sinks, then call
    ``marketcore_shutdown``.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    c = node.components
    tasks: dict[str, asyncio.Task[Any]] = {}
    started_sinks = []
    try:
        node.hooks.startup(node.info)
        for sink in c.sinks:
            await sink.start()
            started_sinks.append(sink)
        tasks["venue"] = asyncio.create_task(
            _supervise("venue", lambda: c.venue.run(node.emit), node.stats))
        tasks["coordinator"] = asyncio.create_task(
            _supervise("coordinator", lambda: c.coordinator.run(node), node.stats))

        async def fast_tick() -> None:
            await node.publish(node.fast_cycle(node.clock.now_ms()))

        tasks["fast"] = asyncio.create_task(
            _every(node.profile.pipeline.fast.period_ms, fast_tick, node.stats.fast))
        tasks["slow"] = asyncio.create_task(
            _every(node.profile.pipeline.slow.period_ms, node.slow_cycle_sliced, node.stats.slow))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=duration_s)
    finally:
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
        try:
            node.hooks.shutdown(node.info)
        except Exception:
            log.exception("a marketcore_shutdown hook failed")


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
