"""Binance's limits, each enforced and observable by a client over real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket

import pytest
from _sim_fixtures import head, http, run, spot_source, wait_for
from marketcore_venue_binance.recording import read_recording
from marketcore_venue_binance.simulator import ExchangeSimulator, SimulatorConfig
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


@pytest.fixture(scope="module")
def spot(tmp_path_factory):
    return head(spot_source(), tmp_path_factory.mktemp("spot") / "spot.gz", 1200)


@pytest.fixture(scope="module")
def spot_long(tmp_path_factory):
    """Enough frames (~6 MB with bookTicker) to fill any socket buffer."""
    return head(spot_source(), tmp_path_factory.mktemp("long") / "long.gz", 20000)


def config(path, **changes) -> SimulatorConfig:
    return SimulatorConfig((str(path),), **{"speed": 0, "start": "manual", **changes})


async def raw_client(sim, path: str, *, rcvbuf: int | None = None
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that does the handshake and then only what the test says:
    it answers no ping and reads nothing unless asked."""
    host, port = sim.ws_url.removeprefix("ws://").rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    response = await reader.readuntil(b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101"), response
    return reader, writer


def test_more_streams_than_allowed_are_refused(spot):
    async def scenario():
        async with ExchangeSimulator(config(spot, max_streams_per_connection=3)) as sim:
            four = "/".join(f"btcusdt@{k}" for k in ("trade", "aggTrade", "depth", "ticker"))
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{sim.ws_url}/stream?streams={four}"):
                    pass
            assert refused.value.response.status_code == 400
            assert b"Too many streams" in refused.value.response.body
            assert sim.stats.handshakes_rejected["too_many_streams"] == 1
            async with connect(f"{sim.ws_url}/stream?streams=btcusdt@trade/btcusdt@depth") as ws:
                await ws.send(json.dumps({"method": "SUBSCRIBE", "id": 1,
                                          "params": ["btcusdt@ticker", "btcusdt@aggTrade"]}))
                reply = json.loads(await ws.recv())
                assert reply["error"]["code"] == 2 and "too many streams" in reply["error"]["msg"]
                await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
                assert json.loads(await ws.recv())["result"] == ["btcusdt@depth",
                                                                  "btcusdt@trade"]
                await ws.send(json.dumps({"method": "SUBSCRIBE", "id": 3,
                                          "params": ["btcusdt@ticker"]}))
                assert json.loads(await ws.recv()) == {"result": None, "id": 3}

    run(scenario())


def test_a_sixth_message_within_a_second_disconnects(spot):
    async def scenario():
        async with ExchangeSimulator(config(spot)) as sim:
            async with connect(f"{sim.ws_url}/stream") as ws:
                for i in range(5):  # five in a burst are allowed
                    await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
                    assert json.loads(await ws.recv())["id"] == i
                await asyncio.sleep(1.05)
                for i in range(6):
                    await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 10 + i}))
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(5):
                        while True:
                            await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            await wait_for(lambda: sim.stats.disconnects["rate_limit"] == 1)
            assert sim.stats.messages_in == 11

    run(scenario())


def test_pings_and_pongs_count_as_messages(spot):
    async def scenario():
        async with ExchangeSimulator(config(spot)) as sim:
            async with connect(f"{sim.ws_url}/stream", ping_interval=None) as ws:
                for _ in range(6):
                    await ws.ping()
                with pytest.raises(ConnectionClosed):
                    async with asyncio.timeout(5):
                        await ws.recv()
                assert ws.close_code == 1008
            await wait_for(lambda: sim.stats.disconnects["rate_limit"] == 1)

    run(scenario())


def test_rest_weight_gives_429_with_retry_after_then_418(spot):
    async def scenario():
        cfg = config(spot, weight_per_minute=100, ban_after_429s=2)
        async with ExchangeSimulator(cfg) as sim:
            url = f"{sim.rest_url}/api/v3/depth?symbol=BTCUSDT&limit=1000"  # weight 50
            statuses = []
            for _ in range(5):
                status, headers, body = await http(url)
                statuses.append((status, headers.get("Retry-After"),
                                 headers.get("X-MBX-USED-WEIGHT-1M")))
            assert [s[0] for s in statuses] == [200, 200, 429, 429, 418]
            assert [s[2] for s in statuses[:4]] == ["50", "100", "100", "100"]
            assert all(int(s[1]) >= 1 for s in statuses[2:])
            assert int(statuses[4][1]) >= 100  # the ban lasts (120 s by default)
            assert json.loads(body)["code"] == -1003 and b"banned until" in body
            assert (sim.stats.http_429, sim.stats.http_418, sim.stats.weight_used) == (2, 1, 100)
            status, _, _ = await http(f"{sim.rest_url}/api/v3/ping")
            assert status == 418  # banned for everything

    run(scenario())


def test_connection_attempts_per_ip_are_limited(spot):
    async def scenario():
        async with ExchangeSimulator(config(spot, max_connection_attempts=2)) as sim:
            for _ in range(2):
                async with connect(f"{sim.ws_url}/ws"):
                    pass
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{sim.ws_url}/ws"):
                    pass
            assert refused.value.response.status_code == 429
            assert sim.stats.handshakes_rejected["connection_attempts"] == 1

    run(scenario())


def test_a_client_that_stops_reading_is_dropped_at_real_time_speed(spot_long):
    async def scenario():
        cfg = config(spot_long, speed=2000, start="now", max_send_buffer_bytes=64 * 1024)
        async with ExchangeSimulator(cfg) as sim:
            path = "/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker/btcusdt@trade"
            _reader, writer = await raw_client(sim, path, rcvbuf=4096)
            await wait_for(lambda: sim.stats.disconnects["slow_client"] == 1, 30,
                           "the slow client to be dropped")
            writer.close()
            assert sim.stats.connections_open == 0

    run(scenario())


def test_at_speed_zero_the_replay_waits_for_readers_and_drops_a_stuck_one(spot_long):
    expected = sum(1 for _, raw in read_recording(spot_long) if raw.startswith(b'{"stream"'))
    expected -= 2  # the two diffs the snapshot already holds are not replayed

    async def scenario():
        cfg = config(spot_long, max_send_buffer_bytes=64 * 1024, slow_client_timeout_s=0.5)
        async with ExchangeSimulator(cfg) as sim:
            streams = "btcusdt@depth@100ms/btcusdt@bookTicker/btcusdt@trade"
            _reader, writer = await raw_client(sim, f"/stream?streams={streams}", rcvbuf=4096)
            async with connect(f"{sim.ws_url}/stream?streams={streams}", max_queue=4) as ws:
                sim.resume()
                received = 0
                async with asyncio.timeout(60):
                    while received < expected:
                        await ws.recv()
                        received += 1
                await sim.wait_finished()
                assert sim.stats.disconnects["slow_client"] == 1
                assert ws.state.name == "OPEN"  # the reading client was never dropped
            writer.close()

    run(scenario())


def test_connections_close_at_their_lifetime_after_a_server_shutdown_event(spot):
    async def scenario():
        async with ExchangeSimulator(config(spot, connection_lifetime_s=0.3)) as sim:
            async with connect(f"{sim.ws_url}/stream?streams=btcusdt@trade") as ws:
                notice = json.loads(await ws.recv())
                assert notice["e"] == "serverShutdown" and isinstance(notice["E"], int)
                with pytest.raises(ConnectionClosed):
                    await ws.recv()
                assert ws.close_code == 1000
            await wait_for(lambda: sim.stats.disconnects["lifetime"] == 1)

    run(scenario())


def test_a_client_that_never_pongs_is_dropped(spot):
    async def scenario():
        cfg = config(spot, ping_interval_s=0.25, pong_timeout_s=0.4)
        async with ExchangeSimulator(cfg) as sim:
            _reader, writer = await raw_client(sim, "/ws")
            async with connect(f"{sim.ws_url}/ws") as ws:  # answers pings by itself
                await wait_for(lambda: sim.stats.disconnects["ping_timeout"] == 1, 10,
                               "the silent client to be dropped")
                await asyncio.sleep(0.5)
                assert ws.state.name == "OPEN"
                assert sim.stats.connections_open == 1
            writer.close()

    run(scenario())
