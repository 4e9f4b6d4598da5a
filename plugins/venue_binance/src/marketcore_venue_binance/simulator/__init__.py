"""A local Binance exchange: replays recordings over WebSocket + REST on loopback.

The venue's tests, the system tests and the default example profile run the real
client against it, without internet::

    async with ExchangeSimulator(SimulatorConfig(("rec.gz",), speed=10)) as sim:
        ...  # connect to f"{sim.ws_url}/stream?streams=btcusdt@depth@100ms"

``marketcore binance-sim rec.gz --speed 10`` runs it from the command line
(:mod:`.cli`). Modules: :mod:`.timeline` (recordings → replay timeline),
:mod:`.engine` (books, encoding, fan-out), :mod:`.server` (sockets, limits,
faults), :mod:`.rest`, :mod:`.limits`, :mod:`.faults`, :mod:`.streams`,
:mod:`.prices`.
"""

from __future__ import annotations

from .config import SimulatorConfig
from .server import ExchangeSimulator
from .stats import SimulatorStats

__all__ = ["ExchangeSimulator", "SimulatorConfig", "SimulatorStats"]
