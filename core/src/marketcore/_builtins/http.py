"""Sink ``http``: the read API and the live web view of a node.

It keeps the latest report of every symbol this node publishes, serves them over
HTTP and streams them over a WebSocket (the server is in ``http_server``; this
module holds the sink's state and the hooks). In a fleet, where a sibling sink of
the node can read back what *every* node published (a
:class:`marketcore.components.ReportReader` such as the ``redis`` sink), the read
API serves from that sink instead, so any node answers for every symbol; the
``marketcore_startup`` hook below finds it through ``NodeInfo.components()``.

``websockets`` is imported only when the server starts, so building the plugin
manager, ``marketcore validate`` and the other commands never pay for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from marketcore import hookimpl
from marketcore.components import Publication, RegisterSink, ReportReader
from marketcore.node import NodeInfo

if TYPE_CHECKING:
    from marketcore._builtins.http_server import ApiServer

log = logging.getLogger("marketcore.http")

__all__ = ["HttpOptions", "HttpSink", "HttpStats", "split_bind"]


def split_bind(bind: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` → ``("127.0.0.1", 8080)``; ``"[::1]:8080"`` for IPv6.

    Raises :class:`ValueError` with the expected form when ``bind`` is not one.
    """
    host, sep, port = bind.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port 0-65535 (0: any free port), "
                         f"found {bind!r}")
    return host, int(port)


def _valid_bind(_instance: Any, _attribute: attrs.Attribute, value: str) -> None:
    split_bind(value)


def _valid_pattern(_instance: Any, _attribute: attrs.Attribute, value: str) -> None:
    try:
        re.compile(value)
    except re.error as error:
        raise ValueError(f"symbol_pattern is not a regular expression: {error}") from None


@attrs.frozen
class HttpOptions:
    """The ``[[sink]] use = "http"`` table."""

    bind: str = attrs.field(default="127.0.0.1:8080", validator=_valid_bind)
    """Where the read API listens. Loopback by default: expose it on purpose."""
    symbol_pattern: str = attrs.field(default=r"[A-Z0-9]{2,20}", validator=_valid_pattern)
    """Allow list of symbols in requests (matched whole); anything else is a 400."""
    client_queue: int = attrs.field(default=16, validator=attrs.validators.in_(range(1, 10_001)))
    """WebSocket messages (one per cycle) queued for a client before it is dropped as
    too slow. Queued messages are shared bytes, so this bounds memory per client."""
    max_clients: int = attrs.field(default=500, validator=attrs.validators.in_(range(1, 100_001)))
    """Open WebSocket clients at most; more are answered 503."""
    max_symbols: int = attrs.field(default=2000, validator=attrs.validators.in_(range(1, 100_001)))
    """Symbols one ``/ws?symbols=`` request may name."""
    serve_from: str = attrs.field(default="auto",
                                  validator=attrs.validators.in_(("auto", "self")))
    """``auto``: serve from the node's first other sink that can read reports back
    (the fleet's shared store) when there is one; ``self``: only this node's reports."""
    fleet_poll_ms: int = attrs.field(default=500, validator=attrs.validators.in_(
        range(50, 60_001)))
    """Serving from a fleet store: how often WebSocket clients get the reports of the
    symbols other nodes write (this node's own go out as they are published)."""
    stall_ms: int = attrs.field(default=5000, validator=attrs.validators.in_(range(100, 600_001)))
    """``/healthz``: the fast cycle idle, or a sink failing, within this long → 503."""
    web: bool = True
    """Serve the live web view at ``/``."""
    required: bool = True
    """``false``: when ``bind`` is taken, log one error and run on without the read API
    instead of stopping the node (the embedded default profiles use this, so a busy
    port never keeps ``marketcore run`` from starting)."""


@attrs.define
class HttpStats:
    """Counters of the read API (exported by the host as metrics and in ``/healthz``)."""

    requests: int = 0
    bad_requests: int = 0
    """Answered 4xx (malformed input, unknown symbol or path, wrong method)."""
    ws_clients: int = 0
    ws_messages: int = 0
    ws_dropped_slow: int = 0
    ws_queue_peak: int = 0
    """The longest any client's queue has been; never above ``client_queue``."""


@attrs.frozen(slots=True)
class _Entry:
    """What ``/reports`` lists for one symbol, taken from the report when published."""

    updated_at: int | None
    status: str | None
    owner: str | None
    epoch: int
    token: int


class WsClient:
    """One WebSocket subscriber: its symbols and its bounded queue of messages."""

    __slots__ = ("dropped", "queue", "reason", "symbols")

    def __init__(self, symbols: frozenset[str] | None, size: int) -> None:
        self.symbols = symbols
        """``None``: every symbol."""
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(size)
        self.dropped = asyncio.Event()
        self.reason = ""


def _array(payloads: Sequence[bytes]) -> bytes:
    """One WebSocket message: a JSON array of reports, joined without re-encoding."""
    return b"[" + b",".join(payloads) + b"]"


class HttpSink:
    """Latest reports in memory, a read API and a WebSocket fan-out over them.

    Also a :class:`ReportReader` itself (this node's reports), which is what the
    API serves from outside a fleet.
    """

    name = "http"

    def __init__(self, options: HttpOptions) -> None:
        self.options = options
        self.host, self.port = split_bind(options.bind)
        self.pattern = re.compile(options.symbol_pattern)
        self.stats = HttpStats()
        self.node: NodeInfo | None = None
        self.reader: ReportReader = self
        self.clients: set[WsClient] = set()
        self._latest: dict[str, bytes] = {}
        self._entries: dict[str, _Entry] = {}
        self._fleet_sent: dict[str, bytes] = {}
        self._server: ApiServer | None = None
        self._fleet_task: asyncio.Task[None] | None = None
        self._started_at = time.monotonic()
        self._cycle_runs = -1
        self._cycle_seen_at = time.monotonic()
        self._sink_errors = 0
        self._sink_error_at: float | None = None

    # -- wiring -----------------------------------------------------------------

    def attach(self, node: NodeInfo) -> None:
        """Called from ``marketcore_startup``: the node this sink reports on, and the
        sibling sink to serve from in a fleet."""
        self.node = node
        if self.options.serve_from == "auto":
            for key, component in node.components().items():
                if (key.startswith("sink.") and component is not self
                        and not isinstance(component, HttpSink)
                        and isinstance(component, ReportReader)):
                    self.reader = component
                    log.info("http sink serves reports from sink %s", key[5:])
                    break

    @property
    def fleet(self) -> bool:
        """Serving from a shared store rather than from this node's own reports."""
        return self.reader is not self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- Sink -------------------------------------------------------------------

    async def start(self) -> None:
        from marketcore._builtins.http_server import ApiServer  # imports websockets

        self._started_at = self._cycle_seen_at = time.monotonic()
        self._server = ApiServer(self)
        try:
            self.port = await self._server.start(self.host, self.port)
        except OSError as error:
            if self.options.required:
                raise
            self._server = None
            log.error("http sink: cannot serve on %s (%s); the node runs on without the "
                      "read API", self.options.bind, error.strerror or error)
            return
        log.info("read API and web view on %s/", self.url)
        if self.fleet:
            self._fleet_task = asyncio.create_task(self._follow_fleet(),
                                                   name="http sink: fleet reports")

    async def publish(self, batch: Sequence[Publication]) -> Collection[str]:
        for publication in batch:
            report = publication.report
            ingestion = report.get("ingestion")
            writer = report.get("writer")
            self._latest[publication.symbol] = publication.payload
            self._entries[publication.symbol] = _Entry(
                report.get("updatedAt"),
                ingestion.get("status") if isinstance(ingestion, Mapping) else None,
                writer.get("nodeId") if isinstance(writer, Mapping) else None,
                publication.token.epoch, publication.token.counter,
            )
        self._observe_node()
        if self.clients:
            self.fan_out([(p.symbol, p.payload) for p in batch])
        return ()

    async def close(self) -> None:
        if self._fleet_task is not None:
            self._fleet_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fleet_task
            self._fleet_task = None
        if self._server is not None:
            await self._server.close()
            self._server = None

    # -- ReportReader (this node's own reports) ---------------------------------

    async def latest(self, symbol: str) -> bytes | None:
        return self._latest.get(symbol)

    async def index(self) -> Sequence[Mapping[str, Any]]:
        now_ms = int(time.time() * 1000)
        return [
            {"symbol": symbol, "age_ms": None if e.updated_at is None else now_ms - e.updated_at,
             "status": e.status, "owner": e.owner, "epoch": e.epoch, "token": e.token}
            for symbol, e in sorted(self._entries.items())
        ]

    def own_symbols(self) -> list[str]:
        return sorted(self._latest)

    # -- WebSocket fan-out ------------------------------------------------------

    def current(self, symbols: frozenset[str] | None) -> list[bytes]:
        """This node's latest reports of ``symbols`` (all when ``None``), by symbol."""
        names = sorted(self._latest) if symbols is None else sorted(symbols & self._latest.keys())
        return [self._latest[s] for s in names]

    def fan_out(self, updates: Sequence[tuple[str, bytes]]) -> None:
        """Queue one message per client with the updates it subscribed to.

        A message is built once per distinct subscription, not per client. A client
        whose queue is full is dropped with a reason: it never holds more than
        ``client_queue`` messages.
        """
        built: dict[frozenset[str] | None, bytes | None] = {}
        for client in list(self.clients):
            if client.dropped.is_set():
                continue
            key = client.symbols
            if key not in built:
                chosen = [p for s, p in updates if key is None or s in key]
                built[key] = _array(chosen) if chosen else None
            message = built[key]
            if message is None:
                continue
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                self.drop(client, f"too slow: {client.queue.maxsize} messages queued "
                                  f"unsent; reconnect and read faster")
                continue
            size = client.queue.qsize()
            if size > self.stats.ws_queue_peak:
                self.stats.ws_queue_peak = size

    def drop(self, client: WsClient, reason: str) -> None:
        """Stop queuing for ``client`` now; its handler closes it with ``reason``."""
        client.reason = reason
        client.dropped.set()
        self.clients.discard(client)
        self.stats.ws_clients = len(self.clients)
        self.stats.ws_dropped_slow += 1

    async def _follow_fleet(self) -> None:
        """Stream the reports other nodes write: poll the shared store for the symbols
        WebSocket clients want, send the ones that changed."""
        period = self.options.fleet_poll_ms / 1000
        while True:
            await asyncio.sleep(period)
            if not self.clients:
                continue
            try:
                await self._poll_fleet()
            except Exception as error:  # the store is down: clients wait, nothing crashes
                log.warning("http sink: reading the fleet's reports failed (%s)",
                            type(error).__name__)

    async def _poll_fleet(self) -> None:
        universe = self.node.profile.node.symbols if self.node is not None else ()
        wanted: set[str] = set()
        for client in self.clients:
            wanted.update(universe if client.symbols is None else client.symbols)
        if self.node is not None:
            wanted.difference_update(self.node.owned())  # those go out as published
        names = sorted(wanted)
        payloads = await asyncio.gather(*(self.reader.latest(s) for s in names))
        changed = []
        for symbol, payload in zip(names, payloads, strict=True):
            if payload is not None and self._fleet_sent.get(symbol) != payload:
                self._fleet_sent[symbol] = payload
                changed.append((symbol, payload))
        if changed:
            self.fan_out(changed)

    # -- health -----------------------------------------------------------------

    def _observe_node(self) -> None:
        """Note fast-cycle progress and new sink failures (cheap; once per cycle)."""
        if self.node is None:
            return
        now = time.monotonic()
        runs = self.node.stats.fast.runs
        if runs != self._cycle_runs:
            self._cycle_runs = runs
            self._cycle_seen_at = now
        errors = sum(self.node.stats.sink_errors.values())
        if errors != self._sink_errors:
            self._sink_errors = errors
            self._sink_error_at = now

    def health(self) -> tuple[int, dict[str, Any]]:
        """``(HTTP status, body)`` of ``/healthz``. The rule is in docs/read-api.md:
        503 when the fast cycle stalled, when every owned symbol is down (or has no
        report yet), or when a sink failed within ``stall_ms``; otherwise 200."""
        self._observe_node()
        now = time.monotonic()
        stall_s = self.options.stall_ms / 1000
        node = self.node
        owned = node.owned() if node is not None else tuple(self._latest)
        counts = {"ok": 0, "degraded": 0, "down": 0, "no_report": 0}
        for symbol in owned:
            entry = self._entries.get(symbol)
            status = entry.status if entry is not None else None
            counts[status if status in counts else "no_report"] += 1
        problems = []
        if node is not None and now - self._cycle_seen_at > stall_s \
                and now - self._started_at > stall_s:
            problems.append(f"the fast cycle has not run for {now - self._cycle_seen_at:.1f} s")
        if owned and counts["ok"] + counts["degraded"] == 0:
            problems.append(f"all {len(owned)} owned symbols are down or have no report yet")
        if self._sink_error_at is not None and now - self._sink_error_at <= stall_s:
            problems.append(f"a sink failed {now - self._sink_error_at:.1f} s ago")
        body: dict[str, Any] = {
            "status": "unhealthy" if problems else
                      ("degraded" if counts["degraded"] + counts["down"] + counts["no_report"]
                       else "ok"),
            "problems": problems,
            "symbols": {"owned": len(owned), **counts},
            "read_api": {"serves_from": "self" if not self.fleet else "fleet store",
                         **attrs.asdict(self.stats)},
        }
        if node is not None:
            components = node.component_stats()
            stats = node.stats
            body["node"] = {
                "id": node.node_id, "mode": node.mode,
                "uptime_s": round(now - self._started_at, 1),
                "fast_cycle": {"runs": stats.fast.runs, "skipped_ticks": stats.fast.skipped_ticks,
                               "p99_ms": round(stats.fast.quantile(0.99), 3)},
                "slow_cycle": {"runs": stats.slow.runs, "skipped_ticks": stats.slow.skipped_ticks,
                               "p99_ms": round(stats.slow.quantile(0.99), 3)},
                "reports_published": stats.reports_published,
                "restarts": dict(stats.component_restarts),
            }
            body["venue"] = {"name": node.venue, "stats": components.get("venue", {})}
            body["coordinator"] = {"name": node.coordinator,
                                   "stats": components.get("coordinator", {})}
            body["sinks"] = {name: {"errors": stats.sink_errors.get(name, 0),
                                    "stats": components.get(f"sink.{name}", {})}
                             for name in node.sinks}
        return (503 if problems else 200), body


# ---------------------------------------------------------------------------
# Hooks
# ---------------------------------------------------------------------------


@hookimpl
def marketcore_register_sinks(register: RegisterSink) -> None:
    register("http", HttpSink, options=HttpOptions)


@hookimpl
def marketcore_startup(node: NodeInfo) -> None:
    """Hand every ``http`` sink of the node the node itself (for ``/healthz``) and,
    in a fleet, the sibling sink to read reports from."""
    for component in node.components().values():
        if isinstance(component, HttpSink):
            component.attach(node)
