"""What the simulator did: counters a test or an operator reads (``sim.stats``, ``/_sim/stats``)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

__all__ = ["SimulatorStats"]


@attrs.define(slots=True)
class SimulatorStats:
    """Counters since start. Frames are counted per subscriber they went to.

    ``disconnects`` by reason: ``client_closed``, ``connection_lost``,
    ``rate_limit`` (too many incoming messages), ``slow_client`` (send buffer
    over its bound), ``ping_timeout``, ``lifetime`` (24 h cut), ``server_shutdown``,
    ``fault_drop`` (:meth:`drop_connections`), ``stopped``.
    """

    connections_opened: int = 0
    connections_open: int = 0
    handshakes_rejected: Counter[str] = attrs.field(factory=Counter)
    messages_in: int = 0
    requests_in: int = 0
    request_errors: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    events_encoded: int = 0
    frames_withheld: int = 0
    http_requests: int = 0
    weight_used: int = 0
    http_429: int = 0
    http_418: int = 0
    snapshots_served: int = 0
    disconnects: Counter[str] = attrs.field(factory=Counter)
    faults: Counter[str] = attrs.field(factory=Counter)
    replay_items: int = 0
    replay_lag_max_ms: float = 0.0
    loops_completed: int = 0
    replay_finished: bool = False
    recorded_gaps: int = 0
    frames_per_stream: dict[str, int] = attrs.field(factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (the ``/_sim/stats`` body)."""
        out = attrs.asdict(self, recurse=False)
        for key, value in out.items():
            if isinstance(value, Counter):
                out[key] = dict(value)
        out["frames_per_stream"] = dict(self.frames_per_stream)
        return out
