"""REST requests (depth snapshots, exchange info) through one weight-budgeted scheduler.

Binance meters REST use by *weight* per IP and minute (6000); a depth snapshot weighs 5
to 250 by its limit. A reconnect that re-snapshots hundreds of symbols at once would
blow through that and earn HTTP 429 (``Retry-After``) and then 418 (an IP ban). So every
request of a venue instance goes through one :class:`RestScheduler`:

* a rolling 60 s **weight budget** (``weight_per_minute``): a request waits until its
  weight fits. A request's weight counts from the moment its answer arrives, the
  latest instant the exchange can have counted it, so a request that reached the
  exchange late (a busy event loop, a slow network) can never land in the same
  exchange minute as one sent a rolling minute later;
* a random **jitter** before each request, so a burst of resyncs is spread out;
* **429 / 418**: every request pauses until ``Retry-After`` has passed (a default when
  the header is missing), the request goes back to the front of the queue;
* ``X-MBX-USED-WEIGHT-1M``: when the exchange reports the IP's weight near its limit
  (other processes share the IP), requests pause until the next minute;
* network errors and 5xx: the endpoint's circuit breaker counts a failure, the request
  is retried with backoff on the next endpoint;
* one request per key at a time (a symbol's snapshot is never fetched twice at once).

The HTTP client is a few lines on ``asyncio.open_connection`` (HTTP/1.1, TLS for
``https``), so a request is cancelled at once on shutdown and no dependency is added.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import attrs

from marketcore_venue_binance.connection import Backoff, EndpointPool
from marketcore_venue_binance.tasks import stop_tasks

__all__ = ["HttpError", "HttpResponse", "RestRequest", "RestScheduler", "http_get"]

log = logging.getLogger("marketcore.venue.binance.rest")

IP_WEIGHT_LIMIT = 6000
"""Binance's REST weight limit per IP and minute."""
DEFAULT_RETRY_AFTER_429_S = 30.0
DEFAULT_RETRY_AFTER_418_S = 120.0
MAX_BODY_BYTES = 64 << 20


class HttpError(Exception):
    """A malformed HTTP response or a transport failure."""


@attrs.frozen
class HttpResponse:
    status: int
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes


async def http_get(url: str, *, timeout_s: float = 10.0,
                   headers: dict[str, str] | None = None) -> HttpResponse:
    """``GET url`` over HTTP/1.1 (``Connection: close``); the whole exchange is bounded
    by ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        return await _get(url, headers or {})


async def _get(url: str, headers: dict[str, str]) -> HttpResponse:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {url}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    context = ssl.create_default_context() if secure else None
    reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context)
    try:
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}",
                 "User-Agent: marketcore-venue-binance", "Accept: application/json",
                 "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        status_line = await reader.readline()
        try:
            status = int(status_line.split()[1])
        except (IndexError, ValueError):
            raise HttpError(f"bad status line {status_line[:80]!r}") from None
        found: dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            found[name.strip().lower()] = value.strip()
        body = await _read_body(reader, found)
        return HttpResponse(status, found, body)
    except BaseException:
        # failed, timed out or cancelled: drop the socket, so that waiting for it to
        # close below cannot hang on a peer that stopped reading
        writer.transport.abort()
        raise
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        total = 0
        while True:
            size_line = await reader.readline()
            try:
                size = int(size_line.split(b";")[0].strip(), 16)
            except ValueError:
                raise HttpError(f"bad chunk size {size_line[:40]!r}") from None
            if size == 0:
                break
            total += size
            if total > MAX_BODY_BYTES:
                raise HttpError("response body too large")
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return b"".join(chunks)
    length = headers.get("content-length")
    if length is not None:
        size = int(length)
        if size > MAX_BODY_BYTES:
            raise HttpError("response body too large")
        return await reader.readexactly(size)
    return await reader.read(MAX_BODY_BYTES)


Getter = Callable[..., Awaitable[HttpResponse]]


@attrs.define(eq=False)
class RestRequest:
    """One queued request. ``deliver(body, recv_ns)`` gets a 200 answer's body;
    ``failed(reason)`` is called when the request is dropped (4xx other than 429/418)."""

    key: str
    path: str
    weight: int
    deliver: Callable[[bytes, int], None]
    failed: Callable[[str], None] | None = None
    attempts: int = 0
    cancelled: bool = False


class RestScheduler:
    """Runs every REST request of one venue instance within its weight budget."""

    def __init__(self, endpoints: EndpointPool, *, weight_per_minute: int,
                 jitter_s: float = 0.25, concurrency: int = 2, timeout_s: float = 10.0,
                 stats: object | None = None, get: Getter = http_get,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.endpoints = endpoints
        self.weight_per_minute = weight_per_minute
        self.jitter_s = jitter_s
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.stats = stats
        self._get = get
        self.clock = clock
        self._rng = rng or random.Random()
        self._queue: deque[RestRequest] = deque()
        self._by_key: dict[str, RestRequest] = {}
        self._spent: deque[list] = deque()
        """``[time, weight]`` of each request in the rolling window, oldest first."""
        self._blocked_until = 0.0
        self._ready = asyncio.Event()
        self._budget_lock = asyncio.Lock()
        self.weight_used = 0
        self.completed = 0

    # ----------------------------------------------------------------- queue

    def request(self, key: str, path: str, weight: int, deliver: Callable[[bytes, int], None],
                failed: Callable[[str], None] | None = None) -> bool:
        """Queue a GET of ``path`` (relative to an endpoint); False if ``key`` is queued
        or in flight already."""
        if key in self._by_key:
            return False
        item = RestRequest(key, path, weight, deliver, failed)
        self._by_key[key] = item
        self._queue.append(item)
        self._ready.set()
        return True

    def cancel(self, key: str) -> None:
        item = self._by_key.pop(key, None)
        if item is not None:
            item.cancelled = True
            with contextlib.suppress(ValueError):
                self._queue.remove(item)

    def pending(self) -> int:
        return len(self._by_key)

    @property
    def blocked_for(self) -> float:
        """Seconds left of a 429/418 pause (0 when not paused)."""
        return max(0.0, self._blocked_until - self.clock())

    def spent_last_minute(self) -> int:
        horizon = self.clock() - 60.0
        while self._spent and self._spent[0][0] <= horizon:
            self._spent.popleft()
        return sum(w for t, w in self._spent if t > horizon)

    # ----------------------------------------------------------------- run

    async def run(self) -> None:
        workers = [asyncio.create_task(self._worker(), name=f"rest-worker-{i}")
                   for i in range(self.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            await stop_tasks(*workers)

    async def _next(self) -> RestRequest:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    async def _worker(self) -> None:
        backoff = Backoff(0.5, 30.0)
        while True:
            item = await self._next()
            if item.cancelled:
                continue
            spent = await self._spend(item.weight)
            if item.cancelled:
                continue
            try:
                outcome = await self._fetch(item)
            finally:
                spent[0] = self.clock()  # counted from the answer, see the module notes
            if outcome == "retry":
                item.attempts += 1
                await asyncio.sleep(backoff.next_delay())
                if not item.cancelled:
                    self._queue.appendleft(item)
                    self._ready.set()
            else:
                backoff.reset()

    async def _spend(self, weight: int) -> list:
        """Wait for the jitter, any 429/418 pause and room in the weight budget; return
        the ``[time, weight]`` entry booked in the rolling window."""
        if self.jitter_s > 0:
            await asyncio.sleep(self._rng.uniform(0, self.jitter_s))
        async with self._budget_lock:
            while True:
                blocked = self.blocked_for
                if blocked > 0:
                    await asyncio.sleep(blocked)
                    continue
                spent = self.spent_last_minute()
                if spent + weight <= self.weight_per_minute or not self._spent:
                    break
                oldest = min(t for t, _ in self._spent)
                await asyncio.sleep(max(0.01, oldest + 60.0 - self.clock()))
            entry = [self.clock(), weight]
            self._spent.append(entry)
            self.weight_used += weight
            if self.stats is not None:
                self.stats.snapshot_weight_used += weight
            return entry

    async def _fetch(self, item: RestRequest) -> str:
        endpoint, wait_s = self.endpoints.pick()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        url = endpoint + item.path
        try:
            response = await self._get(url, timeout_s=self.timeout_s)
        except (OSError, HttpError, TimeoutError, ValueError, asyncio.IncompleteReadError) as error:
            self.endpoints.failed(endpoint)
            self._count("snapshot_failures")
            log.info("GET %s failed: %s", url, error, extra={"component": "venue.binance"})
            return "retry"
        recv_ns = time.time_ns()
        self._note_used_weight(response)
        status = response.status
        if status == 200:
            self.endpoints.succeeded(endpoint)
            if self._by_key.get(item.key) is item:
                del self._by_key[item.key]
                self.completed += 1
                item.deliver(response.body, recv_ns)
            return "done"
        if status in (429, 418):
            default = DEFAULT_RETRY_AFTER_429_S if status == 429 else DEFAULT_RETRY_AFTER_418_S
            retry_after = _seconds(response.headers.get("retry-after"), default)
            self._blocked_until = max(self._blocked_until, self.clock() + retry_after)
            self._count("rate_limited" if status == 429 else "banned")
            (log.warning if status == 429 else log.error)(
                "GET %s answered %d: pausing every REST request for %.1f s", url, status,
                retry_after, extra={"component": "venue.binance"})
            if not item.cancelled:
                self._queue.appendleft(item)
                self._ready.set()
            return "done"
        if status >= 500:
            self.endpoints.failed(endpoint)
            self._count("snapshot_failures")
            return "retry"
        self._count("snapshot_failures")
        self._by_key.pop(item.key, None)
        reason = f"HTTP {status}: {response.body[:200].decode('utf-8', 'replace')}"
        log.warning("GET %s failed: %s", url, reason, extra={"component": "venue.binance"})
        if item.failed is not None:
            item.failed(reason)
        return "done"

    def _note_used_weight(self, response: HttpResponse) -> None:
        used = response.headers.get("x-mbx-used-weight-1m")
        if used is None:
            return
        try:
            value = int(used)
        except ValueError:
            return
        if value >= IP_WEIGHT_LIMIT * 0.9:
            until_next_minute = 60.0 - (time.time() % 60.0) + 0.5
            self._blocked_until = max(self._blocked_until, self.clock() + until_next_minute)

    def _count(self, name: str) -> None:
        if self.stats is not None:
            setattr(self.stats, name, getattr(self.stats, name) + 1)


def _seconds(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        return default
    return min(max(seconds, 0.0), 3600.0)
