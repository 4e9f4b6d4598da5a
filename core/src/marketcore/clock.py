"""Clocks: the wall clock for live runs, a simulated clock for replays and tests.

Everything that stamps a report or ages data asks a :class:`Clock`, so the same
pipelines run live and, deterministically, on a recording's own time.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "SimulatedClock", "WallClock"]


class Clock(Protocol):
    def now_ms(self) -> int:
        """Current UTC time in milliseconds."""
        ...


class WallClock:
    """The system's UTC clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class SimulatedClock:
    """A clock that moves only when told to: replays and tests."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def set(self, now_ms: int) -> None:
        """Move to ``now_ms``; time never runs backwards."""
        if now_ms > self._now_ms:
            self._now_ms = now_ms

    def advance(self, ms: int) -> None:
        self._now_ms += ms
