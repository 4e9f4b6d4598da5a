"""The simulator's settings; defaults are Binance's own numbers (SPEC §5)."""

from __future__ import annotations

import os

import attrs

from .streams import MARKETS

__all__ = ["START_MODES", "SimulatorConfig"]

START_MODES = ("now", "on_subscribe", "manual")


def _positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _not_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _recordings(value: object) -> tuple[str, ...]:
    if isinstance(value, str | os.PathLike):
        return (os.fspath(value),)  # type: ignore[arg-type]
    return tuple(os.fspath(v) for v in value)  # type: ignore[union-attr]


@attrs.frozen
class SimulatorConfig:
    """How the local exchange behaves.

    ``recordings`` are replayed in order (files that continue each other, or files
    of different symbols recorded together: frames are merged by receive time).
    ``speed`` 1 is real time, 10 ten times faster, 0 as fast as the clients read
    (the replay then waits for slow readers instead of dropping them). ``loop``
    starts over at the end with ids and times shifted so every sequence stays
    contiguous. ``clone`` N serves every recorded symbol as N symbols
    (``BTC0001USDT`` …) with prices scaled per clone and ids offset.

    ``start``: ``now`` (replay from :meth:`ExchangeSimulator.start`),
    ``on_subscribe`` (from the first subscription, so a test sees the first event)
    or ``manual`` (:meth:`ExchangeSimulator.resume`). ``rebase_time`` maps event
    times onto the wall clock (and, at ``speed`` N, N times faster), so data ages
    computed against the local clock look live; off, times are as recorded.
    """

    recordings: tuple[str, ...] = attrs.field(converter=_recordings)
    market: str = attrs.field(default="spot",
                              validator=attrs.validators.in_((*MARKETS, "auto")))
    speed: float = attrs.field(default=1.0, validator=_not_negative)
    loop: bool = False
    clone: int = attrs.field(default=0, validator=attrs.validators.and_(
        attrs.validators.ge(0), attrs.validators.le(9999)))
    host: str = "127.0.0.1"
    port: int = attrs.field(default=0, validator=attrs.validators.and_(
        attrs.validators.ge(0), attrs.validators.le(65535)))
    max_streams_per_connection: int = attrs.field(default=1024, validator=attrs.validators.ge(1))
    max_incoming_per_second: float = attrs.field(default=5.0, validator=_positive)
    weight_per_minute: int = attrs.field(default=6000, validator=attrs.validators.ge(1))
    ping_interval_s: float = attrs.field(default=20.0, validator=_positive)
    connection_lifetime_s: float = attrs.field(default=86400.0, validator=_positive)
    # Beyond the agreed interface: the rest of Binance's behaviour, tunable for tests.
    pong_timeout_s: float = attrs.field(default=60.0, validator=_positive)
    weight_window_s: float = attrs.field(default=60.0, validator=_positive)
    ban_after_429s: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    ban_s: float = attrs.field(default=120.0, validator=_positive)
    max_connection_attempts: int = attrs.field(default=300, validator=attrs.validators.ge(1))
    connection_attempts_window_s: float = attrs.field(default=300.0, validator=_positive)
    snapshot_latency_s: float = attrs.field(default=0.0, validator=_not_negative)
    max_send_buffer_bytes: int = attrs.field(default=16 * 1024 * 1024,
                                             validator=attrs.validators.ge(64 * 1024))
    slow_client_timeout_s: float = attrs.field(default=10.0, validator=_positive)
    start: str = attrs.field(default="now", validator=attrs.validators.in_(START_MODES))
    rebase_time: bool = True
    oversized_bytes: int = attrs.field(default=3 * 1024 * 1024,
                                       validator=attrs.validators.ge(1024))

    def __attrs_post_init__(self) -> None:
        if not self.recordings:
            raise ValueError("recordings: at least one recording file is needed")
