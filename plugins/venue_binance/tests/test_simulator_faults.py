"""Every fault the simulator injects, as a client over real sockets observes it."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
import websockets
from _sim_fixtures import DictBook, head, http, http_json, run, spot_source, wait_for
from marketcore_venue_binance.simulator import ExchangeSimulator, SimulatorConfig
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

TWO = ("BTC0001USDT", "BTC0002USDT")
# websockets parses other methods than GET from version 17 on; the endpoint takes both.
FAULT = "POST" if int(websockets.__version__.split(".")[0]) >= 17 else "GET"


@pytest.fixture(scope="module")
def spot(tmp_path_factory):
    return head(spot_source(), tmp_path_factory.mktemp("spot") / "spot.gz", 2000)


def config(path, **changes) -> SimulatorConfig:
    return SimulatorConfig((str(path),), **{"speed": 5, "start": "manual", **changes})


def depth_url(sim, *symbols: str) -> str:
    return f"{sim.ws_url}/stream?streams=" + "/".join(f"{s.lower()}@depth@100ms"
                                                      for s in symbols)


async def recv_json(ws, timeout: float = 10.0) -> dict:
    async with asyncio.timeout(timeout):
        return json.loads(await ws.recv())


async def quiet(ws, seconds: float = 0.2) -> list[str]:
    """Everything that arrives until nothing has for ``seconds``."""
    out = []
    while True:
        try:
            async with asyncio.timeout(seconds):
                out.append(await ws.recv())
        except TimeoutError:
            return out


def test_dropped_connections_end_without_a_close_frame(spot):
    async def scenario():
        async with ExchangeSimulator(config(spot, clone=2)) as sim:
            async with connect(depth_url(sim, *TWO)) as a, connect(depth_url(sim, TWO[0])) as b:
                await wait_for(lambda: sim.stats.connections_open == 2)
                sim.drop_connections()
                for ws in (a, b):
                    with pytest.raises(ConnectionClosed) as closed:
                        await recv_json(ws)
                    assert closed.value.rcvd is None  # no close frame: a cut connection
            await wait_for(lambda: sim.stats.disconnects["fault_drop"] == 2)
            assert sim.stats.faults["drop"] == 1

    run(scenario())


def test_skipped_update_ids_are_a_gap_on_that_symbol_only(spot):
    async def scenario():
        async with ExchangeSimulator(config(spot, clone=2)) as sim:
            async with connect(depth_url(sim, *TWO), max_queue=None) as ws:
                sim.resume()
                last: dict[str, int] = {}
                seen = []
                async with asyncio.timeout(20):
                    while len(last) < 2 or len(seen) < 6:
                        message = await recv_json(ws)
                        last[message["data"]["s"]] = message["data"]["u"]
                        seen.append(message)
                    sim.pause()
                    for message in await quiet(ws):
                        data = json.loads(message)["data"]
                        last[data["s"]] = data["u"]
                    sim.skip_update_ids(TWO[0], 7)
                    snap = sim.snapshot(TWO[0])
                    sim.resume()
                    nxt: dict[str, dict] = {}
                    while len(nxt) < 2:
                        data = (await recv_json(ws))["data"]
                        nxt.setdefault(data["s"], data)
            assert nxt[TWO[0]]["U"] == last[TWO[0]] + 1 + 7
            assert nxt[TWO[1]]["U"] == last[TWO[1]] + 1
            assert snap["lastUpdateId"] == last[TWO[0]] + 7  # a fresh snapshot bridges it
            assert sim.stats.faults["gap"] == 1

    run(scenario())


@pytest.mark.parametrize("kind", ["garbage", "missing_fields", "absurd", "duplicate"])
def test_malformed_frames_arrive_on_the_symbols_depth_stream(spot, kind):
    async def scenario():
        async with ExchangeSimulator(config(spot, clone=2)) as sim:
            async with connect(depth_url(sim, TWO[0]), max_queue=None) as ws:
                sim.resume()
                first = await recv_json(ws)
                sim.pause()
                frames = [first] + [json.loads(m) for m in await quiet(ws)]
                sim.send_malformed(kind, TWO[0])
                text = await ws.recv()
            last = frames[-1]["data"]
            prefix = '{"stream":"btc0001usdt@depth@100ms","data":'
            assert text.startswith(prefix)
            if kind == "garbage":
                with pytest.raises(ValueError):
                    json.loads(text)
                return
            data = json.loads(text)["data"]
            if kind == "missing_fields":
                assert data["e"] == "depthUpdate" and "U" not in data and "b" not in data
            elif kind == "absurd":
                levels = data["b"] + data["a"]
                assert ["1e300", "1.0"] in levels and ["NaN", "NaN"] in levels
                assert any(float(q) < 0 for _, q in levels if q != "NaN")
                assert data["U"] == data["u"] == last["u"] + 1
            else:
                assert data == last  # old ids: a client drops it
            assert sim.stats.faults[f"malformed:{kind}"] == 1

    run(scenario())


def test_an_oversized_frame_exceeds_a_default_client_limit(spot):
    async def scenario():
        async with ExchangeSimulator(config(spot, oversized_bytes=2 * 1024 * 1024)) as sim:
            url = depth_url(sim, "BTCUSDT")
            async with connect(url, max_size=None) as big, connect(url) as default:
                await wait_for(lambda: sim.stats.connections_open == 2)
                sim.send_malformed("oversized", "BTCUSDT")
                text = await big.recv()
                assert len(text) >= 2 * 1024 * 1024
                assert json.loads(text)["data"]["b"] == []
                with pytest.raises(ConnectionClosed) as closed:
                    await default.recv()
                assert closed.value.sent is not None
                assert closed.value.sent.code == 1009  # the client refused: message too big

    run(scenario())


def test_a_crossed_book_is_shown_for_one_diff_then_withdrawn(spot):
    async def scenario():
        async with ExchangeSimulator(config(spot)) as sim:
            async with connect(depth_url(sim, "BTCUSDT"), max_queue=None) as ws:
                book = DictBook()
                book.load(sim.snapshot("BTCUSDT", 5000))
                sim.resume()
                diffs = [(await recv_json(ws))["data"]]
                book.bridge({"lastUpdateId": book.last_id, "bids": list(book.bids.items()),
                             "asks": list(book.asks.items())}, diffs)
                sim.send_malformed("crossed", "BTCUSDT")
                crossed_at = None
                async with asyncio.timeout(20):
                    while True:
                        data = (await recv_json(ws))["data"]
                        book.apply(data)
                        best_bid = max(map(float, book.bids))
                        best_ask = min(map(float, book.asks))
                        if crossed_at is None and best_bid > best_ask:
                            crossed_at = data["u"]
                            snap = sim.snapshot("BTCUSDT", 5)
                            assert float(snap["bids"][0][0]) > float(snap["asks"][0][0])
                        elif crossed_at is not None:
                            assert best_bid < best_ask  # withdrawn by the next diff
                            break
            assert crossed_at is not None
            _, bids, _asks = sim.book("BTCUSDT")
            assert book.floats()[0] == {float(p): float(q) for p, q in bids.items()}

    run(scenario())


def test_a_stall_silences_one_symbol_and_it_resumes_with_a_gap(spot):
    async def scenario():
        async with ExchangeSimulator(config(spot, clone=2, speed=20)) as sim:
            async with connect(depth_url(sim, *TWO), max_queue=None) as ws:
                sim.resume()
                messages = [(await recv_json(ws))["data"] for _ in range(4)]
                sim.stall(0.5, TWO[0])
                await wait_for(lambda: sim.stats.frames_withheld >= 5, 10, "withheld frames")
                async with asyncio.timeout(20):
                    while sum(m["s"] == TWO[0] for m in messages) < 8:
                        messages.append((await recv_json(ws))["data"])
            stalled = [m for m in messages if m["s"] == TWO[0]]
            other = [m for m in messages if m["s"] == TWO[1]]
            gaps = [b["U"] - a["u"] - 1 for a, b in itertools.pairwise(stalled)]
            assert max(gaps) >= 1  # what was not sent is lost: a sequence gap
            assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(other))
            assert len(other) > len(stalled)

    run(scenario())


def test_server_shutdown_sends_the_notice_then_closes_and_accepts_reconnects(spot):
    async def scenario():
        async with ExchangeSimulator(config(spot)) as sim:
            async with connect(depth_url(sim, "BTCUSDT")) as ws:
                await wait_for(lambda: sim.stats.connections_open == 1)
                sim.server_shutdown()
                notice = await recv_json(ws)
                assert notice["e"] == "serverShutdown" and isinstance(notice["E"], int)
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1001
            async with connect(depth_url(sim, "BTCUSDT")):
                await wait_for(lambda: sim.stats.connections_open == 1)
            assert sim.stats.disconnects["server_shutdown"] == 1

    run(scenario())


def test_garbage_to_every_connection_when_no_symbol_is_named(spot):
    async def scenario():
        async with ExchangeSimulator(config(spot)) as sim, \
                connect(f"{sim.ws_url}/ws/btcusdt@trade") as raw, \
                connect(depth_url(sim, "BTCUSDT")) as combined:
            await wait_for(lambda: sim.stats.connections_open == 2)
            sim.send_malformed("garbage")
            for ws in (raw, combined):
                with pytest.raises(ValueError):
                    json.loads(await ws.recv())

    run(scenario())


def test_faults_over_http_for_out_of_process_tests(spot):
    async def scenario():
        async with ExchangeSimulator(config(spot)) as sim, \
                connect(depth_url(sim, "BTCUSDT"), max_queue=None) as ws:
            sim.resume()
            first = (await recv_json(ws))["data"]
            sim.pause()
            last = ([first] + [json.loads(m)["data"] for m in await quiet(ws)])[-1]
            status, _, body = await http(
                f"{sim.rest_url}/_sim/fault?kind=gap&symbol=BTCUSDT&count=4", FAULT)
            assert (status, json.loads(body)) == (200, {"ok": True, "kind": "gap"})
            status, _, _ = await http(f"{sim.rest_url}/_sim/fault?kind=bogus", FAULT)
            assert status == 400
            status, _, _ = await http(f"{sim.rest_url}/_sim/fault?kind=gap", FAULT)
            assert status == 400  # a gap needs a symbol
            sim.resume()
            nxt = (await recv_json(ws))["data"]
            assert nxt["U"] == last["u"] + 1 + 4
            stats = await http_json(f"{sim.rest_url}/_sim/stats")
            assert stats["faults"] == {"gap": 1} and stats["connections_open"] == 1
            book = await http_json(f"{sim.rest_url}/_sim/book?symbol=BTCUSDT")
            assert book["lastUpdateId"] >= nxt["u"] and book["bids"] and book["asks"]
            await http(f"{sim.rest_url}/_sim/fault?kind=delay_snapshots&seconds=0.2",
                       FAULT)
            assert sim.rest.snapshot_delay_s == 0.2
            await http(f"{sim.rest_url}/_sim/fault?kind=shutdown", FAULT)
            message = await recv_json(ws)
            while "stream" in message:  # diffs sent before the notice
                message = await recv_json(ws)
            assert message["e"] == "serverShutdown"

    run(scenario())
