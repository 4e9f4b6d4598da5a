"""The live client against the local exchange simulator, over real sockets."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import pytest
from conftest import (
    Collector,
    assert_books_equal,
    running,
    synced_at_sim,
    venue_for,
    wait_for,
)
from marketcore.events import BookSnapshot, Instrument, VenueState
from marketcore_venue_binance.simulator import ExchangeSimulator, SimulatorConfig


def sim_config(path, **changes) -> SimulatorConfig:
    return SimulatorConfig(recordings=(str(path),), **{"speed": 10.0, **changes})


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


# ---------------------------------------------------------------------------
# Book sync
# ---------------------------------------------------------------------------


def test_book_equals_the_simulators_at_the_same_update_id(spot_recording):
    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording)) as sim:
            venue = venue_for(sim, snapshot_limit=5000)
            venue.subscribe(["BTCUSDT"])
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: collector.deltas["BTCUSDT"] > 20, what="deltas")
                await synced_at_sim(venue, collector, sim, ["BTCUSDT"])
                assert_books_equal(collector, sim, "BTCUSDT", 5000)
            stats = venue.stats
            assert stats.gaps == 0 and stats.resyncs == 0 and stats.malformed_total == 0
            instrument = next(e for e in collector.events if isinstance(e, Instrument))
            assert instrument.tick_size == pytest.approx(0.01)
            first_snapshot = collector.events.index(
                next(e for e in collector.events if isinstance(e, BookSnapshot)))
            assert collector.events.index(instrument) < first_snapshot
            assert collector.kinds["Trade"] > 0 and collector.kinds["Ticker"] > 0

    run(scenario())


def test_usdm_follows_the_pu_rule(usdm_recording):
    async def scenario():
        config = sim_config(usdm_recording, market="usdm")
        async with ExchangeSimulator(config) as sim:
            venue = venue_for(sim, market="usdm", streams=("depth@0ms", "trade"),
                              snapshot_limit=1000)
            venue.subscribe(["BTCUSDT"])
            collector = Collector(futures=True)
            async with running(venue, collector):
                await wait_for(lambda: collector.deltas["BTCUSDT"] > 30, what="deltas")
                await synced_at_sim(venue, collector, sim, ["BTCUSDT"])
                assert_books_equal(collector, sim, "BTCUSDT", 1000)
            deltas = [e for e in collector.events if type(e).__name__ == "BookDelta"]
            assert all(b.prev_update_id == a.last_update_id for a, b in pairwise(deltas))
            # futures ids are shared across symbols: U is not previous u + 1
            assert any(b.first_update_id != a.last_update_id + 1
                       for a, b in pairwise(deltas))
            assert venue.stats.gaps == 0

    run(scenario())


# ---------------------------------------------------------------------------
# Faults: gaps, bad frames, lost connections, stalls
# ---------------------------------------------------------------------------

TWO = ("BTC0001USDT", "BTC0002USDT")


def test_skipped_ids_resync_only_that_symbol(spot_recording):
    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording, clone=2)) as sim:
            venue = venue_for(sim, snapshot_limit=5000)
            venue.subscribe(TWO)
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: all(collector.deltas[s] > 5 for s in TWO), what="sync")
                snapshots_before = collector.snapshots[TWO[1]]
                sim.skip_update_ids(TWO[0], 3)
                await wait_for(lambda: collector.snapshots[TWO[0]] >= 2, what="rebuild")
                await synced_at_sim(venue, collector, sim, TWO)
                for symbol in TWO:
                    assert_books_equal(collector, sim, symbol, 5000)
            assert collector.states(TWO[0])[0] is VenueState.RESYNCING
            assert "gap" in collector.statuses[TWO[0]][0].reason
            assert collector.statuses[TWO[1]] == []  # the other symbol went on untouched
            assert collector.snapshots[TWO[1]] == snapshots_before
            assert venue.stats.gaps == 1 and venue.stats.resyncs == 1

    run(scenario())


@pytest.mark.parametrize("kind", ["garbage", "missing_fields", "absurd", "oversized",
                                  "duplicate"])
def test_malformed_frames_are_counted_and_skipped(kind, spot_recording):
    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording, clone=2)) as sim:
            venue = venue_for(sim, snapshot_limit=5000)
            venue.subscribe(TWO)
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: all(collector.deltas[s] > 5 for s in TWO), what="sync")
                for _ in range(3):
                    sim.send_malformed(kind, TWO[0])
                    await asyncio.sleep(0.05)
                stats = venue.stats
                if kind == "duplicate":
                    await wait_for(lambda: stats.duplicates >= 3, what="duplicates counted")
                else:
                    await wait_for(lambda: stats.malformed.get(kind, 0) >= 3, what="counted")
                await synced_at_sim(venue, collector, sim, TWO)
                for symbol in TWO:
                    assert_books_equal(collector, sim, symbol, 5000)
            assert venue.stats.resyncs == 0 and venue.stats.reconnects == 0
            assert venue.stats.malformed == ({} if kind == "duplicate" else {kind: 3})

    run(scenario())


def test_crossed_book_is_rejected_and_only_that_symbol_resyncs(spot_recording):
    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording, clone=2)) as sim:
            venue = venue_for(sim, snapshot_limit=5000)
            venue.subscribe(TWO)
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: all(collector.deltas[s] > 5 for s in TWO), what="sync")
                sim.send_malformed("crossed", TWO[0])
                await wait_for(lambda: venue.stats.malformed.get("crossed", 0) == 1,
                               what="crossed counted")
                await wait_for(lambda: collector.snapshots[TWO[0]] >= 2, what="rebuild")
                await synced_at_sim(venue, collector, sim, TWO)
                for symbol in TWO:
                    assert_books_equal(collector, sim, symbol, 5000)
            assert VenueState.RESYNCING in collector.states(TWO[0])
            assert collector.statuses[TWO[1]] == []
            for bids, asks in collector.books.values():  # never published crossed
                assert max(bids) < min(asks)

    run(scenario())


def test_dropped_connection_reconnects_and_resyncs(spot_recording):
    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording, clone=2)) as sim:
            venue = venue_for(sim, snapshot_limit=5000)
            venue.subscribe(TWO)
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: all(collector.deltas[s] > 5 for s in TWO), what="sync")
                sim.drop_connections()
                await wait_for(lambda: venue.stats.reconnects >= 1, what="reconnect")
                marks = {s: collector.deltas[s] for s in TWO}
                await wait_for(lambda: all(collector.deltas[s] > marks[s] + 5 for s in TWO),
                               what="data after the reconnect")
                await synced_at_sim(venue, collector, sim, TWO)
                for symbol in TWO:
                    assert_books_equal(collector, sim, symbol, 5000)
                    assert collector.states(symbol)[0] is VenueState.DOWN
            assert sim.stats.disconnects["fault_drop"] == 1

    run(scenario())


def test_stalled_connection_is_reopened_by_the_watchdog(spot_recording):
    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording)) as sim:
            venue = venue_for(sim, snapshot_limit=5000, watchdog_s=0.5)
            venue.subscribe(["BTCUSDT"])
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: collector.deltas["BTCUSDT"] > 5, what="sync")
                sim.stall(3.0)
                await wait_for(lambda: venue.stats.watchdog_timeouts >= 1, what="watchdog")
                await wait_for(lambda: venue.stats.reconnects >= 1, what="reconnect")
                mark = collector.deltas["BTCUSDT"]
                await wait_for(lambda: collector.deltas["BTCUSDT"] > mark + 5,
                               what="data after the stall")
                await synced_at_sim(venue, collector, sim, ["BTCUSDT"])
                assert_books_equal(collector, sim, "BTCUSDT", 5000)

    run(scenario())


# ---------------------------------------------------------------------------
# Rotation
# ---------------------------------------------------------------------------


def test_planned_rotation_overlaps_connections_and_loses_no_update_id(spot_recording):
    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording, clone=2)) as sim:
            venue = venue_for(sim, snapshot_limit=5000, rotate_after_s=1.0)
            venue.subscribe(TWO)
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: venue.stats.rotations >= 3, what="three rotations")
                await synced_at_sim(venue, collector, sim, TWO)
                for symbol in TWO:
                    assert_books_equal(collector, sim, symbol, 5000)
            stats = venue.stats
            assert stats.gaps == 0 and stats.resyncs == 0 and stats.reconnects == 0
            assert all(collector.snapshots[s] == 1 for s in TWO)  # never rebuilt
            assert all(collector.statuses[s] == [] for s in TWO)
            assert stats.trade_gaps == 0
            assert sim.stats.connections_opened >= 4

    run(scenario())


def test_server_shutdown_rotates_at_once(spot_recording):
    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording, clone=2)) as sim:
            venue = venue_for(sim, snapshot_limit=5000, backoff_initial_s=5.0,
                              backoff_max_s=10.0)
            venue.subscribe(TWO)
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: all(collector.deltas[s] > 5 for s in TWO), what="sync")
                sim.server_shutdown()
                await wait_for(lambda: venue.stats.server_shutdowns == 1, what="notice")
                # a replacement is opened at once, not after the 5 s backoff
                await wait_for(lambda: sim.stats.connections_opened >= 2, timeout_s=3.0,
                               what="the replacement connection")
                marks = {s: collector.deltas[s] for s in TWO}
                await wait_for(lambda: all(collector.deltas[s] > marks[s] + 5 for s in TWO),
                               what="data after the rotation")
                await synced_at_sim(venue, collector, sim, TWO)
                for symbol in TWO:
                    assert_books_equal(collector, sim, symbol, 5000)
            assert sim.stats.disconnects["server_shutdown"] == 1

    run(scenario())


# ---------------------------------------------------------------------------
# Limits: REST weight, message rate, streams per connection
# ---------------------------------------------------------------------------


def test_429_makes_the_scheduler_wait_retry_after(spot_recording):
    async def scenario():
        config = sim_config(spot_recording, clone=6, weight_per_minute=120,
                            weight_window_s=2.0)
        async with ExchangeSimulator(config) as sim:
            symbols = sim.symbols
            venue = venue_for(sim, snapshot_limit=1000, snapshot_weight_per_minute=6000,
                              exchange_info=False)
            venue.subscribe(symbols)
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: all(collector.snapshots[s] >= 1 for s in symbols),
                               timeout_s=30, what="every symbol synced")
            stats = venue.stats
            assert stats.rate_limited >= 1  # the budget was exceeded (6 x 50 > 120 per 2 s)
            assert stats.rate_limited == sim.stats.http_429
            assert sim.stats.http_418 == 0  # Retry-After honoured: never banned
            assert stats.snapshots_applied >= len(symbols)

    run(scenario())


def test_the_weight_budget_keeps_requests_under_the_limit(spot_recording):
    async def scenario():
        config = sim_config(spot_recording, clone=6, weight_per_minute=120,
                            weight_window_s=2.0)
        async with ExchangeSimulator(config) as sim:
            symbols = sim.symbols
            # the client's own budget (per rolling minute) is what the server allows
            venue = venue_for(sim, snapshot_limit=1000, snapshot_weight_per_minute=100,
                              exchange_info=False)
            venue.subscribe(symbols[:2])
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: all(collector.snapshots[s] >= 1 for s in symbols[:2]),
                               what="two symbols synced")
                venue.subscribe(symbols[2:])
                await asyncio.sleep(1.0)
                assert venue.client.scheduler.pending() == len(symbols) - 2  # waiting
            assert sim.stats.http_429 == 0 and venue.stats.snapshot_weight_used == 100

    run(scenario())


def test_client_messages_stay_within_the_rate_limit(spot_recording):
    async def scenario():
        config = sim_config(spot_recording, clone=8, ping_interval_s=1.5)
        async with ExchangeSimulator(config) as sim:
            symbols = sim.symbols
            venue = venue_for(sim, messages_per_second=4.0)
            venue.subscribe(symbols[:1])
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: collector.snapshots[symbols[0]] >= 1, what="sync")
                for step in range(60):  # churn: a subscription change every 40 ms
                    symbol = symbols[1 + step % 7]
                    if symbol in venue.symbols:
                        venue.unsubscribe([symbol])
                    else:
                        venue.subscribe([symbol])
                    await asyncio.sleep(0.04)
                await wait_for(lambda: not venue.client.slots[0].changed.is_set() and
                               sim.stats.requests_in == venue.stats.messages_sent,
                               what="the last request to arrive")
                await asyncio.sleep(1.5)
            assert venue.stats.messages_sent >= 8  # the churn needed many messages
            assert sim.stats.disconnects.get("rate_limit", 0) == 0
            assert venue.stats.reconnects == 0

    run(scenario())


def test_symbols_are_spread_over_connections(spot_recording):
    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording, clone=5)) as sim:
            symbols = sim.symbols
            venue = venue_for(sim, snapshot_limit=5000, max_streams_per_connection=6)
            venue.subscribe(symbols)
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: all(collector.deltas[s] > 3 for s in symbols),
                               what="every symbol synced")
                assert sim.stats.connections_open == 3  # 2 symbols x 3 streams each
                assert len(venue.client.slots) == 3
                await synced_at_sim(venue, collector, sim, symbols)
                for symbol in symbols:
                    assert_books_equal(collector, sim, symbol, 5000)

    run(scenario())


def test_unsubscribe_stops_events_at_once_and_resubscribe_rebuilds(spot_recording):
    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording, clone=2)) as sim:
            venue = venue_for(sim)
            venue.subscribe(TWO)
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: all(collector.deltas[s] > 3 for s in TWO), what="sync")
                venue.unsubscribe([TWO[0]])
                count = sum(1 for e in collector.events if getattr(e, "symbol", None) == TWO[0])
                mark = collector.deltas[TWO[1]]
                await wait_for(lambda: collector.deltas[TWO[1]] > mark + 5, what="more data")
                after = sum(1 for e in collector.events if getattr(e, "symbol", None) == TWO[0])
                assert after == count
                frames = sim.stats.frames_per_stream.get(f"{TWO[0].lower()}@depth@100ms")
                await asyncio.sleep(0.3)
                assert sim.stats.frames_per_stream.get(f"{TWO[0].lower()}@depth@100ms") == frames
                venue.subscribe([TWO[0]])
                await wait_for(lambda: collector.snapshots[TWO[0]] == 2, what="rebuilt")

    run(scenario())


# ---------------------------------------------------------------------------
# The no-internet demo: the simulator inside run()
# ---------------------------------------------------------------------------


def test_simulate_option_runs_the_real_client_on_a_bundled_simulator(spot_recording):
    async def scenario():
        from marketcore_venue_binance import BinanceOptions, BinanceVenue

        venue = BinanceVenue(BinanceOptions(simulate=(str(spot_recording),),
                                            simulate_speed=10.0, snapshot_jitter_s=0.0))
        venue.subscribe(["BTCUSDT"])
        collector = Collector()
        async with running(venue, collector):
            await wait_for(lambda: collector.deltas["BTCUSDT"] > 5, what="data")
            assert venue.simulator is not None
            assert venue.client.ws_pool.urls == (venue.simulator.ws_url,)
        assert venue.simulator is None  # stopped with the venue
        assert venue.stats.connects == 1 and venue.stats.snapshots_applied == 1

    run(scenario())


def test_slow_snapshots_are_bridged_from_the_buffer(spot_recording):
    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording)) as sim:
            sim.delay_snapshots(0.8)  # many diffs arrive before the snapshot does
            venue = venue_for(sim, snapshot_limit=5000)
            venue.subscribe(["BTCUSDT"])
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: collector.deltas["BTCUSDT"] > 5, what="sync")
                first_batch = collector.deltas["BTCUSDT"]
                await synced_at_sim(venue, collector, sim, ["BTCUSDT"])
                assert_books_equal(collector, sim, "BTCUSDT", 5000)
            assert first_batch > 1  # the buffered events were applied right after it
            assert venue.stats.stale_snapshots == 0 and venue.stats.gaps == 0

    run(scenario())


def test_periodic_resnapshots_keep_the_book_exact(spot_recording):
    async def scenario():
        async with ExchangeSimulator(sim_config(spot_recording)) as sim:
            venue = venue_for(sim, snapshot_limit=5000, resnapshot_interval_s=0.4)
            venue.subscribe(["BTCUSDT"])
            collector = Collector()
            async with running(venue, collector):
                await wait_for(lambda: venue.stats.refreshes >= 2, what="two refreshes")
                await synced_at_sim(venue, collector, sim, ["BTCUSDT"])
                assert_books_equal(collector, sim, "BTCUSDT", 5000)
            assert collector.snapshots["BTCUSDT"] >= 3
            assert venue.stats.gaps == 0 and venue.stats.resyncs == 0
            assert collector.statuses["BTCUSDT"] == []

    run(scenario())
