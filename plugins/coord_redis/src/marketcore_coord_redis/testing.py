"""Test a fleet of real ``marketcore run`` nodes sharing symbols through one real Redis.

For fleet tests, chaos scenarios and failover benchmarks: :class:`Fleet` starts
node processes (synthetic venue, coordinator ``redis``, sink ``redis`` with the
report stream and the audit stream on), each with its own
``MARKETCORE_NODE__ID``, and signals, stops and reaps each one by its pid, never
by name. What the fleet did is read back from Redis itself, so a check never
trusts the nodes' own account:

* the lease keys — who owns what now (:meth:`FleetReader.holders`);
* the report keys — who wrote each symbol's latest report, under which token
  (:meth:`FleetReader.latest`, :meth:`FleetReader.writers`);
* the audit streams — every newly accepted token, in order
  (:meth:`FleetReader.audit`);
* the report streams — every accepted report, stamped by the server's clock in
  its entry id (:meth:`FleetReader.reports`, :meth:`FleetReader.takeover`);
* all of them at once — the lease guarantees, checked over every accepted write
  (:meth:`FleetReader.safety`, :func:`assert_safe`).

:class:`FleetReader` is the reading half alone, for tests that run coordinators
and sinks in-process or start their own node processes.

The Redis server is any object with ``.url`` and ``.command(*args)`` (see
:class:`RedisCommands`), normally ``marketcore.testing``'s ``redis_server``
fixture or ``RedisServer``. This module needs only this package's dependencies
(no pytest), so a benchmark can use it too::

    from marketcore.testing import RedisServer
    from marketcore_coord_redis.testing import Fleet, assert_safe, wait_for

    with RedisServer() as server, Fleet(server, directory) as fleet:
        for node_id in ("node-a", "node-b", "node-c"):
            fleet.start(node_id)
        held = fleet.settled(["node-a", "node-b", "node-c"])  # symbol -> holder
        fleet.kill("node-a")                                   # SIGKILL, by pid
        wait_for(lambda: fleet.covered(["node-b", "node-c"]), 30, "the takeover")
        assert_safe(fleet)  # no stale, late or second owner's write was accepted

The keys read are the default layout's (``marketcore:lease:{SYMBOL}``, …); the
fleet's profile leaves ``key_prefix`` and ``key_layout`` at their defaults.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import attrs

from marketcore_coord_redis.keys import KeyLayout

__all__ = [
    "FAST_FLEET",
    "SYMBOLS",
    "Accepted",
    "Fleet",
    "FleetReader",
    "RedisCommands",
    "SafetyReport",
    "Takeover",
    "assert_safe",
    "die_with_parent",
    "marketcore_command",
    "wait_for",
]

SYMBOLS = tuple(f"F{i:02d}USDT" for i in range(15))
"""The default universe of a :class:`Fleet`: 15 synthetic symbols."""

FAST_FLEET: Mapping[str, int] = {
    "lease_ttl_ms": 1200, "socket_timeout_ms": 400, "heartbeat_ms": 300, "node_ttl_ms": 3000,
    "watch_ms": 100, "min_hold_ms": 500, "acquire_retry_ms": 100, "rebalance_ms": 2000}
"""Coordinator options that let a test fleet settle in a few seconds (the default of
:class:`Fleet`); the socket timeout stays ≤ TTL / 3 as the coordinator requires."""

STREAM_MAXLEN = 100_000
"""The cap of every report and audit stream of a :class:`Fleet`: far above what a test
writes, so :meth:`FleetReader.safety` sees every accepted write."""

T = TypeVar("T")


class RedisCommands(Protocol):
    """The Redis server a fleet runs on (``marketcore.testing.RedisServer`` is one)."""

    @property
    def url(self) -> str:
        """``redis://host:port/db``: what the nodes connect to."""
        ...

    def command(self, *args: Any) -> Any:
        """Run one command and return its reply (bulk strings as ``bytes``)."""
        ...


def marketcore_command() -> str | None:
    """The ``marketcore`` console script of this environment (``None`` when absent):
    the one beside the running interpreter, else the first on PATH."""
    beside = Path(sys.executable).with_name("marketcore")
    return str(beside) if beside.is_file() else shutil.which("marketcore")


def die_with_parent() -> None:
    """A ``preexec_fn`` for a child process (Linux): it gets SIGKILL when the process
    that started it dies, so a test run killed from outside leaves no node behind.
    Elsewhere it does nothing."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def wait_for(condition: Callable[[], T], timeout: float, message: str | Callable[[], object],
             every: float = 0.05) -> T:
    """Poll ``condition`` every ``every`` s until it returns something true, and return
    that; raise ``AssertionError`` after ``timeout`` s. ``message`` says what was awaited;
    a callable is called only then (to show the state at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            what = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _fields(flat: list[Any]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in zip(flat[::2], flat[1::2], strict=True)}


def _entry_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


@attrs.frozen
class Accepted:
    """One accepted write read back from a stream: its entry id, the server's time (ms)
    in it, the writer node and its token ``(epoch, counter)``."""

    entry_id: bytes
    ms: int
    node: str
    epoch: int
    counter: int

    @property
    def token(self) -> tuple[int, int]:
        return (self.epoch, self.counter)


@attrs.frozen
class Takeover:
    """A symbol changing writer after ``victim`` stopped, from the report stream."""

    symbol: str
    victim: str
    last_ms: int
    """Server time of the victim's last accepted report."""
    first_ms: int
    """Server time of the first report accepted from another node after it."""
    node: str
    """That other node: the new owner."""

    @property
    def gap_ms(self) -> int:
        return self.first_ms - self.last_ms


@attrs.frozen
class SafetyReport:
    """Violations of the lease guarantees found in the streams (all must be empty)."""

    backwards: list[tuple[str, Accepted, Accepted]]
    """``(symbol, newest before, entry)``: an accepted report whose token is older than
    one accepted before it — a stale, late or second owner's write got through."""
    reused: list[tuple[str, tuple[int, int], str, str]]
    """``(symbol, token, first node, other node)``: one token accepted for two nodes."""
    audit_backwards: list[tuple[str, list[tuple[int, int]]]]
    """``(symbol, tokens)``: an audit stream whose tokens are not strictly increasing."""
    reports: int
    """How many accepted reports were checked."""

    @property
    def violations(self) -> int:
        return len(self.backwards) + len(self.reused) + len(self.audit_backwards)


class FleetReader:
    """What a fleet on ``server`` wrote for ``symbols``, read back from Redis.

    Every read is a fresh round trip; nothing is cached. ``quiet_s`` is the default
    of :meth:`settled`.
    """

    def __init__(self, server: RedisCommands, symbols: Iterable[str], *,
                 quiet_s: float = 2.0) -> None:
        self.server = server
        self.symbols = tuple(symbols)
        self.quiet_s = quiet_s
        self.keys = KeyLayout()

    # -- keys -------------------------------------------------------------------------

    def _mget(self, kind: str) -> list[bytes | None]:
        keys = [getattr(self.keys.symbol(s), kind) for s in self.symbols]
        return self.server.command("MGET", *keys)

    def holders(self) -> dict[str, str | None]:
        """Symbol → lease holder (``None``: no lease), in one round trip."""
        return {s: (v.decode() if v else None)
                for s, v in zip(self.symbols, self._mget("lease"), strict=True)}

    def latest(self) -> dict[str, tuple[str, tuple[int, int]] | None]:
        """Symbol → ``(writer node, token)`` of its latest accepted report (``None``: no
        report key), in one round trip."""
        out: dict[str, tuple[str, tuple[int, int]] | None] = {}
        for symbol, value in zip(self.symbols, self._mget("report"), strict=True):
            if value is None:
                out[symbol] = None
                continue
            writer = json.loads(value)["writer"]
            out[symbol] = (writer["nodeId"], (int(writer["epoch"]), int(writer["writerToken"])))
        return out

    def writers(self) -> dict[str, str | None]:
        """Symbol → writer node of its latest accepted report (``None``: no report key)."""
        return {s: (v[0] if v else None) for s, v in self.latest().items()}

    def member(self, node_id: str) -> bool:
        """The node's membership record exists: it has joined the fleet."""
        return bool(self.server.command("EXISTS", self.keys.node(node_id)))

    def server_ms(self) -> int:
        """The Redis server's clock (ms): the clock of every stream entry id."""
        seconds, micros = self.server.command("TIME")
        return int(seconds) * 1000 + int(micros) // 1000

    # -- streams ----------------------------------------------------------------------

    def audit(self, symbol: str) -> list[Accepted]:
        """Newly accepted tokens of ``symbol`` (its audit stream), oldest first."""
        entries = self.server.command("XRANGE", self.keys.symbol(symbol).audit, "-", "+")
        out = []
        for entry_id, flat in entries:
            data = _fields(flat)
            out.append(Accepted(entry_id, _entry_ms(entry_id), data["node"],
                                int(data["epoch"]), int(data["token"])))
        return out

    def reports(self, symbol: str, *, after: bytes | None = None,
                since_ms: int | None = None) -> list[Accepted]:
        """Accepted reports of ``symbol`` (its report stream), oldest first: all, those
        after the entry id ``after``, or those from server time ``since_ms`` on."""
        start: bytes | str = "-"
        if after:
            start = b"(" + after
        elif since_ms is not None:
            start = str(since_ms)
        entries = self.server.command("XRANGE", self.keys.symbol(symbol).stream, start, "+")
        out = []
        for entry_id, flat in entries:
            writer = json.loads(_fields(flat)["report"])["writer"]
            out.append(Accepted(entry_id, _entry_ms(entry_id), writer["nodeId"],
                                int(writer["epoch"]), int(writer["writerToken"])))
        return out

    def last_report_ids(self) -> dict[str, bytes | None]:
        """Each symbol's newest report stream entry id: a position to read on from
        (``reports(symbol, after=…)``)."""
        out: dict[str, bytes | None] = {}
        for symbol in self.symbols:
            last = self.server.command("XREVRANGE", self.keys.symbol(symbol).stream,
                                       "+", "-", "COUNT", "1")
            out[symbol] = last[0][0] if last else None
        return out

    def takeover(self, symbol: str, victim: str, *, since_ms: int) -> Takeover:
        """From the report stream since server time ``since_ms``: ``victim``'s last
        accepted report of ``symbol`` and the first one accepted from another node
        after it. ``AssertionError`` when either is missing."""
        entries = self.reports(symbol, since_ms=since_ms)
        last = max((i for i, a in enumerate(entries) if a.node == victim), default=None)
        if last is None:
            raise AssertionError(f"no report of {symbol} by {victim} since {since_ms}")
        after = [a for a in entries[last + 1:] if a.node != victim]
        if not after:
            raise AssertionError(f"no report of {symbol} by another node after {victim}'s last")
        return Takeover(symbol, victim, entries[last].ms, after[0].ms, after[0].node)

    # -- what the fleet promises ------------------------------------------------------

    def safety(self) -> SafetyReport:
        """Read every report and audit stream and list each accepted write that breaks
        the lease guarantees: a report whose token is older than one accepted before it,
        a token accepted for two nodes, an audit stream not strictly increasing."""
        backwards: list[tuple[str, Accepted, Accepted]] = []
        reused: list[tuple[str, tuple[int, int], str, str]] = []
        audit_backwards: list[tuple[str, list[tuple[int, int]]]] = []
        total = 0
        for symbol in self.symbols:
            owner_of: dict[tuple[int, int], str] = {}
            newest: Accepted | None = None
            entries = self.reports(symbol)
            total += len(entries)
            for entry in entries:
                if newest is not None and entry.token < newest.token:
                    backwards.append((symbol, newest, entry))
                first = owner_of.setdefault(entry.token, entry.node)
                if first != entry.node:
                    reused.append((symbol, entry.token, first, entry.node))
                if newest is None or entry.token > newest.token:
                    newest = entry
            audit = self.audit(symbol)
            tokens = [a.token for a in audit]
            if tokens != sorted(set(tokens)):
                audit_backwards.append((symbol, tokens))
            for accepted in audit:
                first = owner_of.setdefault(accepted.token, accepted.node)
                if first != accepted.node:
                    reused.append((symbol, accepted.token, first, accepted.node))
        return SafetyReport(backwards, reused, audit_backwards, total)

    def covered(self, nodes: Iterable[str]) -> dict[str, str] | None:
        """Every symbol leased and last reported by one of ``nodes``: symbol → holder
        (``None`` if not yet; a condition for :func:`wait_for`)."""
        nodes = set(nodes)
        held = self.holders()
        if all(h in nodes for h in held.values()) and self.writers() == held:
            return held  # type: ignore[return-value]
        return None

    def taken_over(self, symbols: Iterable[str], victim: str) -> bool:
        """Every one of ``symbols`` has a latest report, and none is ``victim``'s."""
        writers = self.writers()
        return all(writers[s] not in (None, victim) for s in symbols)

    def settled(self, nodes: Iterable[str], *, timeout: float = 60,
                quiet_s: float | None = None) -> dict[str, str]:
        """Wait until every symbol is leased by one of ``nodes``, every node holds some,
        each symbol's latest report is its holder's, and nothing moved for ``quiet_s``
        (default: the reader's); return symbol → holder. ``AssertionError`` after
        ``timeout`` s."""
        nodes = set(nodes)
        quiet = self.quiet_s if quiet_s is None else quiet_s
        since: list[Any] = [None, 0.0]

        def stable() -> dict[str, str] | None:
            held = self.holders()
            if not (set(held.values()) == nodes and self.writers() == held):
                since[0] = None
                return None
            if held != since[0]:
                since[:] = [held, time.monotonic()]
                return None
            return held if time.monotonic() - since[1] >= quiet else None  # type: ignore[return-value]

        return wait_for(stable, timeout, lambda: f"the fleet {sorted(nodes)} to settle "
                        f"(holders now: {self.holders()})")


class Fleet(FleetReader):
    """Real node processes on ``server`` for ``symbols``, their logs in ``directory``.

    The profile (``directory/fleet.toml``) runs the synthetic venue (``seed``), the
    fast cycle every ``fast_period_ms``, coordinator ``redis`` with the ``coordinator``
    options, and sink ``redis`` with its report and audit streams on. Use it as a
    context manager: leaving it kills every node still running.

    ``FileNotFoundError`` when this environment has no ``marketcore`` command (a test
    skips). ``debug``: nodes run with ``--debug``.
    """

    def __init__(self, server: RedisCommands, directory: Path, *,
                 symbols: Iterable[str] = SYMBOLS, coordinator: Mapping[str, Any] = FAST_FLEET,
                 fast_period_ms: int = 250, seed: int = 11, debug: bool = False,
                 quiet_s: float = 2.0) -> None:
        command = marketcore_command()
        if command is None:
            raise FileNotFoundError("no marketcore command in this environment")
        super().__init__(server, symbols, quiet_s=quiet_s)
        self.command = command
        self.directory = directory
        self.coordinator = dict(coordinator)
        self.debug = debug
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}
        """Node → the Redis URL it was started with, when not the server's."""
        self.profile = directory / "fleet.toml"
        options = "".join(f"{key} = {json.dumps(value)}\n"
                          for key, value in self.coordinator.items())
        socket_timeout_ms = self.coordinator.get("socket_timeout_ms", 600)
        self.profile.write_text(
            f"[node]\nsymbols = {json.dumps(list(self.symbols))}\n"
            f'[venue]\nuse = "synthetic"\nseed = {seed}\n'
            f"[pipeline.fast]\nperiod_ms = {fast_period_ms}\n"
            f'[coordinator]\nuse = "redis"\nurl = {json.dumps(server.url)}\n{options}'
            f'[[sink]]\nuse = "redis"\nurl = {json.dumps(server.url)}\n'
            f"socket_timeout_ms = {socket_timeout_ms}\n"
            f"stream = true\nstream_maxlen = {STREAM_MAXLEN}\n"
            f"audit = true\naudit_maxlen = {STREAM_MAXLEN}\n")

    @property
    def ttl_s(self) -> float:
        """The lease TTL (s)."""
        return self.coordinator.get("lease_ttl_ms", 2000) / 1000

    # -- processes ------------------------------------------------------------------

    def start(self, node_id: str, *, url: str | None = None) -> subprocess.Popen[bytes]:
        """Start a node; its output goes to :meth:`log_path`. ``url`` (e.g. a fault
        proxy's) replaces the Redis URL for this node alone, through the environment."""
        env = {**os.environ, "MARKETCORE_NODE__ID": node_id}
        if url is not None:
            env["MARKETCORE_COORDINATOR__URL"] = url
            env["MARKETCORE_SINK__0__URL"] = url
            self.urls[node_id] = url
        argv = [self.command, *(["--debug"] if self.debug else []), "run", str(self.profile)]
        with self.log_path(node_id).open("ab") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env,
                                       preexec_fn=die_with_parent)
        self.processes[node_id] = process
        return process

    def log_path(self, node_id: str) -> Path:
        return self.directory / f"{node_id}.log"

    def log_text(self, node_id: str) -> str:
        """Everything the node printed so far (``""`` before it started)."""
        path = self.log_path(node_id)
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self, node_id: str) -> int:
        return self.processes[node_id].pid

    def signal(self, node_id: str, sig: signal.Signals) -> None:
        """Send ``sig`` to the node's process (e.g. SIGSTOP, SIGCONT)."""
        os.kill(self.processes[node_id].pid, sig)

    def alive(self, node_id: str) -> bool:
        """Started, not stopped through this fleet, and still running."""
        process = self.processes.get(node_id)
        return process is not None and process.poll() is None

    def running(self) -> list[str]:
        """The nodes still running, sorted."""
        return sorted(n for n, p in self.processes.items() if p.poll() is None)

    def kill(self, node_id: str) -> None:
        """SIGKILL the node's process and reap it."""
        process = self.processes.pop(node_id)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def terminate(self, node_id: str, timeout: float = 30) -> int:
        """SIGTERM (a graceful leave); return the exit code. A node still running after
        ``timeout`` s is killed, and ``AssertionError`` shows the end of its log."""
        process = self.processes.pop(node_id)
        os.kill(process.pid, signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            raise AssertionError(f"{node_id} did not stop within {timeout} s of SIGTERM\n"
                                 + self.log_text(node_id)[-2000:]) from None

    def close(self) -> None:
        """Kill every node still running (a paused one is resumed first) and reap it."""
        for process in self.processes.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def tracebacks(self) -> dict[str, str]:
        """Log name → the end of the log, for every ``*.log`` in the fleet's directory
        that shows a Python traceback (a crash or an unhandled error)."""
        found = {}
        for path in self.directory.glob("*.log"):
            text = path.read_text(errors="replace")
            if "Traceback (most recent call last)" in text:
                found[path.stem] = text[-3000:]
        return found


def assert_safe(fleet: Fleet) -> int:
    """``AssertionError`` unless the fleet's streams hold no violation of the lease
    guarantees (:meth:`FleetReader.safety`) and no node's log shows a traceback; returns
    how many accepted reports were checked."""
    report = fleet.safety()
    if report.backwards:
        raise AssertionError(f"accepted reports with an older token than one before them: "
                             f"{report.backwards[:5]}")
    if report.reused:
        raise AssertionError(f"tokens accepted for two nodes: {report.reused[:5]}")
    if report.audit_backwards:
        raise AssertionError(f"audit tokens not strictly increasing: "
                             f"{report.audit_backwards[:2]}")
    tracebacks = fleet.tracebacks()
    if tracebacks:
        raise AssertionError(f"tracebacks in node logs: {tracebacks}")
    return report.reports
