"""The simulator's streams and REST over real sockets: content, bridging, control, speed."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter

import pytest
from _sim_fixtures import (
    DictBook,
    as_floats,
    head,
    http,
    http_json,
    run,
    spot_source,
    synthetic_spot,
    wait_for,
)
from marketcore_venue_binance.recording import read_recording
from marketcore_venue_binance.simulator import ExchangeSimulator, SimulatorConfig
from websockets.asyncio.client import connect

SNAPSHOT_ID = 50093239218  # the real spot recording's snapshot


@pytest.fixture(scope="module")
def spot(tmp_path_factory):
    """The first 2000 frames (~17 s) of the real spot recording."""
    return head(spot_source(), tmp_path_factory.mktemp("spot") / "spot.gz", 2000)


def recorded(path, stream):
    """The ``data`` bytes of every frame of ``stream`` in a recording, in order."""
    out = []
    for _, raw in read_recording(path):
        if raw.startswith(b'{"stream":"%s"' % stream.encode()):
            out.append(raw[raw.index(b'"data":') + 7:-1])
    return out


def recorded_snapshot(path):
    for _, raw in read_recording(path):
        if raw.startswith(b'{"lastUpdateId"'):
            return json.loads(raw)
    raise AssertionError("no snapshot")


def data_of(message: str, stream: str) -> bytes:
    prefix = f'{{"stream":"{stream}","data":'
    assert message.startswith(prefix) and message.endswith("}"), message[:80]
    return message[len(prefix):-1].encode()


async def receive(ws, count: int, timeout: float = 20.0) -> list[str]:
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            out.append(await ws.recv())
    return out


def test_combined_streams_replay_the_recording_byte_for_byte(spot):
    streams = ["btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@bookTicker"]
    expected = {s: recorded(spot, s) for s in streams}
    depth = expected["btcusdt@depth@100ms"]
    expected["btcusdt@depth@100ms"] = [d for d in depth
                                       if json.loads(d)["u"] > SNAPSHOT_ID]  # in the snapshot
    assert len(depth) - len(expected["btcusdt@depth@100ms"]) == 2
    total = sum(len(v) for v in expected.values())

    async def scenario():
        config = SimulatorConfig((str(spot),), speed=0, start="on_subscribe", rebase_time=False)
        async with ExchangeSimulator(config) as sim:
            assert sim.symbols == ("BTCUSDT",)
            url = f"{sim.ws_url}/stream?streams={'/'.join(streams)}"
            async with connect(url, max_queue=None) as ws:
                messages = await receive(ws, total)
                await sim.wait_finished()
            got = {s: [] for s in streams}
            for message in messages:
                stream = json.loads(message)["stream"]
                got[stream].append(data_of(message, stream))
            assert got == expected
            ids = [json.loads(d) for d in got["btcusdt@depth@100ms"]]
            assert ids[0]["U"] <= SNAPSHOT_ID + 1 <= ids[0]["u"]
            assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(ids))
            assert sim.stats.frames_per_stream == {s: len(v) for s, v in expected.items()}
            assert sim.stats.replay_finished

    run(scenario())


def test_raw_stream_path_sends_bare_events(spot):
    expected = recorded(spot, "btcusdt@trade")

    async def scenario():
        config = SimulatorConfig((str(spot),), speed=0, start="on_subscribe", rebase_time=False)
        async with ExchangeSimulator(config) as sim:
            async with connect(f"{sim.ws_url}/ws/btcusdt@trade", max_queue=None) as ws:
                messages = await receive(ws, len(expected))
            assert [m.encode() for m in messages] == expected

    run(scenario())


def test_a_snapshot_mid_stream_bridges_and_the_book_ends_as_the_recording_does(spot):
    """Binance's procedure against the simulator: buffer, fetch (slowly), bridge, apply."""
    reference = DictBook()
    recorded_diffs = [json.loads(d) for d in recorded(spot, "btcusdt@depth@100ms")]
    reference.bridge(recorded_snapshot(spot), recorded_diffs)

    async def scenario():
        config = SimulatorConfig((str(spot),), speed=20, start="on_subscribe")
        async with ExchangeSimulator(config) as sim:
            url = f"{sim.ws_url}/stream?streams=btcusdt@depth@100ms"
            async with connect(url, max_queue=None) as ws:
                buffered = [json.loads(m)["data"] for m in await receive(ws, 10)]
                sim.delay_snapshots(0.3)  # the answer comes after newer diffs
                fetch = asyncio.create_task(http_json(
                    f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=5000"))
                while not fetch.done():
                    try:
                        async with asyncio.timeout(0.01):
                            buffered.append(json.loads(await ws.recv())["data"])
                    except TimeoutError:
                        pass
                snap = fetch.result()
                before = [e for e in buffered if e["u"] > snap["lastUpdateId"]]
                assert before, "no diff newer than the snapshot arrived before it"
                book = DictBook()
                applied = book.bridge(snap, buffered)
                assert applied and applied[0]["U"] <= snap["lastUpdateId"] + 1
                sim_id = sim.snapshot("BTCUSDT")["lastUpdateId"]
                async with asyncio.timeout(30):
                    while book.last_id != reference.last_id:
                        book.apply(json.loads(await ws.recv())["data"])
                await sim.wait_finished()
                assert sim_id <= book.last_id
            last_id, bids, asks = sim.book("BTCUSDT")
            assert last_id == book.last_id == reference.last_id
            assert book.floats() == as_floats(bids, asks) == reference.floats()
            assert sim.stats.snapshots_served == 1 and sim.stats.weight_used == 250

    run(scenario())


def test_live_subscribe_unsubscribe_list_and_properties(spot):
    async def scenario():
        config = SimulatorConfig((str(spot),), speed=1, start="manual")
        async with ExchangeSimulator(config) as sim, connect(f"{sim.ws_url}/stream") as ws:
            async def call(request):
                await ws.send(json.dumps(request))
                reply = json.loads(await ws.recv())
                await asyncio.sleep(0.21)  # stay under 5 messages per second
                return reply

            params = ["btcusdt@trade", "btcusdt@depth@100ms"]
            assert await call({"method": "SUBSCRIBE", "params": params, "id": 1}) == \
                    {"result": None, "id": 1}
            assert await call({"method": "LIST_SUBSCRIPTIONS", "id": 2}) == \
                    {"result": sorted(params), "id": 2}
            assert await call({"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"],
                               "id": 3}) == {"result": None, "id": 3}
            assert (await call({"method": "LIST_SUBSCRIPTIONS", "id": 4}))["result"] == \
                    ["btcusdt@depth@100ms"]
            assert await call({"method": "GET_PROPERTY", "params": ["combined"],
                               "id": 5}) == {"result": True, "id": 5}
            sim.resume()
            first = json.loads(await ws.recv())
            assert first["stream"] == "btcusdt@depth@100ms"
            assert sim.stats.requests_in == 5

    run(scenario())


def test_bad_requests_get_binance_style_errors(spot):
    async def scenario():
        config = SimulatorConfig((str(spot),), speed=0, start="manual")
        async with ExchangeSimulator(config) as sim:
            async with connect(f"{sim.ws_url}/stream") as ws:
                cases = [
                    ("{not json", 3, None),
                    (json.dumps({"method": "SUBSCRIBE", "params": ["BTCUSDT@trade"],
                                 "id": 7}), 2, 7),
                    (json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trades"],
                                 "id": 8}), 2, 8),
                    (json.dumps({"method": "PING", "id": 9}), 2, 9),
                    (json.dumps({"params": [], "id": 10}), 2, 10),
                    (json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": -1}), 2, None),
                    (json.dumps({"method": "SET_PROPERTY", "params": ["combined", "yes"],
                                 "id": 11}), 1, 11),
                    (json.dumps({"method": "GET_PROPERTY", "params": ["colour"], "id": 12}),
                     0, 12),
                ]
                replies = []
                for text, code, rid in cases:
                    await ws.send(text)
                    reply = json.loads(await ws.recv())
                    assert reply["error"]["code"] == code, (text, reply)
                    assert reply["id"] == rid and reply["error"]["msg"]
                    replies.append(reply)
                    await asyncio.sleep(0.21)
                assert "lower case" in replies[1]["error"]["msg"]
                assert "unknown variant `PING`" in replies[3]["error"]["msg"]
            assert sim.stats.request_errors == len(cases)

    run(scenario())


def test_event_times_are_rebased_onto_the_clock_and_scaled_by_speed(spot):
    trades = [json.loads(d) for d in recorded(spot, "btcusdt@trade")][:200]

    async def scenario():
        config = SimulatorConfig((str(spot),), speed=10, start="on_subscribe")
        async with ExchangeSimulator(config) as sim, \
                connect(f"{sim.ws_url}/stream?streams=btcusdt@trade") as ws:
            got = [json.loads(m)["data"] for m in await receive(ws, 200)]
        assert [g["t"] for g in got] == [t["t"] for t in trades]
        assert abs(got[0]["E"] - time.time() * 1000) < 60_000  # live-looking, not 2024
        for g, t in zip(got, trades, strict=True):
            recorded_ms = t["E"] - trades[0]["E"]
            assert abs((g["E"] - got[0]["E"]) - recorded_ms / 10) <= 1

    run(scenario())


def test_every_simulated_second_carries_the_recorded_frames(spot):
    """Speed changes the pace, never the content: frames per recorded second are equal."""
    trades = [json.loads(d) for d in recorded(spot, "btcusdt@trade")]
    per_second = Counter(t["T"] // 1000 for t in trades)

    async def scenario():
        config = SimulatorConfig((str(spot),), speed=50, start="on_subscribe",
                                 rebase_time=False)
        async with ExchangeSimulator(config) as sim, \
                connect(f"{sim.ws_url}/stream?streams=btcusdt@trade", max_queue=None) as ws:
            got = [json.loads(m)["data"] for m in await receive(ws, len(trades))]
        assert Counter(g["T"] // 1000 for g in got) == per_second

    run(scenario())


def test_synthesized_ticker_and_aggregate_trades(spot):
    trades = [json.loads(d) for d in recorded(spot, "btcusdt@trade")]

    async def scenario():
        config = SimulatorConfig((str(spot),), speed=0, start="on_subscribe", rebase_time=False)
        async with ExchangeSimulator(config) as sim:
            url = f"{sim.ws_url}/stream?streams=btcusdt@aggTrade/btcusdt@ticker"
            async with connect(url, max_queue=None) as ws:
                messages = []
                async with asyncio.timeout(20):
                    await sim.wait_finished()
                    while True:
                        try:
                            async with asyncio.timeout(0.5):
                                messages.append(json.loads(await ws.recv()))
                        except TimeoutError:
                            break
        aggs = [m["data"] for m in messages if m["stream"] == "btcusdt@aggTrade"]
        tickers = [m["data"] for m in messages if m["stream"] == "btcusdt@ticker"]
        assert aggs[0]["f"] == trades[0]["t"] and aggs[-1]["l"] == trades[-1]["t"]
        assert all(b["f"] == a["l"] + 1 for a, b in itertools.pairwise(aggs))
        assert all(b["a"] == a["a"] + 1 for a, b in itertools.pairwise(aggs))
        by_id = {t["t"]: t for t in trades}
        for agg in aggs:
            group = [by_id[i] for i in range(agg["f"], agg["l"] + 1)]
            assert {(t["p"], t["m"], t["T"]) for t in group} == {(agg["p"], agg["m"], agg["T"])}
            assert abs(sum(float(t["q"]) for t in group) - float(agg["q"])) < 1e-9
        assert len(tickers) >= 15
        assert all(b["E"] - a["E"] == 1000 for a, b in itertools.pairwise(tickers))
        last = tickers[-1]
        assert last["e"] == "24hrTicker" and last["s"] == "BTCUSDT"
        assert float(last["l"]) <= float(last["c"]) <= float(last["h"])
        assert float(last["l"]) <= float(last["o"]) <= float(last["h"])
        assert trades[-30]["t"] <= last["L"] <= trades[-1]["t"]  # the last trade before it
        assert last["L"] - last["F"] + 1 == last["n"]
        assert float(last["v"]) > 0 and float(last["q"]) > float(last["v"]) * 50_000
        assert abs(float(last["p"]) - (float(last["c"]) - float(last["o"]))) < 0.011
        assert float(last["b"]) < float(last["a"])
        assert all(float(b["v"]) != float(a["v"]) for a, b in itertools.pairwise(tickers))

    run(scenario())


def test_slower_depth_speed_merges_diffs_and_builds_the_same_book(spot):
    reference = DictBook()
    reference.bridge(recorded_snapshot(spot),
                     [json.loads(d) for d in recorded(spot, "btcusdt@depth@100ms")])

    async def scenario():
        config = SimulatorConfig((str(spot),), speed=0, start="manual")
        async with ExchangeSimulator(config) as sim, \
                connect(f"{sim.ws_url}/stream?streams=btcusdt@depth", max_queue=None) as ws:
            snap = await http_json(f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=5000")
            sim.resume()
            book = DictBook()
            events = []
            async with asyncio.timeout(20):
                while not events or events[-1]["u"] < reference.last_id:
                    events.append(json.loads(await ws.recv())["data"])
            book.bridge(snap, events)
        assert 14 <= len(events) <= 20  # ~17 s at one merged diff per second
        assert book.last_id == reference.last_id
        assert book.floats() == reference.floats()

    run(scenario())


def test_partial_book_depth_is_the_top_of_the_book(spot):
    async def scenario():
        config = SimulatorConfig((str(spot),), speed=0, start="manual")
        async with ExchangeSimulator(config) as sim:
            url = f"{sim.ws_url}/stream?streams=btcusdt@depth@100ms/btcusdt@depth5@100ms"
            async with connect(url, max_queue=None) as ws:
                book = DictBook()
                book.load(await http_json(
                    f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=5000"))
                sim.resume()
                checked = 0
                diffs = []
                async with asyncio.timeout(20):
                    while checked < 50:
                        message = json.loads(await ws.recv())
                        data = message["data"]
                        if message["stream"] == "btcusdt@depth@100ms":
                            diffs.append(data)
                            if len(diffs) == 1:
                                book.bridge({"lastUpdateId": book.last_id,
                                             "bids": list(book.bids.items()),
                                             "asks": list(book.asks.items())}, diffs)
                            else:
                                book.apply(data)
                            continue
                        assert data["lastUpdateId"] == book.last_id
                        top_bids = sorted(book.bids.items(), key=lambda kv: -float(kv[0]))[:5]
                        top_asks = sorted(book.asks.items(), key=lambda kv: float(kv[0]))[:5]
                        assert [tuple(level) for level in data["bids"]] == top_bids
                        assert [tuple(level) for level in data["asks"]] == top_asks
                        checked += 1

    run(scenario())


def test_rest_endpoints_and_errors(spot):
    async def scenario():
        config = SimulatorConfig((str(spot),), speed=0, start="manual")
        async with ExchangeSimulator(config) as sim:
            base = sim.rest_url
            status, headers, body = await http(f"{base}/api/v3/depth?symbol=BTCUSDT&limit=5")
            snap = json.loads(body)
            assert status == 200 and headers["X-MBX-USED-WEIGHT-1M"] == "5"
            assert snap["lastUpdateId"] == SNAPSHOT_ID  # nothing replayed yet
            assert len(snap["bids"]) == len(snap["asks"]) == 5
            assert float(snap["bids"][0][0]) < float(snap["asks"][0][0])
            default = await http_json(f"{base}/api/v3/depth?symbol=BTCUSDT")
            assert len(default["bids"]) == 100
            info = await http_json(f"{base}/api/v3/exchangeInfo?symbol=BTCUSDT")
            (symbol,) = info["symbols"]
            filters = {f["filterType"]: f for f in symbol["filters"]}
            assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
            assert filters["LOT_SIZE"]["stepSize"] == "0.00000001"
            assert (symbol["baseAsset"], symbol["quoteAsset"]) == ("BTC", "USDT")
            assert await http_json(f"{base}/api/v3/ping") == {}
            assert abs((await http_json(f"{base}/api/v3/time"))["serverTime"]
                       - time.time() * 1000) < 60_000
            for query, code in [("symbol=ETHUSDT", -1121), ("", -1102),
                                ("symbol=btcusdt", -1100), ("symbol=BTCUSDT&limit=x", -1100)]:
                status, _, body = await http(f"{base}/api/v3/depth?{query}")
                assert (status, json.loads(body)["code"]) == (400, code), query
            status, _, body = await http(f"{base}/fapi/v1/depth?symbol=BTCUSDT")
            assert status == 404 and b"serves spot" in body
            status, _, _ = await http(f"{base}/nowhere")
            assert status == 404
            assert sim.stats.weight_used == 5 + 5 + 20 + 1 + 1 + 4

    run(scenario())


def test_a_synthetic_recording_replays_with_its_own_symbol(tmp_path):
    path = synthetic_spot(tmp_path / "eth.gz")

    async def scenario():
        config = SimulatorConfig((str(path),), speed=0, start="on_subscribe")
        async with ExchangeSimulator(config) as sim:
            assert sim.symbols == ("ETHUSDT",)
            async with connect(f"{sim.ws_url}/ws/ethusdt@depth@100ms", max_queue=None) as ws:
                events = [json.loads(m) for m in await receive(ws, 41)]
            assert events[0]["U"] == 1003 and events[-1]["u"] == 1006 + 80
            await wait_for(lambda: sim.stats.replay_finished, what="the end of the replay")

    run(scenario())
