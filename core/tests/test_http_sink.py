"""The ``http`` sink over real sockets: every endpoint, every error code, the WebSocket
stream, a slow client, ``/healthz``, and serving a fleet's reports from a sibling sink."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import tempfile
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pytest
from marketcore import hookimpl
from marketcore.components import Publication, WriterToken
from marketcore.events import VenueState
from marketcore.report import encode_report
from marketcore.testing import free_port, make_plugin_manager, make_state, run_cycle, run_node

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import ConnectionClosed, InvalidStatus  # noqa: E402

NOW_MS = 1_760_000_000_000
LOCAL_TOKEN = WriterToken(0, 1)


def make_sink(**options: Any) -> Any:
    """An ``http`` sink built the way a profile builds it: registry, options class, factory."""
    registration = make_plugin_manager().registries.sinks["http"]
    return registration.factory(registration.options(**{"bind": "127.0.0.1:0", **options}))


def publication(symbol: str, *, price: float = 100.0, now_ms: int = NOW_MS,
                venue_state: VenueState = VenueState.CONNECTED, node_id: str = "node-a",
                token: WriterToken = LOCAL_TOKEN) -> Publication:
    """A real report (host base fields from a literal book), encoded once like the node does."""
    state = make_state(symbol=symbol, bids=[(price - 0.5, 1.0)], asks=[(price + 0.5, 2.0)],
                       trades=[(now_ms - 20, price, 0.5, "buy")], event_ms=now_ms - 20,
                       venue_state=venue_state)
    report, _ = run_cycle([], state, now_ms=now_ms, node_id=node_id)
    report["writer"]["writerToken"], report["writer"]["epoch"] = token.counter, token.epoch
    return Publication(symbol, token, report, encode_report(report))


def request(port: int, path: str, method: str = "GET", body: bytes | None = None,
            headers: Mapping[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


async def aget(port: int, path: str, method: str = "GET",
               body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    return await asyncio.to_thread(request, port, path, method, body)


def serve(test, **options: Any) -> None:
    """Run ``test(sink)`` against a started sink on a free port, then close it."""
    async def main() -> None:
        sink = make_sink(**options)
        await sink.start()
        try:
            await test(sink)
        finally:
            await sink.close()

    asyncio.run(main())


# ---------------------------------------------------------------------------
# GET /get_report, /reports, unknown paths
# ---------------------------------------------------------------------------


def test_get_report_serves_the_latest_published_report_as_published():
    async def test(sink):
        first, second = publication("BTCUSDT", price=100), publication("BTCUSDT", price=101)
        await sink.publish([first, publication("ETHUSDT")])
        status, headers, body = await aget(sink.port, "/get_report?symbol=BTCUSDT")
        assert (status, body) == (200, first.payload)
        assert headers["content-type"].startswith("application/json")
        assert headers["cache-control"] == "no-store"
        await sink.publish([second])
        status, _, body = await aget(sink.port, "/get_report?symbol=BTCUSDT")
        assert status == 200 and body == second.payload != first.payload
        assert json.loads(body)["last_price"] == 101

    serve(test)


@pytest.mark.parametrize("query", [
    "symbol=btcusdt", "symbol=BTC-USDT", "symbol=<script>alert(1)</script>", "symbol=B",
    "symbol=" + "X" * 21, "symbol=", "", "symbol=BTCUSDT&symbol=ETHUSDT", "symbol=BTC%00USDT",
    "symbol=%E2%82%BFUSDT", "symbol=BTCUSDT%0D%0AX-Injected:%201",
    "&".join(f"p{i}=1" for i in range(40)),
])
def test_malformed_input_is_400_with_a_json_error_that_never_echoes_it(query):
    async def test(sink):
        await sink.publish([publication("BTCUSDT")])
        status, headers, body = await aget(sink.port, "/get_report?" + query)
        assert status == 400
        error = json.loads(body)
        assert error["status"] == 400 and error["error"]
        assert "x-injected" not in headers
        for raw in ("script", "btcusdt", "BTC-USDT", "XXXXXXXXXXXXXXXXXXXXX", "p39", "\x00"):
            if raw in query:
                assert raw not in body.decode(), body

    serve(test)


def test_an_unknown_but_wellformed_symbol_is_404_naming_it():
    async def test(sink):
        await sink.publish([publication("BTCUSDT")])
        status, _, body = await aget(sink.port, "/get_report?symbol=DOGEUSDT")
        assert status == 404
        assert json.loads(body) == {"error": "unknown symbol: no report for it", "status": 404,
                                    "symbol": "DOGEUSDT"}

    serve(test)


@pytest.mark.parametrize("path", ["/nope", "/get_report/x", "/../../etc/passwd", "/metrics",
                                  "/%3Cscript%3E"])
def test_an_unknown_path_is_404_and_the_path_is_not_echoed(path):
    async def test(sink):
        status, _, body = await aget(sink.port, path)
        assert status == 404
        error = json.loads(body)
        assert error["status"] == 404
        assert path not in body.decode() and "script" not in body.decode()

    serve(test)


def test_the_allow_list_is_an_option():
    async def test(sink):
        await sink.publish([publication("btc_usdt")])
        assert (await aget(sink.port, "/get_report?symbol=btc_usdt"))[0] == 200
        assert (await aget(sink.port, "/get_report?symbol=BTCUSDT"))[0] == 400

    serve(test, symbol_pattern="[a-z_]{3,12}")


def test_reports_lists_every_symbol_with_age_status_owner_and_token():
    async def test(sink):
        now = int(time.time() * 1000)
        await sink.publish([publication("ETHUSDT", now_ms=now, token=WriterToken(2, 7)),
                            publication("BTCUSDT", now_ms=now - 5000, node_id="node-b")])
        status, _, body = await aget(sink.port, "/reports")
        index = json.loads(body)
        assert status == 200 and index["count"] == 2
        btc, eth = index["reports"]
        assert (btc["symbol"], btc["owner"], btc["status"]) == ("BTCUSDT", "node-b", "ok")
        assert (eth["symbol"], eth["epoch"], eth["token"]) == ("ETHUSDT", 2, 7)
        assert btc["age_ms"] >= 5000 > eth["age_ms"] >= 0

    serve(test)


# ---------------------------------------------------------------------------
# 405 on anything but GET, over a raw socket as clients send it
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "body"), [
    ("POST", b"symbol=BTCUSDT"), ("POST", None), ("PUT", b'{"a": 1}'), ("DELETE", None),
    ("PATCH", b"x" * 5000), ("OPTIONS", None), ("HEAD", None),
])
def test_every_method_but_get_is_405_with_allow_get(method, body):
    async def test(sink):
        await sink.publish([publication("BTCUSDT")])
        for path in ("/get_report?symbol=BTCUSDT", "/reports", "/ws", "/"):
            status, headers, answer = await aget(sink.port, path, method, body)
            assert status == 405, (method, path)
            assert headers["allow"] == "GET"
            if method != "HEAD":
                assert json.loads(answer)["status"] == 405

    serve(test)


def test_a_request_line_split_across_packets_still_gets_405():
    async def test(sink):
        def raw() -> bytes:
            with socket.create_connection(("127.0.0.1", sink.port), timeout=10) as sock:
                sock.sendall(b"DEL")
                time.sleep(0.2)
                sock.sendall(b"ETE /reports HTTP/1.1\r\nHost: x\r\n\r\n")
                chunks = []
                while chunk := sock.recv(4096):
                    chunks.append(chunk)
                return b"".join(chunks)

        answer = await asyncio.to_thread(raw)
        assert answer.startswith(b"HTTP/1.1 405 ")

    serve(test)


# ---------------------------------------------------------------------------
# /healthz
# ---------------------------------------------------------------------------


def test_healthz_is_200_while_symbols_are_live_and_503_when_all_are_down():
    async def test(sink):
        await sink.publish([publication("BTCUSDT"), publication("ETHUSDT")])
        status, _, body = await aget(sink.port, "/healthz")
        health = json.loads(body)
        assert (status, health["status"], health["problems"]) == (200, "ok", [])
        assert health["symbols"] == {"owned": 2, "ok": 2, "degraded": 0, "down": 0,
                                     "no_report": 0}
        await sink.publish([publication("BTCUSDT", venue_state=VenueState.DOWN)])
        status, _, body = await aget(sink.port, "/healthz")
        assert (status, json.loads(body)["status"]) == (200, "degraded")
        await sink.publish([publication("ETHUSDT", venue_state=VenueState.DOWN)])
        status, _, body = await aget(sink.port, "/healthz")
        health = json.loads(body)
        assert status == 503 and health["status"] == "unhealthy"
        assert health["problems"] == ["all 2 owned symbols are down or have no report yet"]

    serve(test)


class Probe(threading.Thread):
    """Queries a live node's read API from a thread while the node runs in this one."""

    def __init__(self, port: int, paths: Sequence[str]) -> None:
        super().__init__(daemon=True)
        self.port, self.paths = port, paths
        self.answers: dict[str, tuple[int, Any]] = {}
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    status, _, _ = request(self.port, "/healthz")
                except OSError:
                    status = 0
                if status == 200:
                    break
                time.sleep(0.1)
            for path in self.paths:
                status, _, body = request(self.port, path)
                self.answers[path] = (status, json.loads(body))
        except BaseException as error:  # reported by the test
            self.failure = error


def test_healthz_of_a_live_node_names_node_venue_coordinator_and_sinks():
    port = free_port()
    profile = f"""
[node]
id = "node-h"
symbols = ["BTCUSDT", "ETHUSDT"]
[venue]
use = "synthetic"
[[sink]]
use = "jsonl"
path = "{{tmp}}"
[[sink]]
use = "http"
bind = "127.0.0.1:{port}"
"""
    with tempfile.TemporaryDirectory() as tmp:
        probe = Probe(port, ["/healthz", "/reports", "/get_report?symbol=ETHUSDT"])
        probe.start()
        run_node(profile.replace("{tmp}", f"{tmp}/r.jsonl"), duration_s=4,
                 plugin_manager=make_plugin_manager())
        probe.join(30)
    assert probe.failure is None, probe.failure
    status, health = probe.answers["/healthz"]
    assert status == 200 and health["status"] in ("ok", "degraded")
    assert health["node"]["id"] == "node-h" and health["node"]["fast_cycle"]["runs"] > 0
    assert health["venue"]["name"] == "synthetic"
    assert health["coordinator"]["name"] == "local"
    assert set(health["sinks"]) == {"jsonl", "http"}
    assert health["sinks"]["http"]["stats"]["requests"] >= 1
    assert health["read_api"]["serves_from"] == "self"
    assert [e["symbol"] for e in probe.answers["/reports"][1]["reports"]] == ["BTCUSDT", "ETHUSDT"]
    status, report = probe.answers["/get_report?symbol=ETHUSDT"]
    assert status == 200 and report["writer"]["nodeId"] == "node-h"


# ---------------------------------------------------------------------------
# WebSocket /ws
# ---------------------------------------------------------------------------


def test_ws_sends_current_reports_then_every_update_of_the_chosen_symbols():
    async def test(sink):
        btc, eth = publication("BTCUSDT"), publication("ETHUSDT")
        await sink.publish([btc, eth])
        url = f"ws://127.0.0.1:{sink.port}/ws"
        async with connect(url + "?symbols=BTCUSDT") as only_btc, connect(url) as every:
            assert json.loads(await only_btc.recv()) == [json.loads(btc.payload)]
            assert [r["symbol"] for r in json.loads(await every.recv())] == ["BTCUSDT", "ETHUSDT"]
            newer = [publication("BTCUSDT", price=105, now_ms=NOW_MS + 250),
                     publication("ETHUSDT", price=55, now_ms=NOW_MS + 250)]
            await sink.publish(newer)
            assert json.loads(await only_btc.recv()) == [json.loads(newer[0].payload)]
            assert json.loads(await every.recv()) == [json.loads(p.payload) for p in newer]
            await sink.publish([publication("ETHUSDT", now_ms=NOW_MS + 500)])
            assert json.loads(await every.recv())[0]["updatedAt"] == NOW_MS + 500
            with pytest.raises(TimeoutError):  # nothing for BTCUSDT in that cycle
                await asyncio.wait_for(only_btc.recv(), 0.3)
            assert sink.stats.ws_clients == 2

    serve(test)


@pytest.mark.parametrize("query", ["symbols=btcusdt", "symbols=BTCUSDT,<x>", "symbols=A&symbols=B",
                                   "symbols=" + ",".join(["AAA"] * 4)])
def test_ws_rejects_malformed_subscriptions_with_400(query):
    async def test(sink):
        with pytest.raises(InvalidStatus) as rejected:
            async with connect(f"ws://127.0.0.1:{sink.port}/ws?{query}"):
                pass
        assert rejected.value.response.status_code == 400
        assert b"<x>" not in rejected.value.response.body

    serve(test, max_symbols=3)


def test_ws_beyond_max_clients_is_503():
    async def test(sink):
        url = f"ws://127.0.0.1:{sink.port}/ws"
        async with connect(url) as first:
            await first.recv()
            with pytest.raises(InvalidStatus) as rejected:
                async with connect(url):
                    pass
            assert rejected.value.response.status_code == 503

    serve(test, max_clients=1)


def test_a_slow_ws_client_is_dropped_with_a_reason_and_its_queue_stays_bounded():
    """A client that stops reading: its queue fills to ``client_queue`` and no further,
    it is closed with 1008 and a reason, and a reading client beside it misses nothing."""
    symbols = [f"S{i:03d}USDT" for i in range(60)]

    async def test(sink):
        url = f"ws://127.0.0.1:{sink.port}/ws"
        # max_queue=1: the client's library stops reading the socket once one message
        # waits unread, so the server's writes back up as with a stalled consumer.
        async with connect(url, max_queue=1, close_timeout=1) as slow, connect(url) as fast:
            await slow.recv()
            await fast.recv()
            received = 0

            async def read_fast() -> None:
                nonlocal received
                with pytest.raises(ConnectionClosed):
                    while True:
                        await fast.recv()
                        received += 1

            reader = asyncio.create_task(read_fast())
            published = 0
            while sink.stats.ws_dropped_slow == 0 and published < 5000:
                published += 1
                await sink.publish([publication(s, now_ms=NOW_MS + published) for s in symbols])
                for _ in range(3):
                    await asyncio.sleep(0)
            assert sink.stats.ws_dropped_slow == 1, "the slow client was never dropped"
            assert sink.stats.ws_queue_peak <= 4
            for client in sink.clients:
                assert client.queue.qsize() <= 4
            # the slow client now reads what was in flight, then the close frame
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await slow.recv()
            assert closed.value.rcvd.code == 1008
            assert "too slow" in closed.value.rcvd.reason
            while received < published:  # the fast reader catches up with every cycle
                await asyncio.sleep(0.01)
            assert received == published
            assert len(sink.clients) == 1 and sink.stats.ws_clients == 1
            await fast.close()
            await reader

    serve(test, client_queue=4)


# ---------------------------------------------------------------------------
# Fleet: serving from a sibling sink that reads back every node's reports
# ---------------------------------------------------------------------------


class SharedStoreSink:
    """A sink that keeps every report in a store shared by the fleet and reads it back
    (what the ``redis`` sink does); here the store starts with a report another node
    wrote, so only reading from the store can answer for that symbol."""

    name = "shared"

    def __init__(self, store: dict[str, Publication]) -> None:
        self.store = store

    async def start(self) -> None:
        pass

    async def publish(self, batch: Sequence[Publication]) -> Collection[str]:
        for item in batch:
            self.store[item.symbol] = item
        return ()

    async def close(self) -> None:
        pass

    async def latest(self, symbol: str) -> bytes | None:
        item = self.store.get(symbol)
        return None if item is None else item.payload

    async def index(self) -> Sequence[Mapping[str, Any]]:
        return [{"symbol": s, "age_ms": 0, "status": p.report["ingestion"]["status"],
                 "owner": p.report["writer"]["nodeId"], "epoch": p.token.epoch,
                 "token": p.token.counter} for s, p in sorted(self.store.items())]


def test_in_a_fleet_the_read_api_answers_for_symbols_other_nodes_write():
    port = free_port()
    other = publication("XRPUSDT", node_id="node-b", token=WriterToken(1, 4),
                        now_ms=int(time.time() * 1000))
    store = {"XRPUSDT": other}

    class Plugin:
        @hookimpl
        def marketcore_register_sinks(self, register):
            register("shared", lambda _options: SharedStoreSink(store))

    profile = f"""
[node]
id = "node-a"
symbols = ["BTCUSDT"]
[venue]
use = "synthetic"
[[sink]]
use = "shared"
[[sink]]
use = "http"
bind = "127.0.0.1:{port}"
fleet_poll_ms = 100
"""
    streamed: list[str] = []

    async def watch() -> None:
        """The current report (node-b's), then node-c's once it lands in the store."""
        async with connect(f"ws://127.0.0.1:{port}/ws?symbols=XRPUSDT") as ws:
            streamed.extend(r["writer"]["nodeId"] for r in json.loads(await ws.recv()))
            store["XRPUSDT"] = publication("XRPUSDT", node_id="node-c", token=WriterToken(1, 5))
            streamed.extend(r["writer"]["nodeId"] for r in json.loads(await ws.recv()))

    class FleetProbe(Probe):
        def run(self) -> None:
            super().run()
            try:
                asyncio.run(asyncio.wait_for(watch(), 20))
            except BaseException as error:
                self.failure = error

    pm = make_plugin_manager(("fleet-store", Plugin()))
    probe = FleetProbe(port, ["/get_report?symbol=XRPUSDT", "/reports", "/healthz"])
    store_before = dict(store)
    probe.start()
    run_node(profile, duration_s=5, plugin_manager=pm)
    probe.join(30)
    assert probe.failure is None, probe.failure
    status, report = probe.answers["/get_report?symbol=XRPUSDT"]
    assert status == 200 and report == json.loads(store_before["XRPUSDT"].payload)
    owners = {e["symbol"]: e["owner"] for e in probe.answers["/reports"][1]["reports"]}
    assert owners == {"XRPUSDT": "node-b", "BTCUSDT": "node-a"}
    assert probe.answers["/healthz"][1]["read_api"]["serves_from"] == "fleet store"
    assert streamed == ["node-b", "node-c"]
