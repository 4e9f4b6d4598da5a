"""The fenced sink on a real redis-server: accepted, refused, stale, unproven; one round trip."""

from __future__ import annotations

import asyncio
import json

import pytest
from coord_helpers import TcpProxy, report
from marketcore.components import Publication, WriterToken
from marketcore_coord_redis import RedisSink, SinkOptions
from marketcore_coord_redis.keys import KeyLayout
from marketcore_coord_redis.leases import LeaseClient
from marketcore_coord_redis.options import CoordinatorOptions
from marketcore_coord_redis.transport import close_client, open_client

TTL_MS = 400


async def holder(url: str, node_id: str, layout: KeyLayout | None = None):
    client = await open_client(CoordinatorOptions(url=url), "")
    return client, LeaseClient(client, layout or KeyLayout(), node_id=node_id,
                               instance=f"{node_id}#t", ttl_ms=TTL_MS)


async def take_all(lease_client: LeaseClient, symbols: list[str]) -> dict[str, WriterToken]:
    """Acquire every symbol in one batch, sitting out the quiet time of new epochs."""
    tokens: dict[str, WriterToken] = {}
    for _ in range(50):
        missing = [s for s in symbols if s not in tokens]
        if not missing:
            return tokens
        outcomes = await lease_client.acquire(missing, min_epoch=0)
        tokens.update({o.symbol: o.token for o in outcomes if o.status == "ok"})
        waits = [o.retry_ms for o in outcomes if o.status != "ok"]
        if waits:
            await asyncio.sleep(max(10, *waits) / 1000 + 0.01)
    raise AssertionError(f"never acquired {sorted(set(symbols) - set(tokens))}")


async def take(lease_client: LeaseClient, symbol: str) -> WriterToken:
    return (await take_all(lease_client, [symbol]))[symbol]


def commandstats(server, command: str) -> int:
    info = server.command("INFO", "commandstats").decode()
    for line in info.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test_the_owner_writes_and_the_report_key_expires(redis_server):
    async def scenario():
        client, a = await holder(redis_server.url, "node-a")
        token = await take(a, "BTCUSDT")
        sink = RedisSink(SinkOptions(url=redis_server.url, ttl_s=120))
        await sink.start()
        publication = report("BTCUSDT", "node-a", token, cycle=1)
        assert await sink.publish([publication]) == []
        stored = redis_server.command("GET", "marketcore:report:{BTCUSDT}")
        assert stored == publication.payload
        assert 110_000 < int(redis_server.command("PTTL", "marketcore:report:{BTCUSDT}")) <= 120_000
        assert sink.stats.written == 1
        await sink.close()
        await close_client(client)

    asyncio.run(scenario())


def test_a_paused_writers_late_write_is_refused_and_counted(redis_server):
    """A stops renewing (a pause past its TTL), B takes over, A's late write is refused."""
    async def scenario():
        client_a, a = await holder(redis_server.url, "node-a")
        client_b, b = await holder(redis_server.url, "node-b")
        sink_a = RedisSink(SinkOptions(url=redis_server.url))
        sink_b = RedisSink(SinkOptions(url=redis_server.url))
        await sink_a.start()
        await sink_b.start()
        token_a = await take(a, "ETHUSDT")
        assert await sink_a.publish([report("ETHUSDT", "node-a", token_a, 1)]) == []
        await asyncio.sleep(TTL_MS / 1000 + 0.1)  # A is "paused": no renewal
        token_b = await take(b, "ETHUSDT")
        assert token_b > token_a
        b_report = report("ETHUSDT", "node-b", token_b, 2)
        assert await sink_b.publish([b_report]) == []
        late = report("ETHUSDT", "node-a", token_a, 3)
        assert await sink_a.publish([late]) == ["ETHUSDT"]
        assert sink_a.stats.refused == 1
        assert redis_server.command("GET", "marketcore:report:{ETHUSDT}") == b_report.payload
        for sink in (sink_a, sink_b):
            await sink.close()
        await close_client(client_a)
        await close_client(client_b)

    asyncio.run(scenario())


def test_two_writers_are_never_both_accepted(redis_server):
    async def scenario():
        client, a = await holder(redis_server.url, "node-a")
        token = await take(a, "SOLUSDT")
        sink = RedisSink(SinkOptions(url=redis_server.url))
        await sink.start()
        # node-b claims the very same token: the lease says node-a, so it is refused
        refused = await sink.publish([report("SOLUSDT", "node-b", token, 1),
                                      report("SOLUSDT", "node-a", token, 1)])
        assert refused == ["SOLUSDT"]
        assert sink.stats.refused == 1 and sink.stats.written == 1
        assert json.loads(redis_server.command("GET", "marketcore:report:{SOLUSDT}"))[
            "writer"]["nodeId"] == "node-a"
        await sink.close()
        await close_client(client)

    asyncio.run(scenario())


def test_a_report_built_before_a_token_change_is_stale_not_refused(redis_server):
    async def scenario():
        client, a = await holder(redis_server.url, "node-a")
        old = await take(a, "BNBUSDT")
        new = await take(a, "BNBUSDT")  # the holder re-acquires: a newer token
        assert new > old
        sink = RedisSink(SinkOptions(url=redis_server.url))
        await sink.start()
        assert await sink.publish([report("BNBUSDT", "node-a", old, 1)]) == []
        assert sink.stats.stale == 1 and sink.stats.written == 0
        assert redis_server.command("EXISTS", "marketcore:report:{BNBUSDT}") == 0
        await sink.close()
        await close_client(client)

    asyncio.run(scenario())


def test_without_a_lease_nothing_is_written_and_the_symbol_is_kept(redis_server):
    async def scenario():
        sink = RedisSink(SinkOptions(url=redis_server.url))
        await sink.start()
        refused = await sink.publish([report("XRPUSDT", "node-a", WriterToken(5, 1), 1)])
        assert refused == []  # unproven, not refused: the node keeps its warm book
        assert sink.stats.unproven == 1 and sink.stats.written == 0
        assert redis_server.command("EXISTS", "marketcore:report:{XRPUSDT}") == 0
        await sink.close()

    asyncio.run(scenario())


def test_a_token_older_than_the_last_accepted_one_is_refused(redis_server):
    """Even the lease holder is refused when its token is older than one already accepted
    (what a counter rolled back by a restored snapshot would look like)."""
    async def scenario():
        client, a = await holder(redis_server.url, "node-a")
        token = await take(a, "ADAUSDT")
        sink = RedisSink(SinkOptions(url=redis_server.url))
        await sink.start()
        assert await sink.publish([report("ADAUSDT", "node-a", token, 1)]) == []
        older = WriterToken(token.epoch, token.counter - 1)
        redis_server.command("HSET", "marketcore:token:{ADAUSDT}", "counter", older.counter)
        assert await sink.publish([report("ADAUSDT", "node-a", older, 2)]) == ["ADAUSDT"]
        assert sink.stats.refused == 1
        await sink.close()
        await close_client(client)

    asyncio.run(scenario())


def test_a_batch_goes_out_in_one_round_trip(redis_server):
    """Every report of the batch reaches Redis before its first reply comes back."""
    async def scenario():
        client, a = await holder(redis_server.url, "node-a")
        symbols = [f"S{i}USDT" for i in range(8)]
        tokens = await take_all(a, symbols)
        proxy = await TcpProxy(redis_server.port).start()
        sink = RedisSink(SinkOptions(url=proxy.url))
        await sink.start()
        batch = [report(s, "node-a", tokens[s], 1) for s in symbols]
        await sink.publish(batch)  # connects (and loads nothing: scripts run by SHA)
        before = commandstats(redis_server, "evalsha")
        proxy.traffic.clear()
        assert await sink.publish([report(s, "node-a", tokens[s], 2) for s in symbols]) == []
        assert commandstats(redis_server, "evalsha") - before == 1  # one script call for all
        directions = [direction for direction, _ in proxy.traffic]
        assert directions[0] == "up" and "down" in directions
        assert "up" not in directions[directions.index("down"):]
        assert sink.stats.written == 2 * len(symbols)
        await sink.close()
        await proxy.close()
        await close_client(client)

    asyncio.run(scenario())


def test_stream_and_audit(redis_server):
    async def scenario():
        client, a = await holder(redis_server.url, "node-a")
        sink = RedisSink(SinkOptions(url=redis_server.url, stream=True, stream_maxlen=5,
                                     audit=True))
        await sink.start()
        token = await take(a, "DOTUSDT")
        for cycle in range(250):
            await sink.publish([report("DOTUSDT", "node-a", token, cycle)])
        newer = await take(a, "DOTUSDT")
        await sink.publish([report("DOTUSDT", "node-a", newer, 99)])
        length = redis_server.command("XLEN", "marketcore:stream:{DOTUSDT}")
        assert 5 <= length < 251  # capped with MAXLEN ~ (whole stream nodes of 100 go)
        last = redis_server.command("XREVRANGE", "marketcore:stream:{DOTUSDT}", "+", "-",
                                    "COUNT", 1)
        assert json.loads(last[0][1][1])["cycle"] == 99
        audit = redis_server.command("XRANGE", "marketcore:audit:{DOTUSDT}", "-", "+")
        entries = [dict(zip(e[1][::2], e[1][1::2], strict=True)) for e in audit]
        assert [(int(e[b"epoch"]), int(e[b"token"])) for e in entries] == [
            (token.epoch, token.counter), (newer.epoch, newer.counter)]
        assert all(e[b"node"] == b"node-a" and e[b"symbol"] == b"DOTUSDT" for e in entries)
        await sink.close()
        await close_client(client)

    asyncio.run(scenario())


def test_the_seed_key_layout(redis_server):
    async def scenario():
        layout = KeyLayout("seed")
        client, a = await holder(redis_server.url, "nt-prod-01", layout)
        token = await take(a, "BTCUSDT")
        sink = RedisSink(SinkOptions(url=redis_server.url, key_layout="seed"))
        await sink.start()
        publication = report("BTCUSDT", "nt-prod-01", token, 1)
        assert await sink.publish([publication]) == []
        assert redis_server.command("GET", "report:writer:BTCUSDT") == b"nt-prod-01"
        assert redis_server.command("GET", "report:BTCUSDT") == publication.payload
        assert redis_server.command("HGET", "report:writer:token:BTCUSDT", "counter") == b"1"
        await sink.close()
        await close_client(client)

    asyncio.run(scenario())


def test_a_report_without_a_writer_is_counted_and_the_rest_written(redis_server):
    async def scenario():
        client, a = await holder(redis_server.url, "node-a")
        token = await take(a, "LTCUSDT")
        sink = RedisSink(SinkOptions(url=redis_server.url))
        await sink.start()
        anonymous = Publication("LTCUSDT", token, {"symbol": "LTCUSDT"}, b"{}")
        good = report("LTCUSDT", "node-a", token, 1)
        assert await sink.publish([anonymous, good]) == []
        assert sink.stats.errors == 1 and sink.stats.written == 1
        await sink.close()
        await close_client(client)

    asyncio.run(scenario())


def test_publishing_before_start_is_a_clear_error():
    sink = RedisSink(SinkOptions())
    with pytest.raises(RuntimeError, match="not started"):
        asyncio.run(sink.publish([report("BTCUSDT", "n", WriterToken(1, 1))]))


def test_an_unreachable_redis_raises_and_backs_off(redis_server):
    async def scenario():
        client, a = await holder(redis_server.url, "node-a")
        token = await take(a, "ETCUSDT")
        await close_client(client)
        sink = RedisSink(SinkOptions(url=redis_server.url))
        await sink.start()
        batch = [report("ETCUSDT", "node-a", token, 1)]
        assert await sink.publish(batch) == []
        redis_server.stop(kill=True)
        from marketcore_coord_redis import RedisUnavailable

        with pytest.raises(RedisUnavailable):
            await sink.publish(batch)
        with pytest.raises(RedisUnavailable):
            await sink.publish(batch)  # inside the backoff: not even tried
        assert sink.stats.skipped >= 1
        redis_server.start()
        for _ in range(100):
            try:
                await sink.publish(batch)
                break
            except RedisUnavailable:
                await asyncio.sleep(0.05)
        assert sink.stats.batches == 2  # before the outage, and once it answered again
        assert sink.stats.unproven == 1  # the restart lost the lease: nothing written
        await sink.close()

    asyncio.run(scenario())


def test_never_an_unfenced_write(redis_server):
    """Whatever the sink sends, reports only change through the fencing script."""
    async def scenario():
        client, a = await holder(redis_server.url, "node-a")
        token = await take(a, "TRXUSDT")
        await close_client(client)
        redis_server.command("CONFIG", "RESETSTAT")
        sink = RedisSink(SinkOptions(url=redis_server.url))
        await sink.start()
        for cycle in range(5):
            await sink.publish([report("TRXUSDT", "node-a", token, cycle),
                                report("TRXUSDT", "intruder", token, cycle)])
        info = redis_server.command("INFO", "commandstats").decode()
        commands = {line.split(":")[0].split("|")[0] for line in info.splitlines()
                    if line.startswith("cmdstat")}
        # SET only ever ran inside the script (EVALSHA); nothing else wrote
        assert commands <= {"cmdstat_evalsha", "cmdstat_set", "cmdstat_get", "cmdstat_hmget",
                            "cmdstat_hset", "cmdstat_ping", "cmdstat_info", "cmdstat_config",
                            "cmdstat_hello", "cmdstat_client", "cmdstat_script"}
        assert commandstats(redis_server, "set") == sink.stats.written == 5
        assert sink.stats.refused == 5
        await sink.close()

    asyncio.run(scenario())


def test_a_large_batch_goes_in_script_calls_of_a_hundred(redis_server):
    async def scenario():
        client, a = await holder(redis_server.url, "node-a")
        symbols = [f"B{i:03d}USDT" for i in range(250)]
        tokens = await take_all(a, symbols)
        sink = RedisSink(SinkOptions(url=redis_server.url))
        await sink.start()
        batch = [report(s, "node-a", tokens[s], 1) for s in symbols]
        await sink.publish(batch)
        before = commandstats(redis_server, "evalsha")
        assert await sink.publish(batch) == []
        assert commandstats(redis_server, "evalsha") - before == 3
        assert sink.stats.written == 2 * len(symbols)
        stored = redis_server.command("GET", "marketcore:report:{B249USDT}")
        assert stored == batch[-1].payload
        await sink.close()
        await close_client(client)

    asyncio.run(scenario())


def test_a_bad_key_fails_only_its_own_report(redis_server):
    async def scenario():
        client, a = await holder(redis_server.url, "node-a")
        tokens = await take_all(a, ["GOODUSDT", "BADUSDT"])
        redis_server.command("SET", "marketcore:token:{BADUSDT}", "not a hash")
        sink = RedisSink(SinkOptions(url=redis_server.url))
        await sink.start()
        batch = [report(s, "node-a", tokens[s], 1) for s in ("BADUSDT", "GOODUSDT")]
        assert await sink.publish(batch) == []
        assert sink.stats.written == 1 and sink.stats.errors == 1
        assert redis_server.command("GET", "marketcore:report:{GOODUSDT}") == batch[1].payload
        await sink.close()
        await close_client(client)

    asyncio.run(scenario())
