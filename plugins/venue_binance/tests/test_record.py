"""The recorder: live frames and snapshots into the replay format, replayable as live."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from conftest import FAST, Collector, running, venue_for, wait_for
from marketcore.cli import main
from marketcore.events import BookSnapshot
from marketcore_venue_binance import BinanceOptions, BinanceVenue
from marketcore_venue_binance.record import Recorder
from marketcore_venue_binance.recording import read_recording
from marketcore_venue_binance.simulator import ExchangeSimulator, SimulatorConfig

TWO = ("BTC0001USDT", "BTC0002USDT")


def test_recorded_files_replay_to_the_live_book(spot_recording, tmp_path):
    async def scenario():
        config = SimulatorConfig(recordings=(str(spot_recording),), speed=10.0, clone=2)
        async with ExchangeSimulator(config) as sim:
            venue = venue_for(sim, streams=("depth@100ms", "trade", "ticker", "bookTicker"))
            venue.subscribe(TWO)
            recorder = Recorder(venue, tmp_path)
            live = Collector()
            stop = asyncio.Event()
            task = asyncio.create_task(recorder.run(stop=stop, emit=live))
            await wait_for(lambda: all(live.deltas[s] > 20 for s in TWO), what="data")
            stop.set()
            await task
            return recorder, live

    _, live = asyncio.run(asyncio.wait_for(scenario(), 60))
    files = sorted(tmp_path.glob("*.gz"))
    assert [f.name.split("_")[2] for f in files] == ["btc0001usdt", "btc0002usdt"]
    for path in files:  # the snapshot body is inline, after the events that bridge it
        lines = [raw for _, raw in read_recording(path)]
        snapshot_at = next(i for i, raw in enumerate(lines) if raw.startswith(b'{"lastUpdateId"'))
        assert any(b"depthUpdate" in raw for raw in lines[:snapshot_at])
    venue = BinanceVenue(BinanceOptions())
    replayed = Collector()
    for event in venue.replay(files, TWO):
        replayed(event)
    stats = venue.stats
    assert stats.gaps == 0 and stats.malformed_total == 0 and stats.snapshots_applied == 2
    for symbol in TWO:
        # the replay ends where the live client was when recording stopped
        assert replayed.last_id[symbol] == live.last_id[symbol]
        assert replayed.books[symbol] == live.books[symbol]
        assert isinstance(replayed.last_snapshot[symbol], BookSnapshot)


def test_record_command_against_the_simulator(spot_recording, tmp_path, capsys):
    ready = threading.Event()
    urls: dict[str, str] = {}
    done = threading.Event()

    def serve() -> None:
        async def body():
            config = SimulatorConfig(recordings=(str(spot_recording),), speed=10.0)
            async with ExchangeSimulator(config) as sim:
                urls.update(ws=sim.ws_url, rest=sim.rest_url)
                ready.set()
                while not done.is_set():
                    await asyncio.sleep(0.05)

        asyncio.run(body())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        assert ready.wait(30)
        status = main(["record", "btcusdt", "--ws-endpoint", urls["ws"], "--rest-endpoint",
                       urls["rest"], "--duration", "1.5", "--out", str(tmp_path / "rec")])
    finally:
        done.set()
        thread.join(30)
    assert status == 0
    files = list(Path(tmp_path / "rec").glob("binance_spot_btcusdt_*.gz"))
    assert len(files) == 1
    assert "BTCUSDT:" in capsys.readouterr().err
    venue = BinanceVenue()
    events = list(venue.replay(files, ["BTCUSDT"]))
    assert any(isinstance(e, BookSnapshot) for e in events)
    assert venue.stats.gaps == 0


def test_recorder_stops_cleanly_when_cancelled(spot_recording, tmp_path):
    async def scenario():
        config = SimulatorConfig(recordings=(str(spot_recording),), speed=10.0)
        async with ExchangeSimulator(config) as sim:
            venue = BinanceVenue(BinanceOptions(ws_endpoints=(sim.ws_url,),
                                                rest_endpoints=(sim.rest_url,), **FAST))
            venue.subscribe(["BTCUSDT"])
            recorder = Recorder(venue, tmp_path)
            collector = Collector()
            task = asyncio.create_task(recorder.run(emit=collector))
            await wait_for(lambda: collector.deltas["BTCUSDT"] > 3, what="data")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return recorder

    recorder = asyncio.run(asyncio.wait_for(scenario(), 60))
    (writer,) = recorder.writers.values()
    assert writer.frames > 3
    assert sum(1 for _ in read_recording(writer.path)) == writer.frames


def test_running_helper_reraises_a_venue_failure(spot_recording):
    async def scenario():
        venue = BinanceVenue(BinanceOptions(simulate=(str(spot_recording) + ".missing",)))
        venue.subscribe(["BTCUSDT"])
        try:
            async with running(venue, Collector()) as task:
                await asyncio.sleep(0.1)
                assert task.done()
        except FileNotFoundError as error:
            return str(error)
        return ""

    assert "venue.simulate" in asyncio.run(scenario())
