"""The ``http`` sink's server: plain HTTP answers and the WebSocket stream, on websockets.

websockets is a WebSocket server; its ``process_request`` hook may answer a request
with a plain HTTP response instead of upgrading it, which is all a read-only JSON API
needs (one request per connection, ``Connection: close``). Routes:

``/`` (web view), ``/get_report?symbol=S``, ``/reports``, ``/healthz``, ``/ws?symbols=A,B``.

Every answer is built from validated input only: a symbol is echoed back only after it
matched the allow list, a path or parameter never is.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from marketcore._builtins.http import WsClient

if TYPE_CHECKING:
    from marketcore._builtins.http import HttpSink

log = logging.getLogger("marketcore.http")

SERVER_HEADER = "marketcore"
MAX_QUERY_FIELDS = 16
ENDPOINTS = ("/", "/get_report?symbol=S", "/reports", "/healthz", "/ws?symbols=A,B")
_JSON = "application/json; charset=utf-8"
_SECURITY_HEADERS = (
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Connection", "close"),
)
_PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                "frame-ancestors 'none'; form-action 'none'")


def respond(status: int, body: bytes, content_type: str = _JSON,
            extra: tuple[tuple[str, str], ...] = ()) -> Response:
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))),
                       *_SECURITY_HEADERS, *extra])
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def respond_json(status: int, data: Any, extra: tuple[tuple[str, str], ...] = ()) -> Response:
    return respond(status, json.dumps(data, separators=(",", ":")).encode(), _JSON, extra)


def error(status: int, message: str, **fields: Any) -> Response:
    """A JSON error. ``message`` and ``fields`` must never hold unvalidated input."""
    return respond_json(status, {"error": message, "status": status, **fields})


def method_not_allowed(method: str | None = None) -> Response:
    response = error(405, "method not allowed: the read API answers GET only")
    response.headers["Allow"] = "GET"
    if method == "HEAD":  # a HEAD answer carries no body
        response.body = b""
    return response


class InvalidInput(Exception):
    """A request parameter failed validation; the message is safe to send back."""


class _GuardedConnection(ServerConnection):
    """Answers a request whose method is not GET with 405 before websockets parses it.

    websockets' parser closes the connection without any answer when a request has a
    body (``POST`` with data), and before websockets 16 for any method but GET. So the
    request line is checked here, on the first bytes received; a request line split
    across TCP segments falls through to ``process_request``, which checks again.
    """

    _checked = False

    def data_received(self, data: bytes) -> None:
        if not self._checked:
            self._checked = True
            method, space, _ = data[:32].partition(b" ")
            if space and method != b"GET" and method.isalpha():
                response = method_not_allowed(method.decode("ascii"))
                response.headers["Server"] = SERVER_HEADER
                self.protocol.send_response(response)  # then discards what follows
                self.send_data()
                return
        super().data_received(data)


class ApiServer:
    """The websockets server of one ``http`` sink."""

    def __init__(self, sink: HttpSink) -> None:
        self.sink = sink
        self.page = (resources.files("marketcore._builtins").joinpath("web/index.html")
                     .read_bytes() if sink.options.web else b"")
        self._server: Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (``port`` 0 picks a free one)."""
        self._server = await serve(
            self.handle_ws, host, port,
            process_request=self.route, server_header=SERVER_HEADER,
            create_connection=_GuardedConnection,
            compression=None,  # deflate costs CPU per client per message: fan-out sends as is
            max_size=4096, max_queue=4,  # clients only listen; they have nothing big to send
            ping_interval=20, ping_timeout=20, close_timeout=2, open_timeout=10,
        )
        return self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close(code=CloseCode.GOING_AWAY, reason="node shutting down")
            await self._server.wait_closed()
            self._server = None

    # -- HTTP -------------------------------------------------------------------

    async def route(self, connection: ServerConnection, request: Request) -> Response | None:
        """``process_request``: a plain HTTP answer, or ``None`` to upgrade ``/ws``."""
        sink = self.sink
        sink.stats.requests += 1
        response = await self._answer(request)
        if response is not None and response.status_code >= 400 and response.status_code != 503:
            sink.stats.bad_requests += 1
        return response

    async def _answer(self, request: Request) -> Response | None:
        if request.method != "GET":
            return method_not_allowed(request.method)
        url = urlsplit(request.path)
        try:
            query = parse_qs(url.query, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:
            return error(400, f"too many query parameters (at most {MAX_QUERY_FIELDS})")
        try:
            if url.path == "/get_report":
                return await self.get_report(query)
            if url.path == "/ws":
                return self.check_ws(query)
        except InvalidInput as invalid:
            return error(400, str(invalid))
        if url.path == "/reports":
            return await self.reports()
        if url.path == "/healthz":
            status, body = self.sink.health()
            return respond_json(status, body)
        if url.path in ("/", "/index.html") and self.page:
            return respond(200, self.page, "text/html; charset=utf-8",
                           (("Content-Security-Policy", _PAGE_POLICY),))
        if url.path == "/metrics":
            return error(404, "not found: Prometheus metrics are served on the node's "
                              "metrics bind ([metrics] bind in the profile), not here")
        return error(404, "not found", endpoints=list(ENDPOINTS))

    def symbol(self, value: str) -> str:
        """``value`` when it matches the allow list, else :class:`InvalidInput`."""
        if not self.sink.pattern.fullmatch(value):
            raise InvalidInput(f"malformed symbol: a symbol matches "
                               f"{self.sink.options.symbol_pattern}")
        return value

    async def get_report(self, query: Mapping[str, list[str]]) -> Response:
        values = query.get("symbol", [])
        if len(values) != 1:
            raise InvalidInput("give exactly one symbol: /get_report?symbol=BTCUSDT")
        symbol = self.symbol(values[0])
        try:
            payload = await self.sink.reader.latest(symbol)
        except Exception as failure:
            return _store_unavailable(failure)
        if payload is None:
            return error(404, "unknown symbol: no report for it", symbol=symbol)
        return respond(200, payload)

    async def reports(self) -> Response:
        try:
            entries = list(await self.sink.reader.index())
        except Exception as failure:
            return _store_unavailable(failure)
        return respond_json(200, {"count": len(entries), "reports": entries})

    # -- WebSocket --------------------------------------------------------------

    def subscription(self, query: Mapping[str, list[str]]) -> frozenset[str] | None:
        """The symbols of ``/ws?symbols=A,B`` (``None``: every symbol)."""
        values = query.get("symbols", [])
        if len(values) > 1:
            raise InvalidInput("give symbols once, comma-separated: /ws?symbols=BTCUSDT,ETHUSDT")
        names = [part.strip() for part in values[0].split(",")] if values else []
        names = [name for name in names if name]
        if not names:
            return None
        if len(names) > self.sink.options.max_symbols:
            raise InvalidInput(f"too many symbols (at most {self.sink.options.max_symbols})")
        return frozenset(self.symbol(name) for name in names)

    def check_ws(self, query: Mapping[str, list[str]]) -> Response | None:
        self.subscription(query)
        if len(self.sink.clients) >= self.sink.options.max_clients:
            return error(503, f"too many WebSocket clients (at most "
                              f"{self.sink.options.max_clients}); try again later")
        return None

    async def handle_ws(self, connection: ServerConnection) -> None:
        """Send the current reports, then every update, until the client leaves or
        falls ``client_queue`` messages behind (then it is closed with the reason)."""
        sink = self.sink
        assert connection.request is not None
        symbols = self.subscription(parse_qs(urlsplit(connection.request.path).query))
        client = WsClient(symbols, sink.options.client_queue)
        try:
            if sink.fleet:
                current = await _fleet_current(sink, symbols)
                sink.clients.add(client)
            else:  # no await between the snapshot and joining: no update is missed
                current = sink.current(symbols)
                sink.clients.add(client)
            sink.stats.ws_clients = len(sink.clients)
            client.queue.put_nowait(b"[" + b",".join(current) + b"]")
            pump = asyncio.create_task(self._pump(connection, client))
            dropped = asyncio.create_task(client.dropped.wait())
            closed = asyncio.create_task(connection.wait_closed())
            try:
                await asyncio.wait((pump, dropped, closed), return_when=asyncio.FIRST_COMPLETED)
                if client.dropped.is_set():
                    await connection.close(CloseCode.POLICY_VIOLATION, client.reason)
            finally:
                for task in (pump, dropped, closed):
                    task.cancel()
                await asyncio.gather(pump, dropped, closed, return_exceptions=True)
        finally:
            sink.clients.discard(client)
            sink.stats.ws_clients = len(sink.clients)

    async def _pump(self, connection: ServerConnection, client: WsClient) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                message = await client.queue.get()
                await connection.send(message, text=True)
                self.sink.stats.ws_messages += 1


def _store_unavailable(failure: Exception) -> Response:
    """The fleet store failed (Redis down): 503, the error's type only, never its text
    (it may hold a URL with a password)."""
    log.warning("http sink: the report store failed: %s", type(failure).__name__)
    return error(503, f"the report store is unavailable ({type(failure).__name__}); "
                      f"try again later")


async def _fleet_current(sink: HttpSink, symbols: frozenset[str] | None) -> list[bytes]:
    """The fleet store's latest reports of ``symbols`` (the fleet's universe when ``None``)."""
    if symbols is None:
        universe = sink.node.profile.node.symbols if sink.node is not None else ()
        names = sorted(set(universe) | set(sink.own_symbols()))
    else:
        names = sorted(symbols)
    found = await asyncio.gather(*(sink.reader.latest(s) for s in names))
    return [payload for payload in found if payload is not None]
