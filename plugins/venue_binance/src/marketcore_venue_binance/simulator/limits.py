"""Binance's limits, enforced the way Binance does, so a client's pacing is tested.

* REST request weight per IP over fixed windows (Binance counts per clock
  minute): beyond the budget a request gets 429 with ``Retry-After`` (seconds to
  the next window); a client that keeps going after ``ban_after_429s`` refusals
  in one window is banned with 418 and a ``Retry-After`` to the end of the ban,
  each repeated ban twice as long (Binance: 2 minutes up to 3 days).
* Incoming WebSocket messages per connection (pings, pongs and JSON requests
  alike): more than ``limit`` within any one second disconnects.
* Connection attempts per IP over a sliding window (300 per 5 minutes).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import attrs

__all__ = ["AttemptLimit", "MessageRate", "Verdict", "WeightBudget", "depth_weight"]

MAX_BAN_S = 3 * 86400.0


def depth_weight(market: str, limit: int) -> int:
    """Request weight of ``GET …/depth`` for ``limit`` levels (Binance's tables)."""
    if market == "spot":
        if limit <= 100:
            return 5
        if limit <= 500:
            return 25
        if limit <= 1000:
            return 50
        return 250
    # USDⓈ-M futures: /fapi/v1/depth
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


@attrs.frozen(slots=True)
class Verdict:
    """What the budget says about one request: ``status`` 200, 429 or 418."""

    status: int
    used: int
    retry_after_s: int = 0


@attrs.define(slots=True)
class _Account:
    window: int = -1
    used: int = 0
    refused: int = 0
    banned_until: float = 0.0
    bans: int = 0


class WeightBudget:
    """REST weight per IP per fixed window; 429 beyond it, then 418 bans."""

    def __init__(self, per_window: int, *, window_s: float = 60.0, ban_after_429s: int = 3,
                 ban_s: float = 120.0, clock: Callable[[], float] = time.time) -> None:
        if per_window <= 0 or window_s <= 0:
            raise ValueError("the weight budget and its window must be positive")
        self.per_window = per_window
        self.window_s = window_s
        self.ban_after_429s = ban_after_429s
        self.ban_s = ban_s
        self._clock = clock
        self._accounts: dict[str, _Account] = {}

    def charge(self, ip: str, weight: int) -> Verdict:
        """Account a request of ``weight`` from ``ip`` and say whether it may be served."""
        now = self._clock()
        account = self._accounts.get(ip)
        if account is None:
            if len(self._accounts) > 10_000:  # bounded: forget idle addresses
                self._accounts.clear()
            account = self._accounts[ip] = _Account()
        window = int(now // self.window_s)
        if window != account.window:
            account.window = window
            account.used = 0
            account.refused = 0
        if account.banned_until > now:
            return Verdict(418, account.used, math.ceil(account.banned_until - now))
        if account.used + weight <= self.per_window:
            account.used += weight
            return Verdict(200, account.used)
        account.refused += 1
        if self.ban_after_429s and account.refused > self.ban_after_429s:
            ban = min(self.ban_s * 2 ** account.bans, MAX_BAN_S)
            account.bans += 1
            account.banned_until = now + ban
            return Verdict(418, account.used, math.ceil(ban))
        to_next = (window + 1) * self.window_s - now
        return Verdict(429, account.used, max(1, math.ceil(to_next)))

    def used(self, ip: str) -> int:
        account = self._accounts.get(ip)
        if account is None or account.window != int(self._clock() // self.window_s):
            return 0
        return account.used


class MessageRate:
    """At most ``limit`` messages within any one-second span (a sliding window)."""

    __slots__ = ("_clock", "_times", "limit")

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = max(1, int(limit))
        self._times: deque[float] = deque(maxlen=self.limit)
        self._clock = clock

    def allow(self) -> bool:
        """Count one message; False when it is one too many."""
        now = self._clock()
        times = self._times
        if len(times) == self.limit and now - times[0] < 1.0:
            return False
        times.append(now)
        return True


class AttemptLimit:
    """At most ``limit`` events per ``window_s`` per key (connection attempts per IP)."""

    def __init__(self, limit: int, window_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._events: dict[str, deque[float]] = {}

    def allow(self, key: str) -> bool:
        now = self._clock()
        events = self._events.get(key)
        if events is None:
            if len(self._events) > 10_000:
                self._events.clear()
            events = self._events[key] = deque()
        while events and now - events[0] >= self.window_s:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True
