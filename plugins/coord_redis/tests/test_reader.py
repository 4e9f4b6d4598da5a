"""The redis sink as a ReportReader: ``latest`` and ``index`` against real servers."""

from __future__ import annotations

import asyncio
import json
import os
import time

import attrs
from coord_helpers import SYMBOLS, NodeSide, coordinator_options, running, wait_until
from marketcore.components import ReportReader, stats_of
from marketcore_coord_redis import RedisCoordinator, RedisSink, SinkOptions
from marketcore_coord_redis.keys import KeyLayout
from marketcore_coord_redis.reader import READ_BATCH, ReportStore


def report_body(symbol: str, node: NodeSide, updated_ms: int, status: str = "ok") -> dict:
    token = node.tokens[symbol]
    return {"schemaVersion": 1, "symbol": symbol, "updatedAt": updated_ms,
            "writer": {"nodeId": node.node_id, "writerToken": token.counter,
                       "epoch": token.epoch},
            "ingestion": {"status": status, "venue_state": "connected",
                          "last_update_id": 1, "last_event_ms": updated_ms}}


def publish_through_a_fleet(url: str, *, statuses: dict[str, str] | None = None,
                            sink_options: dict | None = None, **coordinator: object):
    """Two coordinators own the universe; one sink writes each symbol's report once.

    Returns (what each symbol's report says, the index, the latest of two symbols and
    of one never written, the sink's stats)."""
    nodes = [NodeSide(f"node-{i}") for i in range(2)]
    coordinators = [RedisCoordinator(coordinator_options(url, **coordinator)) for _ in nodes]
    sink = RedisSink(SinkOptions(url=url, **(sink_options or {})))
    statuses = statuses or {}

    async def scenario():
        from marketcore.components import Publication

        await sink.start()
        try:
            async with running(coordinators[0], nodes[0]), running(coordinators[1], nodes[1]):
                await wait_until(lambda: sorted(s for n in nodes for s in n.tokens)
                                 == sorted(SYMBOLS), timeout=20, message="all symbols owned")
                written_at = time.time_ns() // 1_000_000 - 1500
                bodies = {}
                batch = []
                for node in nodes:
                    for symbol in sorted(node.tokens):
                        body = report_body(symbol, node, written_at, statuses.get(symbol, "ok"))
                        bodies[symbol] = body
                        batch.append(Publication(symbol, node.tokens[symbol], body,
                                                 json.dumps(body, separators=(",", ":"))
                                                 .encode()))
                assert await sink.publish(batch) == []
                index = await sink.index()
                latest = {s: await sink.latest(s) for s in (SYMBOLS[0], SYMBOLS[-1], "NOPEUSDT")}
                return bodies, index, latest, written_at
        finally:
            await sink.close()

    bodies, index, latest, written_at = asyncio.run(scenario())
    return bodies, index, latest, written_at, sink


def check_index(bodies, index, latest, written_at):
    assert [entry["symbol"] for entry in index] == sorted(SYMBOLS)
    for entry in index:
        body = bodies[entry["symbol"]]
        assert set(entry) == {"symbol", "age_ms", "status", "owner", "epoch", "token"}
        assert entry["owner"] == body["writer"]["nodeId"]
        assert (entry["epoch"], entry["token"]) == (body["writer"]["epoch"],
                                                    body["writer"]["writerToken"])
        assert entry["status"] == body["ingestion"]["status"]
        # age: this machine's clock now minus updatedAt, read after the write
        assert 1500 <= entry["age_ms"] <= time.time_ns() // 1_000_000 - written_at
    for symbol in (SYMBOLS[0], SYMBOLS[-1]):
        assert json.loads(latest[symbol]) == bodies[symbol]
    assert latest["NOPEUSDT"] is None
    assert {e["owner"] for e in index} == {"node-0", "node-1"}


def test_latest_and_index_read_back_the_fleets_reports(redis_server):
    bodies, index, latest, written_at, sink = publish_through_a_fleet(
        redis_server.url, statuses={SYMBOLS[1]: "degraded"})
    check_index(bodies, index, latest, written_at)
    assert next(e for e in index if e["symbol"] == SYMBOLS[1])["status"] == "degraded"
    assert isinstance(sink, ReportReader)
    counters = stats_of(sink)
    assert counters["reads"] == 4 and counters["written"] == len(SYMBOLS)


def test_the_index_skips_other_keys_and_other_prefixes(redis_server):
    # keys that look alike but are not this layout's report keys
    redis_server.command("SET", "marketcore:report:{BAD}", "not json")
    redis_server.command("SET", "other:report:{ETHUSDT}", "{}")
    redis_server.command("SET", "marketcore:reports", "{}")
    _, index, _, _, sink = publish_through_a_fleet(redis_server.url)
    symbols = [e["symbol"] for e in index]
    assert symbols == sorted(SYMBOLS)  # BAD skipped (counted), other prefixes ignored
    assert sink.stats.read_skipped == 1


def test_the_index_reads_many_reports_in_batches(redis_server):
    """More report keys than one read batch: every one is listed once, sorted."""
    count = READ_BATCH * 2 + 7
    symbols = [f"X{i:05d}USDT" for i in range(count)]
    for i, symbol in enumerate(symbols):
        body = {"symbol": symbol, "updatedAt": 1000 + i, "ingestion": {"status": "ok"},
                "writer": {"nodeId": "node-z", "epoch": 5, "writerToken": i}}
        redis_server.command("SET", f"pfx:report:{{{symbol}}}", json.dumps(body))
    sink = RedisSink(SinkOptions(url=redis_server.url, key_prefix="pfx"))

    async def scenario():
        await sink.start()
        try:
            return await sink.index()
        finally:
            await sink.close()

    index = asyncio.run(scenario())
    assert [e["symbol"] for e in index] == symbols
    assert [e["token"] for e in index] == list(range(count))
    assert all(e["owner"] == "node-z" and e["epoch"] == 5 for e in index)


def test_the_seed_layout(redis_server):
    for key in ("report:writer:BTCUSDT", "report:writer:token:BTCUSDT", "report:stream:BTCUSDT",
                "report:audit:BTCUSDT"):  # the seed layout's other keys share the prefix
        redis_server.command("SET", key, "{}")
    bodies, index, latest, _, _ = publish_through_a_fleet(
        redis_server.url, key_layout="seed", sink_options={"key_layout": "seed"})
    assert [e["symbol"] for e in index] == sorted(SYMBOLS)
    assert json.loads(latest[SYMBOLS[0]]) == bodies[SYMBOLS[0]]
    assert redis_server.command("EXISTS", f"report:{SYMBOLS[0]}") == 1


def test_cluster_mode(redis_cluster):
    prefix = f"rd{os.getpid()}x{time.monotonic_ns() % 10**6}"
    bodies, index, latest, written_at, _ = publish_through_a_fleet(
        redis_cluster.url, mode="cluster", key_prefix=prefix,
        sink_options={"mode": "cluster", "key_prefix": prefix})
    check_index(bodies, index, latest, written_at)
    spread = [len(server.command("KEYS", f"{prefix}:report:*")) for server in redis_cluster.nodes]
    assert sum(spread) == len(SYMBOLS) and sum(1 for n in spread if n) >= 2


def test_tls(redis_tls_server):
    ca = str(redis_tls_server.tls_files.ca_cert)
    bodies, index, latest, written_at, _ = publish_through_a_fleet(
        redis_tls_server.url, tls_ca_file=ca, sink_options={"tls_ca_file": ca})
    check_index(bodies, index, latest, written_at)


def test_reading_before_start_is_a_clear_error():
    sink = RedisSink(SinkOptions())

    async def scenario():
        for call in (sink.latest("BTCUSDT"), sink.index()):
            try:
                await call
            except RuntimeError as error:
                assert "not started" in str(error)
            else:
                raise AssertionError("no error")

    asyncio.run(scenario())


def test_symbol_of_only_accepts_this_layouts_report_keys():
    from marketcore_coord_redis.stats import SinkStats

    store = ReportStore(KeyLayout("marketcore", "a*b"), SinkStats())
    assert store.symbol_of(b"a*b:report:{BTCUSDT}") == "BTCUSDT"
    assert store.symbol_of(b"a*b:lease:{BTCUSDT}") is None
    assert store.symbol_of(b"a*b:report:BTCUSDT") is None
    seed = ReportStore(KeyLayout("seed"), SinkStats())
    assert seed.symbol_of(b"report:BTCUSDT") == "BTCUSDT"
    assert seed.symbol_of(b"report:writer:BTCUSDT") is None
    assert seed.symbol_of(b"report:stream:BTCUSDT") is None


def test_sink_and_coordinator_stats_are_numeric_counters():
    """What a Prometheus exporter reads through stats_of: every field, all numbers."""
    from marketcore_coord_redis import CoordinatorOptions

    for component in (RedisSink(SinkOptions()), RedisCoordinator(CoordinatorOptions())):
        fields = {f.name for f in attrs.fields(type(component.stats))}
        counters = stats_of(component)
        assert set(counters) == fields
        assert all(isinstance(v, float) for v in counters.values())
