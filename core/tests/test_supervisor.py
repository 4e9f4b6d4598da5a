"""``marketcore run --processes N``: one node as N child processes, through the command
line (symbols dealt out, ports shifted, signals, start-up failures, restarts)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from marketcore.testing import free_port, stop_processes

MARKETCORE = [sys.executable, "-m", "marketcore"]
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"]
STARTUP_GRACE_S = 5.0
"""How long after its start a child's failure stops the node instead (docs/operations.md)."""


def profile_text(*, http: int, metrics: int, required: bool = False,
                 symbols: list[str] = SYMBOLS) -> str:
    return f"""
[node]
symbols = {json.dumps(symbols)}
[venue]
use = "synthetic"
seed = 5
[coordinator]
use = "local"
[[sink]]
use = "stdout"
[[sink]]
use = "http"
bind = "127.0.0.1:{http}"
required = {str(required).lower()}
[metrics]
bind = "127.0.0.1:{metrics}"
"""


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read()
    except OSError:
        return None


def _wait(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux ``/proc``)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def _start_two(profile: Path, *extra: str, stdout: int = subprocess.PIPE,
               stderr: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """``marketcore run PROFILE --processes 2 EXTRA…`` in a clean environment."""
    return subprocess.Popen([*MARKETCORE, "run", str(profile), "--processes", "2", *extra],
                            stdout=stdout, stderr=stderr, env=_clean_env())


def _two_children(process: subprocess.Popen[bytes]) -> list[int]:
    """The supervisor's two children, once both run (``AssertionError`` after 30 s)."""
    return _wait(lambda: len(_children(process.pid)) == 2 and _children(process.pid), 30,
                 "two children")


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie still listed counts as exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def _clean_env() -> dict[str, str]:
    """This environment without MARKETCORE_ overrides a developer may have set."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MARKETCORE_")}


def test_the_command_line_refuses_a_split_it_cannot_make(tmp_path):
    profile = tmp_path / "one.toml"
    profile.write_text(profile_text(http=0, metrics=0, symbols=["BTCUSDT"]))
    result = subprocess.run([*MARKETCORE, "run", str(profile), "--processes", "2"],
                            capture_output=True, text=True, timeout=60, env=_clean_env())
    assert result.returncode == 2
    assert "needs at least 2 symbols" in result.stderr
    high = tmp_path / "high.toml"
    high.write_text(profile_text(http=65535, metrics=0))
    result = subprocess.run([*MARKETCORE, "run", str(high), "--processes", "2"],
                            capture_output=True, text=True, timeout=60, env=_clean_env())
    assert result.returncode == 2
    assert "127.0.0.1:65535 + 1 is past port 65535" in result.stderr
    zero = subprocess.run([*MARKETCORE, "run", "--processes", "0"],
                          capture_output=True, text=True, timeout=60, env=_clean_env())
    assert zero.returncode == 2 and "expected a whole number ≥ 1 or 'auto'" in zero.stderr
    cores = len(os.sched_getaffinity(0))
    auto = subprocess.run([*MARKETCORE, "run", str(profile), "--processes", "auto",
                           "--duration", "1"],
                          capture_output=True, text=True, timeout=60, env=_clean_env())
    if cores > 1:  # one symbol cannot be dealt out to every core
        assert auto.returncode == 2
        assert f"--processes {cores} with the local coordinator" in auto.stderr
    else:  # one core: one process, the node runs as usual
        assert auto.returncode == 0, auto.stderr


# ----------------------------------------------------------------- real processes


def test_two_processes_serve_every_symbol_once_each_with_its_own_ports(tmp_path):
    http, metrics = free_port(run=2), free_port(run=2)
    profile = tmp_path / "p.toml"
    profile.write_text(profile_text(http=http, metrics=metrics))
    process = _start_two(profile, "--duration", "12")
    try:
        # while it runs: each child answers on its own read API and metrics port
        for i, symbol in ((0, "BTCUSDT"), (1, "ETHUSDT")):
            body = _wait(lambda i=i, symbol=symbol: _get(
                f"http://127.0.0.1:{http + i}/get_report?symbol={symbol}"), 30,
                f"child {i}'s read API")
            assert json.loads(body)["symbol"] == symbol
            text = _wait(lambda i=i: _get(f"http://127.0.0.1:{metrics + i}/metrics"), 30,
                         f"child {i}'s metrics")
            assert b"marketcore_reports_published_total" in text
        out, err = process.communicate(timeout=60)
    finally:
        stop_processes(process)
    assert process.returncode == 0, err.decode()
    owners: dict[str, set[str]] = {}
    for line in out.decode().splitlines():
        report = json.loads(line)
        owners.setdefault(report["symbol"], set()).add(report["writer"]["nodeId"])
    assert set(owners) == set(SYMBOLS)
    assert all(len(nodes) == 1 for nodes in owners.values()), owners
    by_node: dict[str, set[str]] = {}
    for symbol, (node,) in owners.items():
        by_node.setdefault(node.rsplit("-", 1)[1], set()).add(symbol)
    assert by_node == {"p0": {"BTCUSDT", "SOLUSDT", "XRPUSDT"}, "p1": {"ETHUSDT", "BNBUSDT"}}
    assert b"2 node processes" in err and b"Traceback" not in err


def test_sigterm_stops_every_child_and_the_supervisor_exits_zero(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text(profile_text(http=0, metrics=0))
    process = _start_two(profile)
    try:
        process.stdout.readline()  # a report: a child is up
        children = _two_children(process)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    finally:
        stop_processes(process)
    assert process.returncode == 0, err.decode()
    assert all(_gone(pid) for pid in children)
    assert b"Traceback" not in err


def test_a_child_failing_at_startup_stops_the_whole_node(tmp_path):
    http = free_port(run=2)
    profile = tmp_path / "p.toml"
    profile.write_text(profile_text(http=http, metrics=0, required=True))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", http + 1))  # child 1's read API port
        taken.listen()
        result = subprocess.run([*MARKETCORE, "run", str(profile), "--processes", "2"],
                                capture_output=True, text=True, timeout=90,
                                env=_clean_env())
    assert result.returncode != 0
    assert "-p1 failed" in result.stderr and "stopping every process" in result.stderr
    assert "restarting" not in result.stderr


def test_a_child_killed_after_startup_is_restarted_while_the_other_runs_on(tmp_path):
    http = free_port(run=2)
    profile = tmp_path / "p.toml"
    profile.write_text(profile_text(http=http, metrics=0))
    process = _start_two(profile, stdout=subprocess.DEVNULL)
    try:
        children = _two_children(process)
        _wait(lambda: _get(f"http://127.0.0.1:{http}/get_report?symbol=BTCUSDT"), 30,
              "child 0's read API")
        time.sleep(STARTUP_GRACE_S + 0.5)  # a failure after the start-up grace is restarted
        victim = next(pid for pid in children
                      if b"-p0\0" in Path(f"/proc/{pid}/environ").read_bytes())
        os.kill(victim, signal.SIGKILL)
        _wait(lambda: _gone(victim), 10, "the killed child to exit")
        replaced = _wait(lambda: [p for p in _children(process.pid) if p not in children],
                         30, "a new child")
        body = _wait(lambda: _get(f"http://127.0.0.1:{http}/get_report?symbol=BTCUSDT"), 30,
                     "the restarted child's read API")
        assert json.loads(body)["writer"]["nodeId"].endswith("-p0")
        survivor = next(pid for pid in children if pid != victim)
        assert not _gone(survivor)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    finally:
        stop_processes(process)
    assert b"restarting" in err and b"SIGKILL" in err
    assert all(_gone(pid) for pid in (*children, *replaced))
    # the restarted child stopped cleanly on SIGTERM, so the node exits cleanly too
    assert process.returncode == 0, err.decode()


def test_children_stop_when_the_supervisor_is_killed(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text(profile_text(http=0, metrics=0))
    process = _start_two(profile, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children: list[int] = []
    try:
        children = _two_children(process)
        process.kill()
        process.wait(timeout=10)
        _wait(lambda: all(_gone(pid) for pid in children), 30,
              "the children to stop after their supervisor was killed")
        assert len(children) == 2 and all(_gone(pid) for pid in children)
    finally:
        stop_processes(process)
        for pid in children:
            if not _gone(pid):  # the check failed: leave no orphan behind
                os.kill(pid, signal.SIGKILL)


def test_each_child_appends_to_a_jsonl_file_of_its_own(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text(profile_text(http=0, metrics=0)
                       + f'[[sink]]\nuse = "jsonl"\npath = "{tmp_path / "out" / "reports.jsonl"}"\n')
    result = subprocess.run([*MARKETCORE, "run", str(profile), "--processes", "2",
                             "--duration", "4"],
                            capture_output=True, text=True, timeout=90, env=_clean_env())
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "out" / "reports.jsonl").exists()
    for i, symbols in ((0, {"BTCUSDT", "SOLUSDT", "XRPUSDT"}), (1, {"ETHUSDT", "BNBUSDT"})):
        lines = (tmp_path / "out" / f"reports-p{i}.jsonl").read_text().splitlines()
        reports = [json.loads(line) for line in lines]
        assert {r["symbol"] for r in reports} == symbols
        assert {r["writer"]["nodeId"].rsplit("-", 1)[1] for r in reports} == {f"p{i}"}
