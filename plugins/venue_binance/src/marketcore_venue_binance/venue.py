"""The ``binance`` venue: what the marketcore host sees.

``BinanceVenue(options)`` does no I/O (``marketcore validate`` builds it). ``run(emit)``
starts the live client — and, with ``simulate = [recordings]``, the bundled exchange
simulator on a free loopback port first, with the endpoints pointed at it, so the real
client code path runs without internet. ``replay(recordings, symbols)`` turns recordings
into events through the same feed logic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from marketcore.components import Emit
from marketcore.events import Event

from marketcore_venue_binance.feed import Feed
from marketcore_venue_binance.live import FrameTap, LiveClient
from marketcore_venue_binance.options import BinanceOptions
from marketcore_venue_binance.replay import Replay
from marketcore_venue_binance.stats import VenueStats

__all__ = ["BinanceVenue"]


class BinanceVenue:
    """Binance spot or USDⓈ-M futures market data, kept in sync by Binance's rules."""

    name = "binance"

    def __init__(self, options: BinanceOptions | None = None) -> None:
        self.options = options or BinanceOptions()
        self._stats = VenueStats()
        self._symbols: dict[str, None] = {}
        self._client: LiveClient | None = None
        self._feed: Feed | None = None
        self.simulator: Any = None
        """The in-process exchange simulator while ``run`` uses one (``simulate``)."""

    # ----------------------------------------------------------------- Venue protocol

    @property
    def stats(self) -> VenueStats:
        """Counters: frames, reconnects, rotations, gaps, resyncs, malformed by kind,
        REST weight used, … (see :class:`~marketcore_venue_binance.stats.VenueStats`)."""
        if self._feed is not None:
            self._feed.refresh_stats()
        return self._stats

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._symbols)

    def subscribe(self, symbols: Collection[str]) -> None:
        added = [s.upper() for s in symbols if s.upper() not in self._symbols]
        for symbol in added:
            self._symbols[symbol] = None
        if self._client is not None and added:
            self._client.subscribe(added)

    def unsubscribe(self, symbols: Collection[str]) -> None:
        removed = [s.upper() for s in symbols if s.upper() in self._symbols]
        for symbol in removed:
            del self._symbols[symbol]
        if self._client is not None and removed:
            self._client.unsubscribe(removed)

    async def run(self, emit: Emit, *, tap: FrameTap | None = None) -> None:
        """Stream events of the subscribed symbols until cancelled.

        ``tap(symbol, recv_ns, raw)`` receives every applied frame and snapshot body as
        received (the ``record`` command writes them).
        """
        options = self.options
        ws_urls, rest_urls = options.ws_urls(), options.rest_urls()
        async with contextlib.AsyncExitStack() as stack:
            if options.simulate:
                self.simulator = await stack.enter_async_context(self._simulator())
                stack.callback(setattr, self, "simulator", None)
                ws_urls, rest_urls = (self.simulator.ws_url,), (self.simulator.rest_url,)
            client = LiveClient(options, emit, self._stats, ws_urls=ws_urls,
                                rest_urls=rest_urls, tap=tap)
            self._client, self._feed = client, client.feed
            try:
                client.subscribe(list(self._symbols))
                await client.run()
            finally:
                client.feed.refresh_stats()
                self._client = None

    def replay(self, recordings: Sequence[Path], symbols: Collection[str]) -> Iterator[Event]:
        """Events of ``symbols`` from recordings (SPEC §9 format), in receive order."""
        if not recordings:
            raise ValueError("the binance venue replays recordings: pass at least one "
                             "(--recording FILE); `marketcore record` writes them")
        replay = Replay(self.options, recordings, symbols, self._stats)
        self._feed = replay.feed
        return iter(replay)

    # ----------------------------------------------------------------- internals

    def _simulator(self) -> Any:
        from marketcore_venue_binance.simulator import ExchangeSimulator, SimulatorConfig

        recordings = tuple(str(Path(p).expanduser()) for p in self.options.simulate)
        for path in recordings:
            if not Path(path).is_file():
                raise FileNotFoundError(f"venue.simulate: recording {path} does not exist")
        config = SimulatorConfig(recordings=recordings, market=self.options.market,
                                 speed=self.options.simulate_speed,
                                 loop=self.options.simulate_loop)
        return ExchangeSimulator(config)

    # for tests and diagnostics

    @property
    def client(self) -> LiveClient | None:
        """The running live client, if any."""
        return self._client

