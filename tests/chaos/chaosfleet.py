"""Real ``marketcore run`` node processes sharing symbols through one real redis-server.

Each node is its own process (synthetic venue, coordinator ``redis``, sink
``redis`` with the report stream and the audit stream on) with its own
``MARKETCORE_NODE__ID``; a node may reach Redis through a :class:`FaultProxy`
(its URL goes in through the environment, so one profile serves the whole
fleet). Every process is signalled and stopped by its pid, never by name.

What the fleet did is read back from Redis itself — lease keys (who owns what
now), audit streams (every newly accepted token) and report streams (every
accepted report, stamped by the server's clock in its entry id) — so the safety
checks do not trust the nodes' own account.
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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
from chaosrun import counts, wait_for

__all__ = ["FLEET_OPTIONS", "NODES", "SYMBOLS", "Accepted", "Fleet", "SafetyReport", "assert_safe",
           "die_with_parent",
           "marketcore_command", "start_settled"]

FLEET_OPTIONS = {"lease_ttl_ms": counts(1200, 2000), "socket_timeout_ms": counts(400, 600),
                 "heartbeat_ms": 300, "node_ttl_ms": 3000, "watch_ms": 100, "min_hold_ms": 500,
                 "acquire_retry_ms": 100, "rebalance_ms": 2000}
"""The full run uses the spec's default lease TTL (2 s); the reduced run 1.2 s, so the
scenarios that wait in multiples of the TTL are shorter. Membership ticks are faster
than the defaults so a test fleet settles in a few seconds; the socket timeout stays
≤ TTL / 3 as required."""


SYMBOLS = tuple(f"C{i:02d}USDT" for i in range(12))
NODES = ("node-a", "node-b", "node-c")


def assert_safe(fleet: Fleet) -> int:
    """The fleet's streams hold no violation; returns how many reports were checked."""
    report = fleet.safety()
    assert report.backwards == [], report.backwards[:5]
    assert report.reused == [], report.reused[:5]
    assert report.audit_backwards == [], report.audit_backwards[:2]
    assert fleet.tracebacks() == {}, fleet.tracebacks()
    return report.reports


def start_settled(fleet: Fleet, nodes=NODES, urls=None) -> dict[str, str]:
    for node_id in nodes:
        fleet.start(node_id, url=(urls or {}).get(node_id))
    return fleet.settled(nodes, timeout=90)


def die_with_parent() -> None:
    """In a child before exec (Linux): get SIGKILL when the test process dies, so a run
    killed from outside leaves no node behind. Elsewhere it does nothing."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def marketcore_command() -> str | None:
    """The ``marketcore`` console script of this environment (None when absent)."""
    beside = Path(sys.executable).with_name("marketcore")
    return str(beside) if beside.is_file() else shutil.which("marketcore")


def _fields(flat: list[Any]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in zip(flat[::2], flat[1::2], strict=True)}


@attrs.frozen
class Accepted:
    """One accepted write read back from a stream: server time (ms), writer, token."""

    entry_id: bytes
    ms: int
    node: str
    epoch: int
    counter: int

    @property
    def token(self) -> tuple[int, int]:
        return (self.epoch, self.counter)


@attrs.frozen
class SafetyReport:
    """Violations of the lease guarantees found in the streams (all must be empty)."""

    backwards: list[tuple[str, Accepted, Accepted]]
    """An accepted report whose token is older than one accepted before it: a stale,
    late or second owner's write got through."""
    reused: list[tuple[str, tuple[int, int], str, str]]
    """One token accepted for two different nodes."""
    audit_backwards: list[tuple[str, list[tuple[int, int]]]]
    """An audit stream whose newly accepted tokens are not strictly increasing."""
    reports: int

    @property
    def violations(self) -> int:
        return len(self.backwards) + len(self.reused) + len(self.audit_backwards)


class Fleet:
    """Node processes on ``server`` for ``symbols``; see the module docstring."""

    def __init__(self, server: Any, directory: Path, *, symbols: Iterable[str],
                 coordinator: Mapping[str, int] = FLEET_OPTIONS, fast_period_ms: int = 250,
                 seed: int = 11) -> None:
        command = marketcore_command()
        if command is None:
            raise FileNotFoundError("no marketcore command in this environment")
        self.command = command
        self.server = server
        self.directory = directory
        self.symbols = tuple(symbols)
        self.coordinator = dict(coordinator)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}
        self.profile = directory / "fleet.toml"
        options = "\n".join(f"{key} = {value}" for key, value in self.coordinator.items())
        self.profile.write_text(
            f"[node]\nsymbols = {json.dumps(list(self.symbols))}\n"
            f'[venue]\nuse = "synthetic"\nseed = {seed}\n'
            f"[pipeline.fast]\nperiod_ms = {fast_period_ms}\n"
            f'[coordinator]\nuse = "redis"\nurl = "{server.url}"\n{options}\n'
            f'[[sink]]\nuse = "redis"\nurl = "{server.url}"\n'
            f"socket_timeout_ms = {self.coordinator.get('socket_timeout_ms', 600)}\n"
            "stream = true\nstream_maxlen = 100000\naudit = true\naudit_maxlen = 100000\n")

    @property
    def ttl_s(self) -> float:
        return self.coordinator.get("lease_ttl_ms", 2000) / 1000

    # -- processes ------------------------------------------------------------------

    def start(self, node_id: str, *, url: str | None = None) -> subprocess.Popen[bytes]:
        """Start a node; ``url`` (e.g. a proxy's) replaces the Redis URL for it alone."""
        env = {**os.environ, "MARKETCORE_NODE__ID": node_id}
        if url is not None:
            env["MARKETCORE_COORDINATOR__URL"] = url
            env["MARKETCORE_SINK__0__URL"] = url
            self.urls[node_id] = url
        with self.log_path(node_id).open("ab") as log:
            debug = ["--debug"] if os.environ.get("MARKETCORE_CHAOS_DEBUG") else []
            process = subprocess.Popen([self.command, *debug, "run", str(self.profile)],
                                       stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=env, preexec_fn=die_with_parent)
        self.processes[node_id] = process
        return process

    def log_path(self, node_id: str) -> Path:
        return self.directory / f"{node_id}.log"

    def log_text(self, node_id: str) -> str:
        path = self.log_path(node_id)
        return path.read_text(errors="replace") if path.exists() else ""

    def pid(self, node_id: str) -> int:
        return self.processes[node_id].pid

    def signal(self, node_id: str, sig: signal.Signals) -> None:
        os.kill(self.processes[node_id].pid, sig)

    def alive(self, node_id: str) -> bool:
        process = self.processes.get(node_id)
        return process is not None and process.poll() is None

    def kill(self, node_id: str) -> None:
        """SIGKILL the node's process and reap it."""
        process = self.processes.pop(node_id)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def terminate(self, node_id: str, timeout: float = 30) -> int:
        """SIGTERM (a graceful leave); return the exit code."""
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
        """Kill whatever is still running (a paused process is resumed first)."""
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

    def running(self) -> list[str]:
        return sorted(n for n, p in self.processes.items() if p.poll() is None)

    def tracebacks(self) -> dict[str, str]:
        """Nodes whose log shows a Python traceback (a crash or an unhandled error)."""
        found = {}
        for path in self.directory.glob("*.log"):
            text = path.read_text(errors="replace")
            if "Traceback (most recent call last)" in text:
                found[path.stem] = text[-3000:]
        return found

    # -- reading Redis --------------------------------------------------------------

    def _mget(self, kind: str) -> list[bytes | None]:
        return self.server.command("MGET", *[f"marketcore:{kind}:{{{s}}}" for s in self.symbols])

    def holders(self) -> dict[str, str | None]:
        """Symbol → lease holder (None: no lease), in one round trip."""
        return {s: (v.decode() if v else None)
                for s, v in zip(self.symbols, self._mget("lease"), strict=True)}

    def latest(self) -> dict[str, tuple[str, tuple[int, int]] | None]:
        """Symbol → (writer, token) of its latest accepted report (None: no report key)."""
        out: dict[str, tuple[str, tuple[int, int]] | None] = {}
        for symbol, value in zip(self.symbols, self._mget("report"), strict=True):
            if value is None:
                out[symbol] = None
                continue
            writer = json.loads(value)["writer"]
            out[symbol] = (writer["nodeId"], (int(writer["epoch"]), int(writer["writerToken"])))
        return out

    def writers(self) -> dict[str, str | None]:
        return {s: (v[0] if v else None) for s, v in self.latest().items()}

    def member(self, node_id: str) -> bool:
        """The node's membership record exists: it has joined the fleet."""
        return bool(self.server.command("EXISTS", f"marketcore:node:{node_id}"))

    def audit(self, symbol: str) -> list[Accepted]:
        """Newly accepted tokens of ``symbol``, oldest first."""
        entries = self.server.command("XRANGE", f"marketcore:audit:{{{symbol}}}", "-", "+")
        out = []
        for entry_id, flat in entries:
            data = _fields(flat)
            out.append(Accepted(entry_id, int(entry_id.split(b"-")[0]), data["node"],
                                int(data["epoch"]), int(data["token"])))
        return out

    def reports(self, symbol: str, since_ms: int | None = None) -> list[Accepted]:
        """Accepted reports of ``symbol`` (the report stream), oldest first."""
        start = "-" if since_ms is None else str(since_ms)
        entries = self.server.command("XRANGE", f"marketcore:stream:{{{symbol}}}", start, "+")
        out = []
        for entry_id, flat in entries:
            writer = json.loads(_fields(flat)["report"])["writer"]
            out.append(Accepted(entry_id, int(entry_id.split(b"-")[0]), writer["nodeId"],
                                int(writer["epoch"]), int(writer["writerToken"])))
        return out

    def server_ms(self) -> int:
        seconds, micros = self.server.command("TIME")
        return int(seconds) * 1000 + int(micros) // 1000

    # -- what the fleet promises ----------------------------------------------------

    def safety(self) -> SafetyReport:
        """Read every stream and list each accepted write that breaks the guarantees."""
        backwards: list[tuple[str, Accepted, Accepted]] = []
        reused: list[tuple[str, tuple[int, int], str, str]] = []
        audit_backwards: list[tuple[str, list[tuple[int, int]]]] = []
        total = 0
        for symbol in self.symbols:
            owner_of: dict[tuple[int, int], str] = {}
            previous: Accepted | None = None
            entries = self.reports(symbol)
            total += len(entries)
            for entry in entries:
                if previous is not None and entry.token < previous.token:
                    backwards.append((symbol, previous, entry))
                first = owner_of.setdefault(entry.token, entry.node)
                if first != entry.node:
                    reused.append((symbol, entry.token, first, entry.node))
                previous = entry if previous is None or entry.token > previous.token \
                    else previous
            tokens = [a.token for a in self.audit(symbol)]
            if tokens != sorted(set(tokens)):
                audit_backwards.append((symbol, tokens))
            for accepted in self.audit(symbol):
                first = owner_of.setdefault(accepted.token, accepted.node)
                if first != accepted.node:
                    reused.append((symbol, accepted.token, first, accepted.node))
        return SafetyReport(backwards, reused, audit_backwards, total)

    def settled(self, nodes: Iterable[str], *, timeout: float = 60,
                quiet_s: float = counts(1.0, 2.0)) -> dict[str, str]:
        """Wait until every symbol is leased by one of ``nodes``, every node holds some,
        each symbol's latest report is its holder's, and nothing moved for ``quiet_s``."""
        nodes = set(nodes)
        since: list[Any] = [None, 0.0]

        def stable() -> dict[str, str] | None:
            held = self.holders()
            if not (set(held.values()) == nodes and self.writers() == held):
                since[0] = None
                return None
            if held != since[0]:
                since[:] = [held, time.monotonic()]
                return None
            return held if time.monotonic() - since[1] >= quiet_s else None  # type: ignore[return-value]

        return wait_for(stable, timeout, lambda: f"the fleet {sorted(nodes)} to settle "
                        f"(holders now: {self.holders()})")

    def covered(self, nodes: Iterable[str]) -> dict[str, str] | None:
        """Every symbol leased and last reported by one of ``nodes`` (None if not yet)."""
        nodes = set(nodes)
        held = self.holders()
        if all(h in nodes for h in held.values()) and self.writers() == held:
            return held  # type: ignore[return-value]
        return None
