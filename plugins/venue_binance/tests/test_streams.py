"""Stream names, spreading symbols over connections, subscription messages."""

from __future__ import annotations

import itertools
import json

import pytest
from marketcore_venue_binance.streams import (
    StreamPlan,
    combined_url,
    stream_names,
    subscription_messages,
)


def test_stream_names_are_lower_case():
    assert stream_names("BTCUSDT", ["depth@100ms", "trade", "ticker"]) == \
        ["btcusdt@depth@100ms", "btcusdt@trade", "btcusdt@ticker"]


def test_plan_fills_connections_and_drops_empty_ones():
    plan = StreamPlan(2)
    slots = [plan.assign(s) for s in ["A", "B", "C", "D", "E"]]
    assert slots == [0, 0, 1, 1, 2]
    assert plan.assign("A") == 0  # already placed
    plan.release("C")
    assert plan.assign("F") == 1  # the first slot with room
    plan.release("E")
    assert 2 not in plan.slots  # empty: the connection goes
    assert plan.release("nope") is None
    assert sum(len(s) for s in plan.slots.values()) == 4


def test_plan_never_exceeds_its_capacity():
    plan = StreamPlan(3)
    for i in range(100):
        plan.assign(f"S{i}")
        if i % 7 == 0:
            plan.release(f"S{i // 2}")
    assert all(len(symbols) <= 3 for symbols in plan.slots.values())
    with pytest.raises(ValueError):
        StreamPlan(0)


def test_combined_url_carries_what_fits_and_returns_the_rest():
    streams = [f"sym{i:04d}usdt@depth@100ms" for i in range(400)]
    url, rest = combined_url("wss://stream.binance.com:9443/", streams, max_chars=2000)
    assert url.startswith("wss://stream.binance.com:9443/stream?streams=sym0000usdt@depth@100ms/")
    assert len(url) <= 2000 and rest
    carried = url.partition("streams=")[2].split("/")
    assert carried + rest == streams
    small, none = combined_url("ws://x", streams[:3])
    assert none == [] and small.count("/") == 5


def test_subscription_messages_are_chunked_with_fresh_ids():
    ids = itertools.count(1)
    streams = [f"s{i}@trade" for i in range(450)]
    messages = [json.loads(m) for m in subscription_messages("SUBSCRIBE", streams, ids)]
    assert [len(m["params"]) for m in messages] == [200, 200, 50]
    assert [m["id"] for m in messages] == [1, 2, 3]
    assert {m["method"] for m in messages} == {"SUBSCRIBE"}
    assert subscription_messages("UNSUBSCRIBE", [], ids) == []
