"""Options of the ``redis`` coordinator and the ``redis`` sink.

Both share :class:`RedisOptions` — where Redis is and how keys are named — so a
profile that gives the coordinator and the sink the same ``url``,
``key_prefix`` and ``key_layout`` has them agree on the lease keys the sink's
fencing script checks. The defaults are SPEC's numbers.

The password is never read from the profile file: set
``MARKETCORE_COORDINATOR__PASSWORD`` (or the sink's own
``MARKETCORE_SINK__<n>__PASSWORD``). It is excluded from ``repr`` and logs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import attrs

__all__ = [
    "KEY_LAYOUTS",
    "MODES",
    "PASSWORD_VARIABLE",
    "CoordinatorOptions",
    "RedisOptions",
    "SinkOptions",
    "check_secret_source",
]

MODES = ("standalone", "sentinel", "cluster")
KEY_LAYOUTS = ("marketcore", "seed")
PASSWORD_VARIABLE = "MARKETCORE_COORDINATOR__PASSWORD"


def _fail(attribute: attrs.Attribute, expected: str, value: Any) -> None:
    """Raise in attrs' own (message, attribute, expected, value) shape.

    marketcore's profile errors read that shape, so the user sees
    ``coordinator.lease_ttl_ms: expected …, found …``.
    """
    raise ValueError(f"'{attribute.name}' must be {expected}", attribute, expected, value)


def _between(low: float, high: float) -> Callable[[Any, attrs.Attribute, float], None]:
    def check(_instance: Any, attribute: attrs.Attribute, value: float) -> None:
        if not low <= value <= high:
            _fail(attribute, f"a number from {low:g} to {high:g}", value)

    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[Any, attrs.Attribute, str], None]:
    def check(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
        if value not in choices:
            _fail(attribute, "one of " + ", ".join(repr(c) for c in choices), value)

    return check


def _redis_url(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        _fail(attribute, 'a URL "redis://host:port/db" or "rediss://…" (TLS)', value)
    try:
        parts.port  # noqa: B018 -- raises on a malformed port
    except ValueError:
        _fail(attribute, "a URL with a numeric port", value)


def _prefix(_instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value or any(c in value for c in "{} \t\r\n"):
        _fail(attribute, "a non-empty key prefix without braces or spaces", value)


def _addresses(_instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    for item in value:
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            _fail(attribute, 'addresses "host:port"', item)


@attrs.frozen
class RedisOptions:
    """Where Redis is, how to reach it, and how keys are named."""

    url: str = attrs.field(default="redis://localhost:6379/0", validator=_redis_url)
    """``redis://host:port/db``; ``rediss://`` for TLS. In cluster mode, any node.
    A user name may be given here or in ``username``. A password only when the
    whole URL comes from the environment (``MARKETCORE_COORDINATOR__URL``)."""
    mode: str = attrs.field(default="standalone", validator=_one_of(MODES))
    """``standalone``, ``sentinel`` (``sentinels`` name the sentinels; ``url``
    gives db, TLS and credentials of the master) or ``cluster``."""
    username: str = ""
    """ACL user (``""``: the default user)."""
    password: str = attrs.field(default="", repr=False)
    """From the environment only (``MARKETCORE_COORDINATOR__PASSWORD``)."""
    sentinels: tuple[str, ...] = attrs.field(default=(), converter=tuple, validator=_addresses)
    """``["host:port", …]`` of the sentinels (mode ``sentinel``)."""
    sentinel_service: str = "mymaster"
    """The master's name as the sentinels know it."""
    tls_ca_file: str = ""
    """CA bundle to verify the server (``rediss://``); ``""``: the system's."""
    tls_cert_file: str = ""
    """Client certificate, when the server asks for one."""
    tls_key_file: str = ""
    tls_verify: bool = True
    """Verify the server's certificate and host name."""
    socket_timeout_ms: int = attrs.field(default=600, validator=_between(10, 60_000))
    """Timeout of every socket read, write and connect. The coordinator requires
    it to be at most ``lease_ttl_ms / 3``."""
    max_connections: int = attrs.field(default=16, validator=_between(2, 10_000))
    """Connections in the client's pool (shared by the coordinator and the sink
    of one process when their connection options are equal)."""
    key_prefix: str = attrs.field(default="marketcore", validator=_prefix)
    """Prefix of every key in the ``marketcore`` layout."""
    key_layout: str = attrs.field(default="marketcore", validator=_one_of(KEY_LAYOUTS))
    """``marketcore``: ``<prefix>:lease:{SYMBOL}``, … (hash-tagged, Cluster-safe).
    ``seed``: the origin system's ``report:SYMBOL``, ``report:writer:SYMBOL``,
    ``report:writer:token:SYMBOL``, ``nt:node:<id>`` (standalone and Sentinel only)."""

    def __attrs_post_init__(self) -> None:
        fields = attrs.fields(type(self))
        if self.mode == "sentinel" and not self.sentinels:
            _fail(fields.sentinels, 'at least one "host:port" when mode = "sentinel"',
                  list(self.sentinels))
        if self.mode == "cluster" and self.key_layout == "seed":
            _fail(fields.key_layout, '"marketcore" in cluster mode (the seed layout has no '
                  "hash tags, so a script's keys would span slots)", self.key_layout)
        if self.key_layout == "seed" and self.key_prefix != "marketcore":
            _fail(fields.key_prefix, 'left at its default with key_layout = "seed" (the seed '
                  "layout's key names are fixed)", self.key_prefix)

    @property
    def socket_timeout_s(self) -> float:
        return self.socket_timeout_ms / 1000


@attrs.frozen
class CoordinatorOptions(RedisOptions):
    """``[coordinator]`` with ``use = "redis"``."""

    lease_ttl_ms: int = attrs.field(default=2000, validator=_between(100, 600_000))
    """A writer lease's time to live; renewed every third of it."""
    sticky_pct: float = attrs.field(default=0.02, validator=_between(0, 1))
    """Accepted for profiles written for SPEC's weight bonus of a current owner; the
    balanced assignment keeps every symbol with its live owner unless the band forces
    a move, so no weight comparison is left for a bonus to decide (no effect)."""
    min_hold_ms: int = attrs.field(default=2000, validator=_between(0, 3_600_000))
    """A node keeps a symbol at least this long after acquiring it, unless it leaves."""
    load_factor: float = attrs.field(default=1.25, validator=_between(1, 10))
    """Bound: no node is assigned more than ``ceil(load_factor · S / N)`` symbols. The
    assignment keeps every node within ``[floor(S/N), ceil(S/N)]``, inside any bound ≥ 1."""
    node_ttl_ms: int = attrs.field(default=5000, validator=_between(500, 3_600_000))
    """TTL of the membership key ``<prefix>:node:<id>``."""
    heartbeat_ms: int = attrs.field(default=1000, validator=_between(50, 600_000))
    """How often the membership key is refreshed (±10 % jitter)."""
    node_timeout_ms: int = attrs.field(default=0, validator=_between(0, 3_600_000))
    """A member whose key was not refreshed for this long counts as gone (a crashed
    node), before its key expires. ``0``: ``lease_ttl_ms``, so a crashed owner's
    symbols are reassigned as its leases run out."""
    watch_ms: int = attrs.field(default=250, validator=_between(20, 60_000))
    """How often the members are looked up (a graceful leave is seen within this)."""
    rebalance_ms: int = attrs.field(default=5000, validator=_between(100, 3_600_000))
    """The slow tick: the assignment is recomputed at least this often, and at once
    when the members change."""
    acquire_retry_ms: int = attrs.field(default=200, validator=_between(10, 60_000))
    """How often a symbol assigned here but held by another node is tried again."""
    host: str = ""
    """Advertised in the membership record (``""``: this machine's host name)."""
    metrics_url: str = ""
    """Advertised in the membership record, e.g. ``http://10.0.0.5:9101/metrics``."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        fields = attrs.fields(type(self))
        third = self.lease_ttl_ms // 3
        if self.socket_timeout_ms > third:
            _fail(fields.socket_timeout_ms, f"at most lease_ttl_ms / 3 = {third}",
                  self.socket_timeout_ms)
        if self.node_ttl_ms < 2 * self.heartbeat_ms:
            _fail(fields.node_ttl_ms, f"at least twice heartbeat_ms ({2 * self.heartbeat_ms})",
                  self.node_ttl_ms)
        timeout = self.member_timeout_ms
        if not 1.5 * self.heartbeat_ms <= timeout <= self.node_ttl_ms:
            _fail(fields.node_timeout_ms,
                  f"from 1.5 × heartbeat_ms ({math.ceil(1.5 * self.heartbeat_ms)}) to "
                  f"node_ttl_ms ({self.node_ttl_ms}); 0 means lease_ttl_ms", self.node_timeout_ms)

    @property
    def member_timeout_ms(self) -> int:
        return self.node_timeout_ms or self.lease_ttl_ms


@attrs.frozen
class SinkOptions(RedisOptions):
    """``[[sink]]`` with ``use = "redis"``.

    ``url``, ``key_prefix`` and ``key_layout`` must be the coordinator's: the
    fencing script reads the coordinator's lease and token keys. Without its
    own password the sink uses ``MARKETCORE_COORDINATOR__PASSWORD``.
    """

    ttl_s: int = attrs.field(default=300, validator=_between(1, 30 * 86_400))
    """TTL of each report key, so a dead fleet's reports expire."""
    stream: bool = False
    """Also append every accepted report to ``<prefix>:stream:{SYMBOL}``."""
    stream_maxlen: int = attrs.field(default=1000, validator=_between(1, 10_000_000))
    """Approximate cap of each report stream (``XADD MAXLEN ~``)."""
    audit: bool = False
    """Append (symbol, node, epoch, token) to ``<prefix>:audit:{SYMBOL}`` whenever a
    new token's first report is accepted, so accepted tokens can be proven monotonic."""
    audit_maxlen: int = attrs.field(default=10_000, validator=_between(1, 10_000_000))


def check_secret_source(options: RedisOptions, environ: Any = None) -> None:
    """Refuse a password that did not come from the environment.

    The host merges ``MARKETCORE_…__PASSWORD`` (and ``…__URL``) variables into
    the options; a password, or a URL holding one, equal to none of them was
    written in the profile file. The message never shows the secret.
    """
    env = os.environ if environ is None else environ

    def from_env(suffix: str) -> set[str]:
        return {value for name, value in env.items()
                if name.startswith("MARKETCORE_") and name.endswith(suffix)}

    if options.password and options.password not in from_env("__PASSWORD"):
        raise ValueError(f"password: expected it from the environment ({PASSWORD_VARIABLE}), "
                         "found it in the profile file")
    if urlsplit(options.url).password and options.url not in from_env("__URL"):
        raise ValueError(f"url: expected a URL without a password (set {PASSWORD_VARIABLE}), "
                         "found one with a password in the profile file")
