"""What a venue, calculator, coordinator and sink look like to the host.

These are :class:`typing.Protocol` classes: a plugin implements the methods, it
does not inherit from anything. The ``Register*`` callables are what the
registration hooks in :mod:`marketcore.hookspecs` receive.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from marketcore.events import Event

if TYPE_CHECKING:
    from marketcore.state import SymbolState

__all__ = [
    "Calculator",
    "Coordinator",
    "Cycle",
    "CycleContext",
    "Emit",
    "Needs",
    "Omitted",
    "Ownership",
    "Publication",
    "RegisterCalculator",
    "RegisterCoordinator",
    "RegisterSink",
    "RegisterVenue",
    "ReplayNotSupported",
    "ReportReader",
    "Sink",
    "Venue",
    "WriterToken",
    "stats_of",
]


# ---------------------------------------------------------------------------
# Writer tokens
# ---------------------------------------------------------------------------


@attrs.frozen(order=True, slots=True)
class WriterToken:
    """Proof that a node may write a symbol's report.

    Ordered by ``(epoch, counter)``: a coordinator bumps ``epoch`` when its
    counter store may have lost history (a Redis restart), so a token handed
    out after a restart always compares newer than every token before it.
    The ``local`` coordinator hands out ``WriterToken(0, 1)``.
    """

    epoch: int
    counter: int


# ---------------------------------------------------------------------------
# Calculators
# ---------------------------------------------------------------------------


class Cycle(enum.StrEnum):
    """The two pipelines: ``fast`` (default every 250 ms) and ``slow`` (2000 ms)."""

    FAST = "fast"
    SLOW = "slow"


@attrs.frozen
class Needs:
    """The history a calculator needs kept in each SymbolState.

    The host sizes every SymbolState for the largest need of the calculators in
    the profile, so memory stays bounded and nothing is kept that nobody reads.
    """

    trade_window_ms: int = 0
    """How far back trades must be kept (``0``: no trades needed)."""
    level_history: int = 0
    """How many level-size samples to keep for percentiles (``0``: none)."""


@attrs.frozen(slots=True)
class Omitted:
    """Returned as a section's value when its inputs are insufficient.

    The section is left out of the report and ``reason`` is listed under
    ``health.omitted`` — a metric is never invented.
    """

    reason: str


@attrs.define(slots=True)
class CycleContext:
    """What a calculator gets besides the SymbolState, once per symbol per cycle."""

    now_ms: int
    """The cycle's time (wall clock live, the recording's clock in replay)."""
    cycle: Cycle
    report: Mapping[str, Any]
    """The sections computed so far in this cycle (read-only by convention):
    calculators with a higher ``order`` see the output of lower ones, and the
    fast cycle sees the slow cycle's latest sections."""


@runtime_checkable
class Calculator(Protocol):
    """A metric family: a pure function of a SymbolState and its own small state.

    Attributes the host reads once, when the pipeline is built:

    * ``name`` — the registered name;
    * ``cycle`` — the cycle it belongs to when a profile does not say;
    * ``sections`` — the report keys ``compute`` may return. A key that is not
      part of the standard report schema is published under ``ext.<key>``;
      name it after your plugin;
    * ``needs`` — a :class:`Needs`;
    * ``order`` (optional, default ``0``) — calculators run in ascending order,
      ties in profile order. ``health`` uses ``1000`` to see every section.

    Per-symbol state belongs in ``state.scratch(self.name)``, which is dropped
    with the symbol, so memory stays bounded.
    """

    name: str
    cycle: Cycle
    sections: tuple[str, ...]
    needs: Needs

    def compute(self, state: SymbolState, ctx: CycleContext) -> Mapping[str, Any]:
        """Return ``{section: value}`` for some of ``self.sections``.

        A value may be :class:`Omitted`. Raising, or running past the cycle's
        per-calculator budget, loses this calculator's sections for this symbol
        and cycle only; the reason is reported under ``health.omitted``.
        """
        ...


# ---------------------------------------------------------------------------
# Venues
# ---------------------------------------------------------------------------

Emit = Callable[[Event], None]
"""How a venue hands an event to the host. Synchronous and cheap: the host
applies the event to the symbol's state right away."""


class ReplayNotSupported(Exception):
    """Raised by :meth:`Venue.replay` when a venue cannot replay recordings."""


@runtime_checkable
class Venue(Protocol):
    """An async source of normalized events for a set of symbols that can change.

    The venue owns its connections: reconnects, resyncs and rate limits happen
    inside ``run``. It keeps each symbol's book correct by the venue's own
    sequencing rules and emits a :class:`marketcore.events.VenueStatus` when it
    cannot (``resyncing``) or when the feed is lost (``down``).
    """

    name: str

    async def run(self, emit: Emit) -> None:
        """Stream events for the subscribed symbols until cancelled.

        Cancellation is the stop signal: close connections and return.
        """
        ...

    def subscribe(self, symbols: Collection[str]) -> None:
        """Add symbols; may be called before or while ``run`` runs. Returns at once."""
        ...

    def unsubscribe(self, symbols: Collection[str]) -> None:
        """Remove symbols; no event for them is emitted after this returns."""
        ...

    def replay(self, recordings: Sequence[Path], symbols: Collection[str]) -> Iterator[Event]:
        """Events of ``symbols`` from recordings, in local-receive order.

        Deterministic: the same files give the same events. ``recv_ns`` of each
        event drives the simulated clock. Raise :class:`ReplayNotSupported`
        when the venue cannot replay.
        """
        ...


# ---------------------------------------------------------------------------
# Coordinators
# ---------------------------------------------------------------------------


class Ownership(Protocol):
    """The node's side of coordination, handed to :meth:`Coordinator.run`."""

    node_id: str
    universe: tuple[str, ...]
    """Every symbol the fleet serves (``[node] symbols``)."""

    def acquired(self, symbol: str, token: WriterToken) -> None:
        """This node now writes ``symbol`` with ``token`` (also for a renewed token)."""
        ...

    def released(self, symbol: str, reason: str) -> None:
        """This node no longer writes ``symbol``."""
        ...


@runtime_checkable
class Coordinator(Protocol):
    """Decides which symbols this node owns, and holds a writer token for each."""

    name: str

    async def run(self, ownership: Ownership) -> None:
        """Grant and revoke symbols through ``ownership`` until cancelled.

        On cancellation (node shutdown) release every lease and leave the fleet
        before returning, so peers take over at once.
        """
        ...

    def refused(self, symbol: str) -> None:
        """A sink refused a write for ``symbol`` (a newer writer exists): drop it."""
        ...


# ---------------------------------------------------------------------------
# Sinks
# ---------------------------------------------------------------------------


@attrs.frozen(slots=True)
class Publication:
    """One report of a cycle, with the token that entitles this node to write it."""

    symbol: str
    token: WriterToken
    report: Mapping[str, Any]
    payload: bytes = b""
    """The report as compact JSON, encoded once by the host for every sink."""


@runtime_checkable
class Sink(Protocol):
    """Receives each cycle's batch of reports."""

    name: str

    async def start(self) -> None:
        """Open files, connections or servers. Called once before the first batch."""
        ...

    async def publish(self, batch: Sequence[Publication]) -> Collection[str]:
        """Publish one cycle's reports, in one round trip where the backend allows.

        Returns the symbols whose write was refused because a newer writer holds
        them (fencing); the node then drops those symbols. Plain sinks return
        an empty collection. Other failures raise; the node counts them and
        goes on with the next cycle.
        """
        ...

    async def close(self) -> None:
        """Flush and close. Called once at shutdown."""
        ...


@runtime_checkable
class ReportReader(Protocol):
    """A sink that can also read back what was published — by this node or, for a shared
    store such as Redis, by any node of the fleet. The read API (``http`` sink) and
    ``marketcore report`` serve from the first configured sink that offers it."""

    async def latest(self, symbol: str) -> bytes | None:
        """The latest report of ``symbol`` as compact JSON, or None if there is none."""
        ...

    async def index(self) -> Sequence[Mapping[str, Any]]:
        """One entry per symbol with a report: ``symbol``, ``age_ms``, ``status``
        (``ingestion.status``), ``owner`` (the writing node id), ``epoch`` and
        ``token``, sorted by symbol."""
        ...


def stats_of(component: object) -> dict[str, float]:
    """A component's numeric counters, read from its optional ``stats`` attribute.

    The convention: a venue, coordinator or sink that keeps counters exposes them as
    ``stats`` — an attrs instance, or any object with ``as_dict()`` — whose int, float
    and bool fields are counters or gauges. The host exports them as Prometheus
    metrics and in ``/healthz`` without knowing the component. Other fields are
    ignored; a component without ``stats`` gives ``{}``.
    """
    stats = getattr(component, "stats", None)
    if stats is None:
        return {}
    if hasattr(stats, "as_dict"):
        values = stats.as_dict()
    elif attrs.has(type(stats)):
        values = attrs.asdict(stats, recurse=False)
    else:
        return {}
    return {name: float(value) for name, value in values.items()
            if isinstance(value, int | float) and not isinstance(value, str)}


# ---------------------------------------------------------------------------
# Registration callbacks
# ---------------------------------------------------------------------------


class _Register(Protocol):
    def __call__(
        self, name: str, factory: Callable[[Any], Any], *, options: type | None = None
    ) -> None: ...


RegisterVenue = _Register
RegisterCalculator = _Register
RegisterCoordinator = _Register
RegisterSink = _Register
