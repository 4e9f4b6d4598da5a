"""Venue ``synthetic``: seeded, realistic market data without a network.

Live, each subscribed symbol gets its own generator started at the current
time, and events are emitted when the wall clock reaches their receive time.
In a replay the same generators run on simulated time, so a seed always gives
the same reports.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Collection, Iterator, Sequence
from importlib import resources
from pathlib import Path

import attrs

from marketcore import hookimpl
from marketcore.components import Emit, RegisterVenue, ReplayNotSupported
from marketcore.events import Event, Instrument
from marketcore.synthetic import SyntheticConfig, SyntheticMarket


@attrs.frozen
class SyntheticVenueOptions(SyntheticConfig):
    """The generator's settings (see :class:`marketcore.synthetic.SyntheticConfig`)."""

    replay_duration_s: float = 60.0
    """How much market time ``marketcore replay`` generates."""


class SyntheticVenue:
    name = "synthetic"

    def __init__(self, options: SyntheticVenueOptions) -> None:
        self.options = options
        self._symbols: set[str] = set()

    def subscribe(self, symbols: Collection[str]) -> None:
        self._symbols.update(symbols)

    def unsubscribe(self, symbols: Collection[str]) -> None:
        self._symbols.difference_update(symbols)

    def _config(self, start_ms: int) -> SyntheticConfig:
        fields = {a.name: getattr(self.options, a.name) for a in attrs.fields(SyntheticConfig)}
        return SyntheticConfig(**{**fields, "start_ms": start_ms})

    async def run(self, emit: Emit) -> None:
        streams: dict[str, Iterator[Event]] = {}
        heap: list[tuple[int, str, Event]] = []
        while True:
            for symbol in self._symbols - streams.keys():
                start_ms = time.time_ns() // 1_000_000
                market = SyntheticMarket([symbol], self._config(start_ms))
                emit(Instrument(symbol, market.tick_size(symbol), market.lot_size(symbol),
                                recv_ns=start_ms * 1_000_000))
                stream = market.events()
                streams[symbol] = stream
                _push(heap, symbol, stream)
            for symbol in streams.keys() - self._symbols:
                del streams[symbol]  # its queued event is skipped when popped
            now_ns = time.time_ns()
            while heap and heap[0][0] <= now_ns:
                _, symbol, event = heapq.heappop(heap)
                stream = streams.get(symbol)
                if stream is None:
                    continue
                emit(event)
                _push(heap, symbol, stream)
            wait_s = 0.05 if not heap else min(0.05, (heap[0][0] - time.time_ns()) / 1e9)
            await asyncio.sleep(max(wait_s, 0.001))

    def replay(self, recordings: Sequence[Path], symbols: Collection[str]) -> Iterator[Event]:
        if recordings:
            raise ReplayNotSupported(
                "the synthetic venue generates its own data and reads no recordings; "
                "drop --recording, or use a venue that replays files")
        until_ms = self.options.start_ms + int(self.options.replay_duration_s * 1000)
        market = SyntheticMarket(sorted(symbols), self._config(self.options.start_ms))
        start_ns = self.options.start_ms * 1_000_000
        instruments = [Instrument(s, market.tick_size(s), market.lot_size(s), recv_ns=start_ns)
                       for s in sorted(symbols)]
        return itertools.chain(instruments, market.events(until_ms=until_ms))


def _push(heap: list[tuple[int, str, Event]], symbol: str, stream: Iterator[Event]) -> None:
    event = next(stream, None)
    if event is not None:
        heapq.heappush(heap, (event.recv_ns, symbol, event))


@hookimpl(trylast=True)
def marketcore_default_profile() -> str:
    """The core's default: the synthetic venue, so a bare install runs without a network."""
    return resources.files("marketcore").joinpath("default_profile.toml").read_text("utf-8")


@hookimpl
def marketcore_register_venues(register: RegisterVenue) -> None:
    register("synthetic", SyntheticVenue, options=SyntheticVenueOptions)
