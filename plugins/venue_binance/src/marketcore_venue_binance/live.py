"""The live client: connections spread over symbols, subscriptions, handovers, snapshots.

:class:`LiveClient` owns one :class:`~marketcore_venue_binance.connection.FeedConnection`
per slot of the :class:`~marketcore_venue_binance.streams.StreamPlan`, the REST
scheduler, and the :class:`~marketcore_venue_binance.feed.Feed` that turns frames into
events. :class:`Slot` is the Binance side of one connection:

* the URL carries the slot's streams (as many as fit); the rest, and every later
  change, go out as SUBSCRIBE / UNSUBSCRIBE messages through the session's rate limit;
* ``serverShutdown`` asks the connection to rotate;
* **handover** during a rotation: frames of the new session are held per symbol until
  the old session has delivered everything before them (its book position reaches
  the link of the first held depth event — ``U - 1`` spot, ``pu`` futures — or, for
  symbols without depth, the trade id before the first held trade). Then the symbol
  switches: the held frames are replayed (what the old session already delivered is
  dropped as a duplicate) and the old session's frames for it are ignored. No update
  id is lost and none is applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from marketcore.components import Emit

from marketcore_venue_binance.connection import (
    SHUTDOWN,
    ConnectionPolicy,
    EndpointPool,
    FeedConnection,
    Session,
)
from marketcore_venue_binance.decode import Envelope, MalformedFrame
from marketcore_venue_binance.feed import Feed
from marketcore_venue_binance.options import EXCHANGE_INFO_WEIGHT, BinanceOptions, depth_weight
from marketcore_venue_binance.snapshots import RestScheduler
from marketcore_venue_binance.stats import VenueStats
from marketcore_venue_binance.streams import (
    StreamPlan,
    combined_url,
    stream_names,
    subscription_messages,
)
from marketcore_venue_binance.tasks import stop_tasks

__all__ = ["FrameTap", "LiveClient", "Slot"]

log = logging.getLogger("marketcore.venue.binance")

FrameTap = Callable[[str, int, bytes], None]
"""``tap(symbol, recv_ns, raw)``: every frame the client applies, and every snapshot
body, exactly as received (the recorder writes them)."""

_PRIMARY_KINDS = ("depth", "trade", "aggTrade")


def _policy(options: BinanceOptions) -> ConnectionPolicy:
    return ConnectionPolicy(
        watchdog_s=options.watchdog_s, rotate_after_s=options.rotate_after_s,
        handover_timeout_s=options.handover_timeout_s,
        connect_timeout_s=options.connect_timeout_s,
        backoff_initial_s=options.backoff_initial_s, backoff_max_s=options.backoff_max_s,
        backoff_factor=options.backoff_factor, stable_after_s=options.stable_after_s,
        messages_per_second=options.messages_per_second,
        max_message_bytes=max(4 * options.max_frame_bytes, 1 << 22))


class Slot:
    """The symbols of one connection and the Binance side of its sessions."""

    def __init__(self, client: LiveClient, number: int) -> None:
        self.client = client
        self.number = number
        self.connection = FeedConnection(f"binance-ws-{number}", self, client.ws_pool,
                                         client.policy, counters=client.stats,
                                         rng=client.rng)
        self.active: Session | None = None
        self.incoming: Session | None = None
        self.switched: set[str] = set()
        self.held: dict[str, list[tuple[str, Any, int, bytes]]] = {}
        self.handover_done = asyncio.Event()
        self.changed = asyncio.Event()
        self._ids = itertools.count(1)

    @property
    def symbols(self) -> dict[str, None]:
        return self.client.plan.slots.get(self.number, {})

    def desired_streams(self) -> list[str]:
        kinds = self.client.options.streams
        return [name for symbol in self.symbols for name in stream_names(symbol, kinds)]

    async def run(self) -> None:
        subscriptions = asyncio.create_task(self._subscriptions(),
                                            name=f"{self.connection.name} subscriptions")
        try:
            await self.connection.run()
        finally:
            await stop_tasks(subscriptions)

    def forget(self, symbol: str) -> None:
        """``symbol`` left this slot."""
        self.held.pop(symbol, None)
        self.switched.discard(symbol)
        self.changed.set()
        self._check_handover()

    # ----------------------------------------------------------------- subscriptions

    async def _subscriptions(self) -> None:
        while True:
            await self.changed.wait()
            self.changed.clear()
            for session in (self.active, self.incoming):
                if session is not None and not session.closed:
                    with contextlib.suppress(Exception):  # a dying session: it is replaced
                        await self._sync_streams(session)

    async def _sync_streams(self, session: Session) -> None:
        """Send SUBSCRIBE / UNSUBSCRIBE until the session carries the desired streams
        (one at a time per session, so no change is sent twice)."""
        lock: asyncio.Lock = session.state.setdefault("lock", asyncio.Lock())
        async with lock:
            await self._sync_streams_locked(session)

    async def _sync_streams_locked(self, session: Session) -> None:
        have: set[str] = session.state.setdefault("streams", set())
        while True:
            desired = self.desired_streams()
            wanted = set(desired)
            remove = sorted(have - wanted)
            add = [s for s in desired if s not in have]
            if not remove and not add:
                return
            for method, streams in (("UNSUBSCRIBE", remove), ("SUBSCRIBE", add)):
                for message in subscription_messages(method, streams, self._ids):
                    await session.send(message)
                if method == "UNSUBSCRIBE":
                    have.difference_update(streams)
                else:
                    have.update(streams)

    # ----------------------------------------------------------------- SessionHandler

    def url(self, endpoint: str) -> str:
        url, _rest = combined_url(endpoint, self.desired_streams())
        return url

    def session_started(self, session: Session, replacing: Session | None) -> None:
        carried = session.url.partition("streams=")[2]
        session.state["streams"] = set(carried.split("/")) if carried else set()
        if replacing is None:
            self.active = session
        else:
            self.incoming = session
            self.switched.clear()
            self.held.clear()
            self.handover_done.clear()

    async def session_ready(self, session: Session) -> None:
        await self._sync_streams(session)

    def frame(self, session: Session, recv_ns: int, raw: bytes) -> None:
        client = self.client
        decoded = client.feed.decode(raw)
        if decoded is None:
            return
        symbol, kind, event = decoded
        if kind is None:
            self._control(session, event)
            return
        if session is self.active:
            if symbol in self.switched:
                return  # the new session serves it now
            client.dispatch(symbol, kind, event, recv_ns, raw)
            if symbol in self.held:
                self._maybe_switch(symbol)
        elif session is self.incoming:
            if symbol in self.switched:
                client.dispatch(symbol, kind, event, recv_ns, raw)
                return
            held = self.held.setdefault(symbol, [])
            held.append((kind, event, recv_ns, raw))
            if len(held) >= client.options.max_buffered_events:
                self._switch(symbol)
            else:
                self._maybe_switch(symbol)

    def session_ended(self, session: Session, reason: str, replaced: bool) -> None:
        if session is self.incoming:  # the replacement failed; the old one goes on
            self.incoming = None
            self.held.clear()
            self.switched.clear()
            return
        if session is not self.active or reason == SHUTDOWN:
            return
        if replaced and self.incoming is not None:
            for symbol in list(self.held):
                self._switch(symbol)
            self.active, self.incoming = self.incoming, None
            self.switched.clear()
            return
        self.active = None
        self.client.feed.connection_lost(list(self.symbols), f"connection lost: {reason}",
                                         time.time_ns())

    async def handover(self, old: Session, new: Session) -> None:
        self._check_handover()
        await self.handover_done.wait()

    # ----------------------------------------------------------------- internals

    def _control(self, session: Session, envelope: Envelope) -> None:
        stats = self.client.stats
        if envelope.e == "serverShutdown":
            stats.server_shutdowns += 1
            log.info("%s: serverShutdown received; rotating", self.connection.name,
                     extra={"component": "venue.binance"})
            if session is self.active:
                self.connection.rotate("serverShutdown")
        elif envelope.error:
            stats.subscribe_errors += 1
            self.client.feed.bad_input.report(
                "request_error", bytes(envelope.error).decode("utf-8", "replace"))

    def _maybe_switch(self, symbol: str) -> None:
        held = self.held.get(symbol)
        if held and self._caught_up(symbol, held):
            self._switch(symbol)

    def _caught_up(self, symbol: str, held: list[tuple[str, Any, int, bytes]]) -> bool:
        """Whether the old session has delivered everything before the held frames."""
        feed = self.client.feed.symbols.get(symbol)
        if feed is None:
            return True
        kinds = self.client.primary_kinds
        if not kinds:
            return True
        futures = self.client.options.futures
        for kind, event, _, _ in held:
            if kind not in kinds:
                continue
            if kind == "depth":
                sync = feed.sync
                if not sync.live:
                    return True
                link = event.prev_update_id if futures else event.first_update_id - 1
                return link is None or sync.last_update_id >= link
            trade_id = event.trade_id if kind == "trade" else event.agg_id
            return feed.last_trade_id is None or feed.last_trade_id >= trade_id - 1
        return False

    def _switch(self, symbol: str) -> None:
        self.switched.add(symbol)
        held = self.held.pop(symbol, ())
        for kind, event, recv_ns, raw in held:
            self.client.dispatch(symbol, kind, event, recv_ns, raw)
        self._check_handover()

    def _check_handover(self) -> None:
        if self.incoming is not None and self.switched.issuperset(self.symbols):
            self.handover_done.set()


class LiveClient:
    """Everything a live Binance feed needs, for one venue instance."""

    def __init__(self, options: BinanceOptions, emit: Emit, stats: VenueStats, *,
                 ws_urls: Iterable[str], rest_urls: Iterable[str],
                 tap: FrameTap | None = None, rng: random.Random | None = None) -> None:
        self.options = options
        self.stats = stats
        self.tap = tap
        self.rng = rng or random.Random()
        self.feed = Feed(options, emit, stats, request_snapshot=self._request_snapshot)
        self.ws_pool = EndpointPool(tuple(ws_urls), failures=options.breaker_failures,
                                    cooldown_s=options.breaker_cooldown_s,
                                    on_open=self._breaker_opened)
        self.rest_pool = EndpointPool(tuple(rest_urls), failures=options.breaker_failures,
                                      cooldown_s=options.breaker_cooldown_s,
                                      on_open=self._breaker_opened)
        self.scheduler = RestScheduler(
            self.rest_pool, weight_per_minute=options.snapshot_weight_per_minute,
            jitter_s=options.snapshot_jitter_s, concurrency=options.snapshot_concurrency,
            timeout_s=options.snapshot_timeout_s, stats=stats, rng=self.rng)
        self.policy = _policy(options)
        self.plan = StreamPlan(options.max_streams_per_connection // len(options.streams))
        self.primary_kinds = next(
            ((k,) for k in _PRIMARY_KINDS if any(s.partition("@")[0] == k
                                                  for s in options.streams)), ())
        self.slots: dict[int, Slot] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._info_wanted = asyncio.Event()
        self._info_tried: set[str] = set()
        prefix = "/api/v3" if options.market == "spot" else "/fapi/v1"
        self._depth_path = prefix + "/depth?symbol={symbol}&limit=" + str(options.snapshot_limit)
        self._info_path = prefix + "/exchangeInfo"
        self._depth_weight = depth_weight(options.snapshot_limit, options.market)

    # ----------------------------------------------------------------- symbols

    def subscribe(self, symbols: Iterable[str]) -> None:
        for symbol in symbols:
            if symbol in self.plan.slot_of:
                continue
            self.feed.add(symbol)
            number = self.plan.assign(symbol)
            slot = self.slots.get(number)
            if slot is None:
                slot = self.slots[number] = Slot(self, number)
            slot.changed.set()
        self._info_wanted.set()
        self._wake.set()

    def unsubscribe(self, symbols: Iterable[str]) -> None:
        for symbol in symbols:
            self.feed.remove(symbol)
            self.scheduler.cancel(f"depth:{symbol}")
            number = self.plan.release(symbol)
            slot = self.slots.get(number) if number is not None else None
            if slot is not None:
                slot.forget(symbol)
        self._wake.set()

    def slot_of(self, symbol: str) -> Slot | None:
        number = self.plan.slot_of.get(symbol)
        return None if number is None else self.slots.get(number)

    # ----------------------------------------------------------------- run

    async def run(self) -> None:
        background = [asyncio.create_task(self.scheduler.run(), name="binance-rest"),
                      asyncio.create_task(self._refresh_loop(), name="binance-refresh"),
                      asyncio.create_task(self._exchange_info_loop(), name="binance-info")]
        for task in background:  # a background task that fails stops the client
            task.add_done_callback(lambda _task: self._wake.set())
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                for task in background:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        raise task.exception()
                for number, slot in list(self.slots.items()):
                    if number in self.plan.slots:
                        if number not in self._tasks:
                            self._tasks[number] = asyncio.create_task(
                                slot.run(), name=slot.connection.name)
                    else:
                        task = self._tasks.pop(number, None)
                        del self.slots[number]
                        # the host may stop the venue during this wait: its cancellation
                        # must end run(), not vanish with the slot's own
                        await stop_tasks(task)
        finally:
            await stop_tasks(*self._tasks.values(), *background)
            self._tasks.clear()

    def dispatch(self, symbol: str, kind: str, event: Any, recv_ns: int, raw: bytes) -> None:
        if self.tap is not None and symbol in self.feed.symbols:
            self.tap(symbol, recv_ns, raw)
        self.feed.dispatch(symbol, kind, event, recv_ns)

    # ----------------------------------------------------------------- REST

    def _request_snapshot(self, symbol: str) -> bool:
        self.scheduler.request(
            f"depth:{symbol}", self._depth_path.format(symbol=symbol), self._depth_weight,
            lambda body, recv_ns: self._snapshot_arrived(symbol, body, recv_ns),
            lambda _reason: self.feed.snapshot_failed(symbol))
        return True

    def _snapshot_arrived(self, symbol: str, body: bytes, recv_ns: int) -> None:
        feed = self.feed
        if symbol not in feed.symbols:
            return
        try:
            snapshot = feed.decoder.snapshot(body)
        except MalformedFrame as error:
            feed.malformed(error, symbol)
            feed.snapshot_failed(symbol)
            feed.want_snapshot(symbol)
            return
        if self.tap is not None:
            self.tap(symbol, recv_ns, body)
        feed.snapshot(symbol, snapshot, recv_ns)

    async def _exchange_info_loop(self) -> None:
        if not self.options.exchange_info:
            return
        while True:
            await self._info_wanted.wait()
            self._info_wanted.clear()
            missing = [s for s in self.feed.symbols if s not in self._info_tried]
            if not missing:
                continue
            self._info_tried.update(missing)
            path = self._info_path
            if self.options.market == "spot":
                path += "?symbols=" + quote(json.dumps(missing, separators=(",", ":")))
            self.scheduler.request(f"info:{','.join(missing)[:200]}", path,
                                   EXCHANGE_INFO_WEIGHT[self.options.market],
                                   self._exchange_info_arrived, self._exchange_info_failed)
            await asyncio.sleep(1.0)  # gather symbols subscribed close together

    def _exchange_info_arrived(self, body: bytes, recv_ns: int) -> None:
        try:
            info = self.feed.decoder.exchange_info(body)
        except MalformedFrame as error:
            self._exchange_info_failed(str(error))
            return
        self.feed.set_grids(info.grids(), recv_ns)

    @staticmethod
    def _exchange_info_failed(reason: str) -> None:
        log.info("exchangeInfo unavailable (%s); tick and lot sizes are inferred from the "
                 "snapshots", reason[:120], extra={"component": "venue.binance"})

    async def _refresh_loop(self) -> None:
        interval = self.options.resnapshot_interval_s
        if interval <= 0:
            return
        due: dict[str, float] = {}
        while True:
            await asyncio.sleep(min(1.0, interval / 4))
            now = time.monotonic()
            for symbol, feed in list(self.feed.symbols.items()):
                if not feed.sync.live:
                    due.pop(symbol, None)
                    continue
                at = due.get(symbol)
                if at is None:
                    due[symbol] = now + interval * self.rng.uniform(0.5, 1.0)
                elif now >= at and self.feed.begin_refresh(symbol):
                    due[symbol] = now + interval * self.rng.uniform(0.9, 1.1)
            for symbol in [s for s in due if s not in self.feed.symbols]:
                del due[symbol]

    def _breaker_opened(self, url: str) -> None:
        self.stats.breaker_opens += 1
        log.warning("endpoint %s failed repeatedly; skipping it for %.0f s", url,
                    self.options.breaker_cooldown_s, extra={"component": "venue.binance"})
