"""Lease scripts on a real redis-server: acquire, renew, release, expiry, epochs, read-back."""

from __future__ import annotations

import asyncio
import time

import pytest
from marketcore.components import WriterToken
from marketcore_coord_redis.keys import KeyLayout
from marketcore_coord_redis.leases import Lease, LeaseClient
from marketcore_coord_redis.options import CoordinatorOptions
from marketcore_coord_redis.scripts import lua_script
from marketcore_coord_redis.transport import close_client, open_client, run_batch
from redis.exceptions import ConnectionError

TTL_MS = 400
LAYOUT = KeyLayout()


async def lease_clients(url: str, *node_ids: str, ttl_ms: int = TTL_MS):
    client = await open_client(CoordinatorOptions(url=url, lease_ttl_ms=3000), "")
    return client, [LeaseClient(client, LAYOUT, node_id=n, instance=f"{n}#test", ttl_ms=ttl_ms)
                    for n in node_ids]


async def acquire_after_quiet(lease_client: LeaseClient, symbol: str) -> WriterToken:
    """Acquire, sitting out the quiet time a new epoch starts with."""
    for _ in range(50):
        (outcome,) = await lease_client.acquire([symbol], min_epoch=0)
        if outcome.status == "ok":
            assert outcome.token is not None
            return outcome.token
        assert outcome.status == "wait", outcome
        await asyncio.sleep(outcome.retry_ms / 1000 + 0.01)
    raise AssertionError("never acquired")


async def reconnect(client) -> None:
    """The first command after a restart fails on the pooled connection (no blind retries)."""
    for _ in range(20):
        try:
            await client.ping()
            return
        except ConnectionError:
            await asyncio.sleep(0.05)


def as_lease(symbol: str, token: WriterToken) -> Lease:
    now = time.monotonic()
    return Lease(symbol, token, acquired_at=now, sent_at=now, valid_until=now + 1)


def test_a_new_symbol_starts_an_epoch_with_one_quiet_ttl(redis_server):
    async def scenario():
        client, (a,) = await lease_clients(redis_server.url, "a")
        (first,) = await a.acquire(["BTCUSDT"], min_epoch=0)
        assert first.status == "wait"
        assert 0 < first.retry_ms <= TTL_MS
        (again,) = await a.acquire(["BTCUSDT"], min_epoch=0)
        assert again.status == "wait" and again.epoch == first.epoch
        await asyncio.sleep(first.retry_ms / 1000 + 0.02)
        (done,) = await a.acquire(["BTCUSDT"], min_epoch=0)
        assert done.status == "ok"
        assert done.token == WriterToken(first.epoch, 1)
        await close_client(client)

    asyncio.run(scenario())


def test_acquire_is_exclusive_and_each_acquire_gets_a_newer_token(redis_server):
    async def scenario():
        client, (a, b) = await lease_clients(redis_server.url, "a", "b")
        token_a = await acquire_after_quiet(a, "ETHUSDT")
        (held,) = await b.acquire(["ETHUSDT"], min_epoch=0)
        assert held.status == "held" and held.holder == "a" and 0 < held.retry_ms <= TTL_MS
        assert redis_server.command("GET", "marketcore:lease:{ETHUSDT}") == b"a"
        assert await a.release([as_lease("ETHUSDT", token_a)]) == [1]
        token_b = await acquire_after_quiet(b, "ETHUSDT")
        assert token_b > token_a
        assert token_b == WriterToken(token_a.epoch, token_a.counter + 1)
        await close_client(client)

    asyncio.run(scenario())


def test_renew_only_by_the_holder_with_its_token(redis_server):
    async def scenario():
        client, (a, b) = await lease_clients(redis_server.url, "a", "b")
        token = await acquire_after_quiet(a, "SOLUSDT")
        lease = as_lease("SOLUSDT", token)
        await asyncio.sleep(TTL_MS / 1000 * 0.6)
        assert await a.renew([lease]) == [1]  # renewed: still alive past the first TTL
        await asyncio.sleep(TTL_MS / 1000 * 0.6)
        assert redis_server.command("GET", "marketcore:lease:{SOLUSDT}") == b"a"
        assert await b.renew([as_lease("SOLUSDT", token)]) == [0]  # b is not the holder
        stale = as_lease("SOLUSDT", WriterToken(token.epoch, token.counter - 1))
        assert await a.renew([stale]) == [-2]  # a holds it, but not with that token
        assert await b.release([lease]) == [0]  # release only by the holder
        assert redis_server.command("GET", "marketcore:lease:{SOLUSDT}") == b"a"
        await close_client(client)

    asyncio.run(scenario())


def test_an_unrenewed_lease_expires_and_another_node_takes_it(redis_server):
    async def scenario():
        client, (a, b) = await lease_clients(redis_server.url, "a", "b")
        token_a = await acquire_after_quiet(a, "BNBUSDT")
        await asyncio.sleep(TTL_MS / 1000 + 0.1)
        assert redis_server.command("GET", "marketcore:lease:{BNBUSDT}") is None
        assert await a.renew([as_lease("BNBUSDT", token_a)]) == [-1]
        token_b = await acquire_after_quiet(b, "BNBUSDT")
        assert token_b > token_a
        assert await a.renew([as_lease("BNBUSDT", token_a)]) == [0]
        await close_client(client)

    asyncio.run(scenario())


def test_validity_counts_from_the_send_time_and_stays_inside_the_redis_ttl(redis_server):
    async def scenario():
        client, (a,) = await lease_clients(redis_server.url, "a", ttl_ms=1000)
        await acquire_after_quiet(a, "XRPUSDT")
        sent = time.monotonic()
        (outcome,) = await a.acquire(["XRPUSDT"], min_epoch=0)  # re-issue to the holder
        assert outcome.status == "ok"
        pttl = int(redis_server.command("PTTL", "marketcore:lease:{XRPUSDT}"))
        left_locally = a.valid_until(sent) - time.monotonic()
        assert left_locally < pttl / 1000  # the local view never outlives Redis's
        await close_client(client)

    asyncio.run(scenario())


def test_a_lost_acquire_reply_is_read_back_not_resent(redis_server):
    async def scenario():
        client, (a, b) = await lease_clients(redis_server.url, "a", "b")
        await acquire_after_quiet(a, "ADAUSDT")
        (mine,) = await a.inspect(["ADAUSDT"])
        (theirs,) = await b.inspect(["ADAUSDT"])
        assert mine is not None and a.mine(mine)
        assert theirs is not None and not b.mine(theirs)
        assert mine.holder == "a" and mine.token == theirs.token
        (nothing,) = await a.inspect(["DOGEUSDT"])
        assert nothing is not None and nothing.token is None and not a.mine(nothing)
        await close_client(client)

    asyncio.run(scenario())


def test_a_restart_without_persistence_bumps_the_epoch(redis_server):
    """After a restart the counter starts again, but every new token is newer than every old one."""
    async def scenario():
        client, (a,) = await lease_clients(redis_server.url, "a")
        old = await acquire_after_quiet(a, "BTCUSDT")
        for _ in range(3):
            await a.release([as_lease("BTCUSDT", old)])
            old = await acquire_after_quiet(a, "BTCUSDT")
        assert old.counter == 4
        run_id = redis_server.run_id()
        redis_server.restart()
        assert redis_server.run_id() != run_id
        assert redis_server.command("EXISTS", "marketcore:token:{BTCUSDT}") == 0
        await reconnect(client)
        (waiting,) = await a.acquire(["BTCUSDT"], min_epoch=old.epoch)
        assert waiting.status == "wait"  # one TTL of quiet before anybody acquires
        new = await acquire_after_quiet(a, "BTCUSDT")
        assert new.counter == 1 and new.epoch > old.epoch
        assert new > old
        await close_client(client)

    asyncio.run(scenario())


def test_the_epoch_never_goes_back_even_when_the_server_clock_does(redis_server):
    """The caller's highest seen epoch is a floor for the next epoch."""
    async def scenario():
        client, (a,) = await lease_clients(redis_server.url, "a")
        far_future = 10 ** 15
        (outcome,) = await a.acquire(["LTCUSDT"], min_epoch=far_future)
        assert outcome.status == "wait" and outcome.epoch == far_future + 1
        await close_client(client)

    asyncio.run(scenario())


def test_a_changed_run_id_bumps_the_epoch_even_when_keys_survive(redis_server):
    """A restored snapshot or a failover keeps the keys but changes the server's run_id."""
    async def scenario():
        client, (a,) = await lease_clients(redis_server.url, "a")
        token = await acquire_after_quiet(a, "ETHUSDT")
        redis_server.command("HSET", "marketcore:token:{ETHUSDT}", "run", "another-server")
        assert await a.renew([as_lease("ETHUSDT", token)]) == [1]  # renew does not look
        (outcome,) = await a.acquire(["ETHUSDT"], min_epoch=0)
        assert outcome.status == "wait" and outcome.epoch > token.epoch
        assert await a.renew([as_lease("ETHUSDT", token)]) == [-2]  # its token is now old
        await asyncio.sleep(outcome.retry_ms / 1000 + 0.02)
        (again,) = await a.acquire(["ETHUSDT"], min_epoch=0)
        # the same process still holds the lease: it gets a token of the new epoch
        assert again.status == "ok" and again.token is not None and again.token > token
        await close_client(client)

    asyncio.run(scenario())


def test_a_second_process_with_the_same_node_id_cannot_take_the_lease(redis_server):
    async def scenario():
        client = await open_client(CoordinatorOptions(url=redis_server.url), "")
        first = LeaseClient(client, LAYOUT, node_id="n", instance="n#one", ttl_ms=TTL_MS)
        second = LeaseClient(client, LAYOUT, node_id="n", instance="n#two", ttl_ms=TTL_MS)
        await acquire_after_quiet(first, "BTCUSDT")
        (outcome,) = await second.acquire(["BTCUSDT"], min_epoch=0)
        assert outcome.status == "held"
        (seen,) = await second.inspect(["BTCUSDT"])
        assert seen is not None and not second.mine(seen)
        await close_client(client)

    asyncio.run(scenario())


def test_scripts_are_reloaded_after_the_server_forgets_them(redis_server):
    async def scenario():
        client, (a,) = await lease_clients(redis_server.url, "a")
        await acquire_after_quiet(a, "BTCUSDT")
        redis_server.command("SCRIPT", "FLUSH")
        assert redis_server.command("SCRIPT", "EXISTS", lua_script("inspect").sha) == [0]
        (seen,) = await a.inspect(["BTCUSDT"])
        assert seen is not None and seen.holder == "a"
        assert redis_server.command("SCRIPT", "EXISTS", lua_script("inspect").sha) == [1]
        await close_client(client)

    asyncio.run(scenario())


def test_a_batch_reports_error_replies_per_call(redis_server):
    async def scenario():
        client, _ = await lease_clients(redis_server.url)
        redis_server.command("SET", "marketcore:token:{BAD}", "not a hash")
        replies = await run_batch(client, lua_script("inspect"), [
            ((b"marketcore:lease:{OK}", b"marketcore:token:{OK}"), ()),
            ((b"marketcore:lease:{BAD}", b"marketcore:token:{BAD}"), ()),
        ])
        assert isinstance(replies[0], list)
        assert isinstance(replies[1], Exception) and "WRONGTYPE" in str(replies[1])
        await close_client(client)

    asyncio.run(scenario())


@pytest.mark.parametrize("name", ["acquire", "renew", "release", "inspect", "fenced_write"])
def test_every_script_loads(redis_server, name):
    sha = redis_server.command("SCRIPT", "LOAD", lua_script(name).source)
    assert sha.decode() == lua_script(name).sha
