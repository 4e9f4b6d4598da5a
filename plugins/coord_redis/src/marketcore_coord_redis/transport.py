"""Redis clients (redis-py's own, for every mode) and batches of script calls in one round trip.

* :func:`open_client` builds a ``redis.asyncio`` client for the options —
  ``Redis.from_url`` (standalone, ``rediss://`` TLS, ACL user), ``Sentinel``'s
  ``master_for`` or ``RedisCluster`` — with socket timeouts from the options
  and redis-py's automatic retries turned **off**: a lease acquire must never
  be sent twice blindly. Clients are shared: the coordinator and the sink of
  one process with equal connection options use one pool.
* :func:`run_batch` sends many calls of one script as a single pipelined
  round trip and returns one reply (or error) per call. Outside Cluster mode
  the commands are packed here and written on one pooled connection, and the
  replies read back in order: redis-py's generic pipeline costs about twice
  the time per command (``benchmarks/bench_publish.py``), which a node
  publishing 1,000 reports every 250 ms would feel. In Cluster mode
  redis-py's cluster pipeline routes each call to its slot's node. A
  ``NOSCRIPT`` reply (the server lost its script cache) is answered by loading
  the script and sending just those calls once more: a call that got
  ``NOSCRIPT`` never ran, so this is not a blind retry.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from marketcore_coord_redis.options import RedisOptions
from marketcore_coord_redis.scripts import LuaScript

__all__ = [
    "UNKNOWN",
    "BatchInterrupted",
    "Client",
    "close_client",
    "exchange",
    "is_cluster",
    "open_client",
    "pack_command",
    "raise_if_cancelled",
    "redacted_url",
    "run_batch",
]

Client = Redis | RedisCluster
Call = tuple[Sequence[bytes], Sequence[bytes]]
"""One script call: its keys and its arguments, as bytes."""

TRANSIENT = (RedisError, OSError, asyncio.TimeoutError)
"""Errors that mean "Redis cannot be reached right now"; everything else is a bug."""


UNKNOWN = object()
"""Stands for the reply of a call whose outcome is unknown (it may or may not have run)."""


class BatchInterrupted(RedisError):
    """The connection failed part-way through a batch.

    ``replies`` has one entry per call, in call order: the reply when it was
    read before the failure, else :data:`UNKNOWN`.
    """

    def __init__(self, replies: list[Any], cause: BaseException) -> None:
        known = sum(1 for reply in replies if reply is not UNKNOWN)
        super().__init__(f"batch interrupted ({known} of {len(replies)} replies read): {cause}")
        self.replies = replies
        self.cause = cause


def raise_if_cancelled() -> None:
    """Re-raise a cancellation that an await swallowed.

    On Python 3.11 ``asyncio.wait_for`` (which redis-py uses for socket
    timeouts) returns normally when a cancellation races with the completion
    of what it waited for, leaving the task "cancelling" but running. Loops
    and batches call this after their awaits so a node's shutdown never hangs.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def redacted_url(url: str) -> str:
    """The URL as it may appear in logs: any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query,
                       parts.fragment))


def is_cluster(client: Client) -> bool:
    return isinstance(client, RedisCluster)


# ---------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------


def _client_kwargs(options: RedisOptions, password: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_timeout": options.socket_timeout_s,
        "socket_connect_timeout": options.socket_timeout_s,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": False,
        "protocol": 2,
    }
    if options.username:
        kwargs["username"] = options.username
    if password:
        kwargs["password"] = password
    if urlsplit(options.url).scheme == "rediss":
        kwargs["ssl_cert_reqs"] = "required" if options.tls_verify else "none"
        kwargs["ssl_check_hostname"] = options.tls_verify
        for name, value in (("ssl_ca_certs", options.tls_ca_file),
                            ("ssl_certfile", options.tls_cert_file),
                            ("ssl_keyfile", options.tls_key_file)):
            if value:
                kwargs[name] = value
    return kwargs


def _build(options: RedisOptions, password: str) -> Client:
    """A client object; no I/O happens until its first command."""
    kwargs = _client_kwargs(options, password)
    if options.mode == "cluster":
        return RedisCluster.from_url(options.url, max_connections=options.max_connections,
                                     **kwargs)
    if options.mode == "sentinel":
        parts = urlsplit(options.url)
        db = int(parts.path.strip("/") or 0)
        if parts.scheme == "rediss":
            kwargs["ssl"] = True
        if parts.username and "username" not in kwargs:
            kwargs["username"] = parts.username
        sentinels = [(host, int(port)) for host, _, port in
                     (item.rpartition(":") for item in options.sentinels)]
        sentinel = Sentinel(sentinels, sentinel_kwargs={
            "socket_timeout": options.socket_timeout_s,
            "socket_connect_timeout": options.socket_timeout_s,
            "retry": Retry(NoBackoff(), 0)}, db=db, **kwargs)
        return sentinel.master_for(options.sentinel_service,
                                   max_connections=options.max_connections)
    return Redis.from_url(options.url, max_connections=options.max_connections, **kwargs)


@attrs.define
class _Shared:
    client: Client
    users: int = 0


_SHARED: dict[tuple[Any, ...], _Shared] = {}


def _share_key(options: RedisOptions, password: str) -> tuple[Any, ...]:
    loop = asyncio.get_running_loop()
    return (id(loop), options.mode, options.url, options.username, password, options.sentinels,
            options.sentinel_service, options.tls_ca_file, options.tls_cert_file,
            options.tls_key_file, options.tls_verify, options.socket_timeout_ms,
            options.max_connections)


async def open_client(options: RedisOptions, password: str) -> Client:
    """A client for ``options``, shared with every other user of equal options on this loop.

    Release it with :func:`close_client`. No command is sent here except the
    slot discovery of a cluster client.
    """
    key = _share_key(options, password)
    shared = _SHARED.get(key)
    if shared is None:
        shared = _SHARED[key] = _Shared(_build(options, password))
    shared.users += 1
    if isinstance(shared.client, RedisCluster):
        try:
            await shared.client.initialize()
        except BaseException:
            await close_client(shared.client)
            raise
    return shared.client


async def close_client(client: Client) -> None:
    """Give a client back; the last user closes its connections."""
    for key, shared in list(_SHARED.items()):
        if shared.client is client:
            shared.users -= 1
            if shared.users > 0:
                return
            del _SHARED[key]
            break
    with contextlib.suppress(*TRANSIENT):
        await client.aclose()


# ---------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------


def pack_command(parts: list[bytes], *args: bytes) -> None:
    """Append one command in RESP to ``parts`` (large arguments are not copied)."""
    parts.append(b"*%d\r\n" % len(args))
    for arg in args:
        if len(arg) < 512:
            parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        else:
            parts.extend((b"$%d\r\n" % len(arg), arg, b"\r\n"))


async def exchange(client: Redis, chunks: Iterable[bytes], count: int) -> list[Any]:
    """Write packed commands on one pooled connection; read ``count`` replies in order.

    Standalone and Sentinel clients only (a cluster client has a pool per node).
    """
    pool = client.connection_pool
    connection = await pool.get_connection()
    replies: list[Any] = []
    try:
        await connection.send_packed_command(chunks, check_health=False)
        for _ in range(count):
            try:
                replies.append(await connection.read_response())
            except ResponseError as error:  # an error reply; the connection is fine
                replies.append(error)
    except TRANSIENT as error:
        await connection.disconnect()
        replies.extend([UNKNOWN] * (count - len(replies)))
        raise BatchInterrupted(replies, error) from error
    except BaseException:  # cancelled mid-exchange: the connection's state is unknown
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)
    raise_if_cancelled()
    return replies


async def _send(client: Client, sha: bytes, calls: Sequence[Call]) -> list[Any]:
    if isinstance(client, RedisCluster):
        pipe = client.pipeline()
        for keys, args in calls:
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        try:
            replies = list(await pipe.execute(raise_on_error=False))
        except TRANSIENT as error:
            raise BatchInterrupted([UNKNOWN] * len(calls), error) from error
        raise_if_cancelled()
        return replies
    chunks: list[bytes] = []
    for keys, args in calls:
        pack_command(chunks, b"EVALSHA", sha, b"%d" % len(keys), *keys, *args)
    return await exchange(client, chunks, len(calls))


async def run_batch(client: Client, script: LuaScript, calls: Sequence[Call]) -> list[Any]:
    """Run ``script`` once per call in one round trip; one reply per call, in order.

    A reply is the script's return value or a :class:`redis.exceptions.ResponseError`.
    Raises :class:`BatchInterrupted` when the connection fails part-way.
    """
    if not calls:
        return []
    sha = script.sha.encode()
    replies = await _send(client, sha, calls)
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        try:
            await client.script_load(script.source)
            again = await _send(client, sha, [calls[i] for i in missing])
        except BatchInterrupted as error:
            again, cause = error.replies, error.cause
        except TRANSIENT as error:  # SCRIPT LOAD failed: those calls did not run
            again, cause = [replies[i] for i in missing], error
        else:
            cause = None
        for index, reply in zip(missing, again, strict=True):
            replies[index] = reply
        if cause is not None:
            raise BatchInterrupted(replies, cause) from cause
    return replies

