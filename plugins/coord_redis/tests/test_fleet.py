"""A fleet of real ``marketcore run`` processes on one real redis-server.

Each node is its own process (synthetic venue, coordinator ``redis``, sink
``redis`` with the report and audit streams on, its own ``MARKETCORE_NODE__ID``),
and every process is stopped by its pid. What the fleet promises is read back
from Redis itself: the lease keys (who owns what), the audit streams (every
newly accepted token, in order) and the report streams (every accepted report,
stamped by the server's clock in its entry id).

:class:`Fleet` and the stream readers are also used by
``benchmarks/bench_failover.py``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
from marketcore_coord_redis import assign

SYMBOLS = tuple(f"F{i:02d}USDT" for i in range(15))
LOAD_FACTOR = 1.25  # the coordinator's default

FAST_FLEET = {"lease_ttl_ms": 1200, "socket_timeout_ms": 400, "heartbeat_ms": 300,
              "node_ttl_ms": 3000, "watch_ms": 100, "min_hold_ms": 500,
              "acquire_retry_ms": 100, "rebalance_ms": 2000}
"""Coordinator options that let a test fleet settle in a few seconds."""

T = TypeVar("T")


def marketcore_command() -> str | None:
    """The ``marketcore`` console script of this environment (None when absent)."""
    beside = Path(sys.executable).with_name("marketcore")
    return str(beside) if beside.is_file() else shutil.which("marketcore")


def wait_for(condition: Callable[[], T], timeout: float, message: str,
             every: float = 0.05) -> T:
    """Poll ``condition`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
        time.sleep(every)


def _fields(flat: list[Any]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in zip(flat[::2], flat[1::2], strict=True)}


def _entry_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


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


class Fleet:
    """Real node processes sharing ``symbols`` through one redis-server.

    ``start`` launches ``marketcore [--debug] run profile.toml`` with the node id in
    the environment; ``signal``/``kill``/``terminate`` act on that process's pid
    only; ``close`` kills whatever is still running.
    """

    def __init__(self, server: Any, directory: Path, *, symbols: Iterable[str] = SYMBOLS,
                 coordinator: Mapping[str, int] = FAST_FLEET, fast_period_ms: int = 250,
                 debug: bool = False) -> None:
        command = marketcore_command()
        if command is None:
            raise FileNotFoundError("no marketcore command in this environment")
        self.command = command
        self.server = server
        self.directory = directory
        self.symbols = tuple(symbols)
        self.coordinator = dict(coordinator)
        self.debug = debug
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.profile = directory / "fleet.toml"
        options = "\n".join(f"{key} = {value}" for key, value in self.coordinator.items())
        self.profile.write_text(textwrap.dedent(f"""\
            [node]
            symbols = {json.dumps(list(self.symbols))}
            [venue]
            use = "synthetic"
            seed = 11
            [pipeline.fast]
            period_ms = {fast_period_ms}
            [coordinator]
            use = "redis"
            url = "{server.url}"
            """) + options + textwrap.dedent(f"""
            [[sink]]
            use = "redis"
            url = "{server.url}"
            socket_timeout_ms = {self.coordinator.get("socket_timeout_ms", 600)}
            stream = true
            stream_maxlen = 100000
            audit = true
            """))

    @property
    def ttl_s(self) -> float:
        return self.coordinator.get("lease_ttl_ms", 2000) / 1000

    # -- processes ------------------------------------------------------------------

    def start(self, node_id: str) -> subprocess.Popen[bytes]:
        argv = [self.command, *(["--debug"] if self.debug else []), "run", str(self.profile)]
        with self.log_path(node_id).open("ab") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                       env={**os.environ, "MARKETCORE_NODE__ID": node_id})
        self.processes[node_id] = process
        return process

    def log_path(self, node_id: str) -> Path:
        return self.directory / f"{node_id}.log"

    def log_text(self, node_id: str) -> str:
        path = self.log_path(node_id)
        return path.read_text(errors="replace") if path.exists() else ""

    def signal(self, node_id: str, sig: signal.Signals) -> None:
        os.kill(self.processes[node_id].pid, sig)

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
        for process in self.processes.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)  # a paused process dies only when running
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def running(self) -> list[str]:
        return sorted(n for n, p in self.processes.items() if p.poll() is None)

    # -- reading Redis --------------------------------------------------------------

    def holders(self) -> dict[str, str | None]:
        """Symbol → lease holder (None: no lease), in one round trip."""
        keys = [f"marketcore:lease:{{{s}}}" for s in self.symbols]
        values = self.server.command("MGET", *keys)
        return {s: (v.decode() if v else None) for s, v in zip(self.symbols, values, strict=True)}

    def writers(self) -> dict[str, str | None]:
        """Symbol → writer node of its latest accepted report (None: no report key)."""
        keys = [f"marketcore:report:{{{s}}}" for s in self.symbols]
        values = self.server.command("MGET", *keys)
        return {s: (json.loads(v)["writer"]["nodeId"] if v else None)
                for s, v in zip(self.symbols, values, strict=True)}

    def audit(self, symbol: str) -> list[Accepted]:
        """Newly accepted tokens of ``symbol``, oldest first."""
        entries = self.server.command("XRANGE", f"marketcore:audit:{{{symbol}}}", "-", "+")
        out = []
        for entry_id, flat in entries:
            data = _fields(flat)
            out.append(Accepted(entry_id, _entry_ms(entry_id), data["node"],
                                int(data["epoch"]), int(data["token"])))
        return out

    def reports(self, symbol: str, after: bytes | None = None,
                since_ms: int | None = None) -> list[Accepted]:
        """Accepted reports of ``symbol`` (the report stream), oldest first: all, those
        after the entry id ``after``, or those from server time ``since_ms`` on."""
        start: bytes | str = "-"
        if after:
            start = b"(" + after
        elif since_ms is not None:
            start = str(since_ms)
        entries = self.server.command("XRANGE", f"marketcore:stream:{{{symbol}}}", start, "+")
        out = []
        for entry_id, flat in entries:
            writer = json.loads(_fields(flat)["report"])["writer"]
            out.append(Accepted(entry_id, _entry_ms(entry_id), writer["nodeId"],
                                int(writer["epoch"]), int(writer["writerToken"])))
        return out

    def last_report_ids(self) -> dict[str, bytes | None]:
        """Each symbol's newest report stream entry id (a position to read on from)."""
        out: dict[str, bytes | None] = {}
        for symbol in self.symbols:
            last = self.server.command("XREVRANGE", f"marketcore:stream:{{{symbol}}}",
                                       "+", "-", "COUNT", "1")
            out[symbol] = last[0][0] if last else None
        return out

    def server_ms(self) -> int:
        seconds, micros = self.server.command("TIME")
        return int(seconds) * 1000 + int(micros) // 1000

    # -- waiting --------------------------------------------------------------------

    def settled(self, nodes: Iterable[str], *, timeout: float = 60,
                quiet_s: float = 2.0) -> dict[str, str]:
        """Wait until every symbol is leased by one of ``nodes``, every node holds some,
        each symbol's latest report is its holder's, and nothing moved for ``quiet_s``."""
        nodes = set(nodes)
        since: list[Any] = [None, 0.0]

        def stable() -> dict[str, str] | None:
            held = self.holders()
            ok = (set(held.values()) == nodes and self.writers() == held)
            if not ok:
                since[0] = None
                return None
            if held != since[0]:
                since[:] = [held, time.monotonic()]
                return None
            return held if time.monotonic() - since[1] >= quiet_s else None  # type: ignore[return-value]

        return wait_for(stable, timeout, f"the fleet {sorted(nodes)} to settle "
                        f"(holders now: {self.holders()})")


def bound(symbols: int, nodes: int, factor: float = LOAD_FACTOR) -> int:
    return math.ceil(factor * symbols / nodes)


def tokens_never_go_back(fleet: Fleet) -> None:
    for symbol in fleet.symbols:
        tokens = [a.token for a in fleet.audit(symbol)]
        assert tokens == sorted(set(tokens)), (symbol, tokens)


def refusals(log: str) -> int:
    return log.count("refused: another node holds its lease")


# -------------------------------------------------------------------------------------
# Tests
# -------------------------------------------------------------------------------------

@pytest.fixture
def fleet(redis_server, tmp_path) -> Any:
    try:
        with Fleet(redis_server, tmp_path, debug=True) as running_fleet:
            yield running_fleet
    except FileNotFoundError as error:
        pytest.skip(str(error))


def test_three_nodes_share_fifteen_symbols_and_a_fourth_takes_only_what_moves(fleet):
    first = ("node-a", "node-b", "node-c")
    for node_id in first:
        fleet.start(node_id)
    before = fleet.settled(first)
    assert set(before) == set(fleet.symbols) and None not in before.values()
    loads = {n: sum(1 for h in before.values() if h == n) for n in first}
    assert max(loads.values()) <= bound(15, 3) == 7, loads
    marks = {s: (fleet.audit(s) or [None])[-1] for s in fleet.symbols}

    fleet.start("node-d")
    seen: dict[str, list[str]] = {s: [h] for s, h in before.items()}

    def record_then_check() -> dict[str, str] | None:
        for symbol, holder in fleet.holders().items():
            if holder is not None and holder != seen[symbol][-1]:
                seen[symbol].append(holder)
        return None

    deadline = time.monotonic() + 60
    after: dict[str, str] | None = None
    since = (None, 0.0)
    while after is None:  # sample holders all along, to catch a symbol moving twice
        record_then_check()
        held = fleet.holders()
        if "node-d" in held.values() and None not in held.values() \
                and fleet.writers() == held:
            if held != since[0]:
                since = (held, time.monotonic())
            elif time.monotonic() - since[1] >= 2.5:
                after = held
        else:
            since = (None, 0.0)
        assert time.monotonic() < deadline, f"no settled 4-node fleet: {held}"
        time.sleep(0.05)

    moved = {s for s in fleet.symbols if after[s] != before[s]}
    assert moved, "the fourth node took nothing"
    assert len(moved) <= math.ceil(1.2 * 15 / 4) == 5, moved
    # The fleet follows the assignment function exactly (every node computes the same).
    assert after == assign(fleet.symbols, (*first, "node-d"), before).as_dict()
    assert {after[s] for s in moved} == {"node-d"}, moved  # every move goes to the joiner
    for symbol, holders in seen.items():  # every symbol moved at most once
        assert holders == ([before[symbol], after[symbol]] if symbol in moved
                           else [before[symbol]]), (symbol, holders)
    loads = {n: sum(1 for h in after.values() if h == n) for n in (*first, "node-d")}
    assert max(loads.values()) <= bound(15, 4), loads
    for symbol in fleet.symbols:  # new tokens since the join: only on moved ones, by their owner
        new = [a for a in fleet.audit(symbol) if marks[symbol] is None
               or a.entry_id > marks[symbol].entry_id]
        assert [a.node for a in new] == ([after[symbol]] if symbol in moved else []), \
            (symbol, new)
    tokens_never_go_back(fleet)
    for node_id in ("node-a", "node-b", "node-c", "node-d"):
        assert fleet.terminate(node_id) == 0, fleet.log_text(node_id)[-2000:]


def test_a_join_moves_symbols_only_to_the_joiner():
    """Acceptance, on the fleet's universe: when a 4th node joins, every move goes to it."""
    first = ("node-a", "node-b", "node-c")
    before = assign(SYMBOLS, first).as_dict()
    before = assign(SYMBOLS, first, before).as_dict()  # settled: owners are sticky
    after = assign(SYMBOLS, (*first, "node-d"), before).as_dict()
    moved = {s: (before[s], after[s]) for s in SYMBOLS if after[s] != before[s]}
    assert moved and all(new == "node-d" for _, new in moved.values()), moved
    assert len(moved) <= math.ceil(1.2 * len(SYMBOLS) / 4)


def test_a_paused_owner_is_fenced_when_it_wakes(fleet):
    nodes = ("node-a", "node-b", "node-c")
    for node_id in nodes:
        fleet.start(node_id)
    before = fleet.settled(nodes)
    victim = "node-a"
    theirs = sorted(s for s, h in before.items() if h == victim)
    assert theirs
    old_tokens = {s: fleet.audit(s)[-1].token for s in theirs}
    assert all(fleet.audit(s)[-1].node == victim for s in theirs)
    refused_before = refusals(fleet.log_text(victim))

    fleet.signal(victim, signal.SIGSTOP)
    paused_at = time.monotonic()
    wait_for(lambda: all(w not in (None, victim) for s, w in fleet.writers().items()
                         if s in theirs), 60, "the paused node's symbols taken over")
    time.sleep(max(0.0, 2 * fleet.ttl_s + 0.5 - (time.monotonic() - paused_at)))
    marks = fleet.last_report_ids()
    fleet.signal(victim, signal.SIGCONT)

    # Awake, the node still believes it owns its symbols and writes them with its old
    # tokens: the fencing script refuses each one, and the node drops them.
    wait_for(lambda: refusals(fleet.log_text(victim)) > refused_before, 20,
             "the woken node's writes refused by the fencing script")
    time.sleep(3 * fleet.ttl_s)  # let it run on: rejoin, maybe win symbols back
    refused = refusals(fleet.log_text(victim)) - refused_before
    for symbol in theirs:
        late = [a for a in fleet.reports(symbol, marks[symbol]) if a.node == victim
                and a.token <= old_tokens[symbol]]
        assert late == [], (symbol, late)
    tokens_never_go_back(fleet)
    assert 1 <= refused <= len(theirs), refused  # at most one per symbol it believed in
    for node_id in nodes:
        assert fleet.terminate(node_id) == 0, fleet.log_text(node_id)[-2000:]


def test_the_fleet_recovers_by_itself_after_redis_restarts_empty(fleet):
    nodes = ("node-a", "node-b", "node-c")
    for node_id in nodes:
        fleet.start(node_id)
    fleet.settled(nodes)
    before = {s: fleet.audit(s) for s in fleet.symbols}
    newest_epoch = max(a.epoch for entries in before.values() for a in entries)
    old_run = fleet.server.run_id()

    fleet.server.restart()  # SIGKILL, no persistence: every key is gone
    assert fleet.server.run_id() != old_run
    assert fleet.holders() == dict.fromkeys(fleet.symbols)
    after = fleet.settled(nodes, timeout=60)  # no human: every symbol leased and published again
    assert None not in after.values()
    for symbol in fleet.symbols:
        audit = fleet.audit(symbol)
        assert audit, symbol
        assert all(a.epoch > newest_epoch for a in audit), (symbol, newest_epoch, audit)
        reports = fleet.reports(symbol)
        assert reports and all(a.epoch > newest_epoch for a in reports), symbol
    tokens_never_go_back(fleet)
    for node_id in nodes:
        assert fleet.terminate(node_id) == 0, fleet.log_text(node_id)[-2000:]


def test_killed_owners_are_taken_over_trial_after_trial(redis_server, tmp_path):
    """The benchmark's trial loop, reduced: every symbol of a killed owner gets a new one."""
    bench_dir = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench_dir))
    try:
        import bench_failover
    finally:
        sys.path.remove(str(bench_dir))
    try:
        fleet = Fleet(redis_server, tmp_path, coordinator=FAST_FLEET)
    except FileNotFoundError as error:
        pytest.skip(str(error))
    with fleet:
        trials = bench_failover.run_trials(fleet, kills=3, terms=1)
    assert [t.kind for t in trials] == ["kill", "kill", "kill", "term"]
    for trial in trials:
        assert trial.gaps_ms, trial
        assert set(trial.gaps_ms) == set(trial.symbols)
        assert all(owner != trial.victim for owner in trial.new_owners.values()), trial
