"""Clones, loops and USDⓈ-M futures over real sockets."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from _sim_fixtures import (
    SHARED_USDM,
    DictBook,
    as_floats,
    head,
    http,
    http_json,
    run,
    shared_file,
    spot_source,
    synthetic_spot,
    synthetic_usdm,
)
from marketcore_venue_binance.recording import read_recording
from marketcore_venue_binance.simulator import ExchangeSimulator, SimulatorConfig
from marketcore_venue_binance.simulator.prices import ClonePrices, PriceScale
from websockets.asyncio.client import connect


@pytest.fixture(scope="module")
def spot(tmp_path_factory):
    return head(spot_source(), tmp_path_factory.mktemp("spot") / "spot.gz", 1200)


def recorded_data(path, stream):
    return [json.loads(raw)["data"] for _, raw in read_recording(path)
            if raw.startswith(b'{"stream":"%s"' % stream.encode())]


async def drain(ws, until, timeout: float = 20.0) -> list[dict]:
    """Combined-stream messages until ``until(messages)`` holds."""
    out: list[dict] = []
    async with asyncio.timeout(timeout):
        while not until(out):
            out.append(json.loads(await ws.recv()))
    return out


def test_clones_have_their_own_names_ids_and_scaled_prices(spot):
    depth = [d for d in recorded_data(spot, "btcusdt@depth@100ms") if d["u"] > 50093239218]
    trades = recorded_data(spot, "btcusdt@trade")
    scale = PriceScale(8, 2)

    async def scenario():
        config = SimulatorConfig((str(spot),), speed=0, clone=3, start="on_subscribe",
                                 rebase_time=False)
        async with ExchangeSimulator(config) as sim:
            assert sim.symbols == ("BTC0001USDT", "BTC0002USDT", "BTC0003USDT")
            names = [f"{s.lower()}@{k}" for s in sim.symbols for k in ("depth@100ms", "trade")]
            async with connect(f"{sim.ws_url}/stream?streams={'/'.join(names)}",
                               max_queue=None) as ws:
                total = 3 * (len(depth) + len(trades))
                messages = await drain(ws, lambda m: len(m) == total)
        by_stream: dict[str, list[dict]] = {}
        for message in messages:
            by_stream.setdefault(message["stream"], []).append(message["data"])
        offsets = set()
        for k, symbol in enumerate(sim.symbols, start=1):
            prices = ClonePrices(scale, 1000 + k - 1, 1000)
            got = by_stream[f"{symbol.lower()}@depth@100ms"]
            assert len(got) == len(depth)
            offset = got[0]["U"] - depth[0]["U"]
            offsets.add(offset)
            assert all(g["s"] == symbol for g in got)
            for g, d in zip(got, depth, strict=True):
                assert (g["U"] - d["U"], g["u"] - d["u"]) == (offset, offset)
                assert g["b"] == [[prices.text(scale.ticks(p)), q] for p, q in d["b"]]
                assert g["a"] == [[prices.text(scale.ticks(p)), q] for p, q in d["a"]]
            got_trades = by_stream[f"{symbol.lower()}@trade"]
            t_offset = got_trades[0]["t"] - trades[0]["t"]
            for g, t in zip(got_trades, trades, strict=True):
                assert g["t"] - t["t"] == t_offset and g["q"] == t["q"]
                assert g["p"] == prices.text(scale.ticks(t["p"])) and g["m"] == t["m"]
        assert len(offsets) == 3 and 0 in offsets  # distinct per clone; clone 1 as recorded
        high = ClonePrices(scale, 1002, 1000)
        assert float(high.text(scale.ticks(trades[0]["p"]))) == pytest.approx(
            float(trades[0]["p"]) * 1.002, abs=0.006)

    run(scenario())


def test_each_clone_bridges_its_own_snapshot_to_its_own_stream(spot):
    async def scenario():
        config = SimulatorConfig((str(spot),), speed=5, clone=4, start="on_subscribe")
        async with ExchangeSimulator(config) as sim:
            symbol = sim.symbols[2]
            stream = f"{symbol.lower()}@depth@100ms"
            async with connect(f"{sim.ws_url}/stream?streams={stream}", max_queue=None) as ws:
                buffered = [m["data"] for m in await drain(ws, lambda m: len(m) == 5)]
                snap = await http_json(f"{sim.rest_url}/api/v3/depth?symbol={symbol}&limit=5000")
                book = DictBook()
                buffered += [m["data"] for m in await drain(
                    ws, lambda m: m and m[-1]["data"]["u"] > snap["lastUpdateId"])]
                book.bridge(snap, buffered)
                sim.pause()
                await asyncio.sleep(0.2)
                while True:
                    try:
                        async with asyncio.timeout(0.2):
                            book.apply(json.loads(await ws.recv())["data"])
                    except TimeoutError:
                        break
            last_id, bids, asks = sim.book(symbol)
            assert book.last_id == last_id
            assert book.floats() == as_floats(bids, asks)
            other = sim.snapshot(sim.symbols[0], 5000)
            assert other["lastUpdateId"] != last_id  # ids are per clone
            assert len(other["bids"]) == len(bids)

    run(scenario())


def test_looping_keeps_ids_contiguous_and_the_book_consistent(tmp_path):
    path = synthetic_spot(tmp_path / "s.gz", events=20)

    async def scenario():
        config = SimulatorConfig((str(path),), speed=0, loop=True, start="manual")
        async with ExchangeSimulator(config) as sim:
            url = f"{sim.ws_url}/stream?streams=ethusdt@depth@100ms/ethusdt@trade/ethusdt@depth"
            async with connect(url, max_queue=None) as ws:
                snap = await http_json(f"{sim.rest_url}/api/v3/depth?symbol=ETHUSDT&limit=100")
                sim.resume()
                messages = await drain(ws, lambda m: sum(
                    x["stream"] == "ethusdt@depth@100ms" for x in m) >= 70)
                sim.pause()
                await asyncio.sleep(0.1)
                while True:
                    try:
                        async with asyncio.timeout(0.2):
                            messages.append(json.loads(await ws.recv()))
                    except TimeoutError:
                        break
            assert sim.stats.loops_completed >= 2
            for stream in ("ethusdt@depth@100ms", "ethusdt@depth"):
                diffs = [m["data"] for m in messages if m["stream"] == stream]
                assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(diffs))
                book = DictBook()
                book.bridge(snap, diffs)
                last_id, bids, asks = sim.book("ETHUSDT")
                if stream == "ethusdt@depth@100ms":
                    assert book.last_id == last_id
                    assert book.floats() == as_floats(bids, asks)
            trades = [m["data"] for m in messages if m["stream"] == "ethusdt@trade"]
            assert [t["t"] for t in trades] == list(range(5000, 5000 + len(trades)))
            times = [m["data"]["E"] for m in messages if m["stream"] == "ethusdt@depth@100ms"]
            assert times == sorted(times)

    run(scenario())


def test_futures_pu_chains_bridging_and_weights(tmp_path):
    path = synthetic_usdm(tmp_path / "u.gz")

    async def scenario():
        config = SimulatorConfig((str(path),), market="usdm", speed=0, start="manual")
        async with ExchangeSimulator(config) as sim:
            url = f"{sim.ws_url}/stream?streams=ethusdt@depth@0ms/ethusdt@depth@100ms"
            async with connect(url, max_queue=None) as ws:
                status, headers, body = await http(
                    f"{sim.rest_url}/fapi/v1/depth?symbol=ETHUSDT&limit=1000")
                snap = json.loads(body)
                assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "20"
                assert {"E", "T"} <= set(snap) and snap["lastUpdateId"] == 1020
                status, _, body = await http(f"{sim.rest_url}/fapi/v1/depth?symbol=ETHUSDT&limit=7")
                assert (status, json.loads(body)["code"]) == (400, -4021)
                sim.resume()
                messages = await drain(ws, lambda m: sum(
                    x["stream"] == "ethusdt@depth@0ms" for x in m) == 41)
                await sim.wait_finished()
                await asyncio.sleep(0.2)
                while True:
                    try:
                        async with asyncio.timeout(0.2):
                            messages.append(json.loads(await ws.recv()))
                    except TimeoutError:
                        break
            for stream in ("ethusdt@depth@0ms", "ethusdt@depth@100ms"):
                diffs = [m["data"] for m in messages if m["stream"] == stream]
                assert all(b["pu"] == a["u"] for a, b in itertools.pairwise(diffs))
                assert all("T" in d and d["e"] == "depthUpdate" for d in diffs)
                book = DictBook()
                book.bridge(snap, diffs, futures=True)
                _, bids, asks = sim.book("ETHUSDT")
                assert book.floats() == as_floats(bids, asks), stream

    run(scenario())


def test_futures_snapshot_mid_stream_lands_in_the_next_diffs_range(tmp_path):
    path = synthetic_usdm(tmp_path / "u.gz")

    async def scenario():
        config = SimulatorConfig((str(path),), market="usdm", speed=2, start="manual")
        async with ExchangeSimulator(config) as sim:
            async with connect(f"{sim.ws_url}/ws/ethusdt@depth@0ms", max_queue=None) as ws:
                sim.resume()
                async with asyncio.timeout(10):
                    first = [json.loads(await ws.recv()) for _ in range(10)]
                sim.pause()
                await asyncio.sleep(0.1)
                sent = list(first)
                while True:
                    try:
                        async with asyncio.timeout(0.2):
                            sent.append(json.loads(await ws.recv()))
                    except TimeoutError:
                        break
                snap = sim.snapshot("ETHUSDT")
                sim.resume()
                async with asyncio.timeout(10):
                    nxt = json.loads(await ws.recv())
            assert sent[-1]["u"] < snap["lastUpdateId"]
            assert nxt["pu"] == sent[-1]["u"]
            assert nxt["U"] <= snap["lastUpdateId"] <= nxt["u"]  # Binance's futures rule

    run(scenario())


def test_real_futures_recording_replays_with_its_pu_chain(tmp_path):
    path = head(shared_file(SHARED_USDM), tmp_path / "usdm.gz", 3000)

    async def scenario():
        config = SimulatorConfig((str(path),), market="usdm", speed=0, start="on_subscribe",
                                 rebase_time=False)
        async with ExchangeSimulator(config) as sim:
            url = f"{sim.ws_url}/stream?streams=btcusdt@depth@0ms/btcusdt@depth"
            async with connect(url, max_queue=None) as ws:
                await sim.wait_finished()
                messages = []
                while True:
                    try:
                        async with asyncio.timeout(0.3):
                            messages.append(json.loads(await ws.recv()))
                    except TimeoutError:
                        break
        raw = [m["data"] for m in messages if m["stream"] == "btcusdt@depth@0ms"]
        merged = [m["data"] for m in messages if m["stream"] == "btcusdt@depth"]
        recorded = [d for d in recorded_data(path, "btcusdt@depth@0ms")
                    if d["u"] >= 5123107852948]
        assert raw == recorded
        assert all(b["pu"] == a["u"] for a, b in itertools.pairwise(merged))
        assert merged[-1]["u"] == raw[-1]["u"] and len(merged) < len(raw) / 3

    run(scenario())


def test_futures_loop_keeps_the_pu_chain_across_the_rewind(tmp_path):
    path = synthetic_usdm(tmp_path / "u.gz", events=12)

    async def scenario():
        config = SimulatorConfig((str(path),), market="auto", speed=0, loop=True, clone=2,
                                 start="manual")
        async with ExchangeSimulator(config) as sim:
            symbol = sim.symbols[1]
            streams = f"{symbol.lower()}@depth@0ms/{symbol.lower()}@depth@500ms"
            async with connect(f"{sim.ws_url}/stream?streams={streams}", max_queue=None) as ws:
                snap = sim.snapshot(symbol)
                sim.resume()
                messages = await drain(ws, lambda m: len(m) >= 60)
                sim.pause()
                await asyncio.sleep(0.1)
                while True:
                    try:
                        async with asyncio.timeout(0.2):
                            messages.append(json.loads(await ws.recv()))
                    except TimeoutError:
                        break
            assert sim.stats.loops_completed >= 2
            for stream in streams.split("/"):
                diffs = [m["data"] for m in messages if m["stream"] == stream]
                assert all(b["pu"] == a["u"] for a, b in itertools.pairwise(diffs))
                book = DictBook()
                book.bridge(snap, diffs, futures=True)
                if stream.endswith("@0ms"):
                    _, bids, asks = sim.book(symbol)
                    assert book.floats() == as_floats(bids, asks)

    run(scenario())
