"""The REST side: ``/api/v3/*`` (spot) or ``/fapi/v1/*`` (USDⓈ-M), weighted per IP.

Answers what a market-data client needs: depth snapshots (the weight depends on
``limit``), exchange info (tick and step sizes of the served symbols), ping and
time. Errors use Binance's codes and messages (``-1121 Invalid symbol.``, …).
A depth snapshot is cut from the book when the request arrives; the simulator
may hold the answer back (``delay_s``) while the stream moves on, as a slow
Binance does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import attrs

from .engine import Engine
from .limits import WeightBudget, depth_weight
from .stats import SimulatorStats

__all__ = ["RestApi", "RestReply"]

FUTURES_DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)


@attrs.frozen(slots=True)
class RestReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0


def _error(status: int, code: int, msg: str,
           headers: tuple[tuple[str, str], ...] = ()) -> RestReply:
    return RestReply(status, json.dumps({"code": code, "msg": msg}).encode(), headers)


class RestApi:
    """Routes a GET to its answer; one instance per simulator."""

    def __init__(self, engine: Engine, budget: WeightBudget, stats: SimulatorStats) -> None:
        self.engine = engine
        self.budget = budget
        self.stats = stats
        self.futures = engine.futures
        self.prefix = "/fapi/v1" if self.futures else "/api/v3"
        self.snapshot_delay_s = 0.0

    def handles(self, path: str) -> bool:
        return path.startswith(("/api/", "/fapi/", "/sapi/", "/dapi/"))

    def handle(self, method: str, path: str, query: Mapping[str, list[str]], ip: str
               ) -> RestReply:
        self.stats.http_requests += 1
        if not path.startswith(self.prefix + "/"):
            other = "/api/v3" if self.futures else "/fapi/v1"
            hint = f" (this simulator serves {self.engine.market}: {self.prefix}/…)" \
                if path.startswith(other) else ""
            return _error(404, -1, f"Not found: {path}{hint}")
        if method not in ("GET", "HEAD"):
            return _error(405, -1, f"{method} is not allowed on {path}")
        endpoint = path[len(self.prefix):]
        if endpoint == "/depth":
            return self._depth(query, ip)
        if endpoint == "/exchangeInfo":
            return self._charged(ip, 1 if self.futures else 20, lambda: self._exchange_info(query))
        if endpoint == "/ping":
            return self._charged(ip, 1, lambda: b"{}")
        if endpoint == "/time":
            return self._charged(ip, 1, lambda: b'{"serverTime":%d}' % (time.time_ns() // 10**6))
        return _error(404, -1, f"Not found: {path}")

    def _charged(self, ip: str, weight: int, body: object) -> RestReply:
        verdict = self.budget.charge(ip, weight)
        headers: tuple[tuple[str, str], ...] = (("X-MBX-USED-WEIGHT-1M", str(verdict.used)),)
        if verdict.status == 429:
            self.stats.http_429 += 1
            return _error(429, -1003, (
                f"Too much request weight used; current limit is {self.budget.per_window} "
                f"request weight per {self.budget.window_s:g} SECOND. Please use WebSocket "
                f"Streams for live updates to avoid polling the API."),
                (*headers, ("Retry-After", str(verdict.retry_after_s))))
        if verdict.status == 418:
            self.stats.http_418 += 1
            until = int((time.time() + verdict.retry_after_s) * 1000)
            return _error(418, -1003, (
                f"Way too much request weight used; IP banned until {until}. Please use "
                f"WebSocket Streams for live updates to avoid bans."),
                (*headers, ("Retry-After", str(verdict.retry_after_s))))
        self.stats.weight_used += weight
        return RestReply(200, body() if callable(body) else body, headers)  # type: ignore[arg-type]

    def _depth(self, query: Mapping[str, list[str]], ip: str) -> RestReply:
        symbol = (query.get("symbol") or [""])[0]
        if not symbol:
            return self._invalid(ip, -1102, "Mandatory parameter 'symbol' was not sent, was "
                                            "empty/null, or malformed.")
        if not all(c.isdigit() or "A" <= c <= "Z" or c in "-_." for c in symbol):
            return self._invalid(ip, -1100, "Illegal characters found in parameter 'symbol'; "
                                            "legal range is '^[A-Z0-9-_.]{1,20}$'.")
        served = self.engine.symbol(symbol)
        if served is None or served.name != symbol:
            return self._invalid(ip, -1121, "Invalid symbol.")
        raw_limit = (query.get("limit") or [""])[0]
        if raw_limit and not raw_limit.isdigit():
            return self._invalid(ip, -1100, "Illegal characters found in parameter 'limit'; "
                                            "legal range is '^[0-9]{1,20}$'.")
        if self.futures:
            limit = int(raw_limit) if raw_limit else 500
            if limit not in FUTURES_DEPTH_LIMITS:
                return self._invalid(ip, -4021, "Invalid depth limit.")
        else:
            limit = min(int(raw_limit), 5000) if raw_limit else 100
            if limit < 1:
                return self._invalid(ip, -1100, "Illegal characters found in parameter "
                                                "'limit'; legal range is '^[0-9]{1,20}$'.")
        reply = self._charged(ip, depth_weight(self.engine.market, limit),
                              lambda: self.engine.snapshot(served, limit))
        if reply.status == 200:
            self.stats.snapshots_served += 1
            return attrs.evolve(reply, delay_s=self.snapshot_delay_s)
        return reply

    def _invalid(self, ip: str, code: int, msg: str) -> RestReply:
        self.stats.request_errors += 1
        verdict = self._charged(ip, 1, b"")
        if verdict.status != 200:
            return verdict
        return _error(400, code, msg, verdict.headers)

    def _exchange_info(self, query: Mapping[str, list[str]]) -> bytes:
        wanted: set[str] | None = None
        if query.get("symbol"):
            wanted = {query["symbol"][0]}
        elif query.get("symbols"):
            try:
                wanted = set(json.loads(query["symbols"][0]))
            except ValueError:
                wanted = set()
        symbols = []
        for served in self.engine.served:
            if wanted is not None and served.name not in wanted:
                continue
            symbols.append(self._symbol_info(served.name, served.base.rec.scale.tick_size,
                                             served.base.rec.qty_decimals))
        limits = [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": self.budget.per_window},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
             "limit": 61000},
        ]
        doc = {"timezone": "UTC", "serverTime": time.time_ns() // 10**6, "rateLimits": limits,
               "exchangeFilters": [], "symbols": symbols}
        return json.dumps(doc, separators=(",", ":")).encode()

    def _symbol_info(self, name: str, tick: str, qty_decimals: int) -> dict[str, object]:
        base, quote = _split(name)
        step = "0." + "0" * (qty_decimals - 1) + "1" if qty_decimals else "1"
        filters = [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000",
             "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": "9000.00000000",
             "stepSize": step},
        ]
        info: dict[str, object] = {"symbol": name, "status": "TRADING", "baseAsset": base,
                                   "quoteAsset": quote, "filters": filters}
        if self.futures:
            info.update({"pair": name, "contractType": "PERPETUAL",
                         "pricePrecision": len(tick.partition(".")[2].rstrip("0") or ""),
                         "quantityPrecision": qty_decimals})
        else:
            info.update({"baseAssetPrecision": 8, "quotePrecision": 8,
                         "quoteAssetPrecision": 8, "isSpotTradingAllowed": True})
        return info


def _split(name: str) -> tuple[str, str]:
    for quote in ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD", "BTC", "ETH", "BNB", "EUR",
                  "TRY"):
        if name.endswith(quote) and len(name) > len(quote):
            return name[:-len(quote)], quote
    return name, ""
