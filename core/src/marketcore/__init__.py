"""marketcore: live exchange market data in, compact market reports out.

Everything a plugin may import is listed in ``__all__`` below, together with
the public modules ``marketcore.events``, ``.book``, ``.state``,
``.components``, ``.report``, ``.pipeline``, ``.profile``, ``.clock``,
``.node``, ``.cli``, ``.synthetic``, ``.hookspecs``, ``.testing`` and
``.strategies`` (hypothesis strategies for plugin tests). Modules
whose names start with ``_`` are private and may change at any time.
"""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("marketcore")
"""Marks a plugin's hook implementations: ``@hookimpl def marketcore_register_…``."""

from marketcore._plugins import (  # noqa: E402 -- hookimpl must exist before plugins import it
    DEFAULT_PLUGINS,
    PluginError,
    PluginManager,
    Registration,
    Registries,
    get_plugin_manager,
)
from marketcore.book import Book  # noqa: E402
from marketcore.clock import Clock, SimulatedClock, WallClock  # noqa: E402
from marketcore.components import (  # noqa: E402
    Calculator,
    Coordinator,
    Cycle,
    CycleContext,
    Emit,
    Needs,
    Omitted,
    Ownership,
    Publication,
    ReplayNotSupported,
    Sink,
    Venue,
    WriterToken,
)
from marketcore.events import (  # noqa: E402
    BookDelta,
    BookSnapshot,
    Event,
    Instrument,
    Level,
    Side,
    Ticker,
    Trade,
    VenueState,
    VenueStatus,
)
from marketcore.node import NodeInfo  # noqa: E402
from marketcore.pipeline import Pipeline  # noqa: E402
from marketcore.profile import Profile, ProfileError, load_profile  # noqa: E402
from marketcore.report import SCHEMA_VERSION, encode_report, json_schema  # noqa: E402
from marketcore.state import LevelHistory, SymbolState, TradeRing, TradeWindow  # noqa: E402

__all__ = [
    "DEFAULT_PLUGINS",
    "SCHEMA_VERSION",
    "Book",
    "BookDelta",
    "BookSnapshot",
    "Calculator",
    "Clock",
    "Coordinator",
    "Cycle",
    "CycleContext",
    "Emit",
    "Event",
    "Instrument",
    "Level",
    "LevelHistory",
    "Needs",
    "NodeInfo",
    "Omitted",
    "Ownership",
    "Pipeline",
    "PluginError",
    "PluginManager",
    "Profile",
    "ProfileError",
    "Publication",
    "Registration",
    "Registries",
    "ReplayNotSupported",
    "Side",
    "SimulatedClock",
    "Sink",
    "SymbolState",
    "Ticker",
    "Trade",
    "TradeRing",
    "TradeWindow",
    "Venue",
    "VenueState",
    "VenueStatus",
    "WallClock",
    "WriterToken",
    "encode_report",
    "get_plugin_manager",
    "hookimpl",
    "json_schema",
    "load_profile",
]
