"""``marketcore report`` and ``marketcore top`` against a real running node: through its
``http`` sink, its ``jsonl`` file, and a plugin sink that reads reports back."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from marketcore.testing import free_port, stop_processes

MARKETCORE = [sys.executable, "-c", "import sys; from marketcore.cli import main; sys.exit(main())"]
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MARKETCORE, *args], capture_output=True, text=True, timeout=60,
                          check=False, env=env)


def wait_until(check, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """One node for the module: an http sink and a jsonl file; profiles to read each."""
    tmp = tmp_path_factory.mktemp("read")
    port = free_port()
    jsonl = tmp / "reports.jsonl"
    head = f'[node]\nid = "node-r"\nsymbols = {json.dumps(SYMBOLS)}\n[venue]\nuse = "synthetic"\n'
    profiles = {
        "run": head + f'[[sink]]\nuse = "http"\nbind = "127.0.0.1:{port}"\n'
                      f'[[sink]]\nuse = "jsonl"\npath = "{jsonl}"\n',
        "http": head + f'[[sink]]\nuse = "stdout"\n[[sink]]\nuse = "http"\n'
                       f'bind = "0.0.0.0:{port}"\n',
        "jsonl": head + f'[[sink]]\nuse = "jsonl"\npath = "{jsonl}"\n',
        "stdout": head + '[[sink]]\nuse = "stdout"\n',
    }
    paths = {}
    for name, text in profiles.items():
        paths[name] = tmp / f"{name}.toml"
        paths[name].write_text(text)
    log = (tmp / "node.log").open("w")
    process = subprocess.Popen([*MARKETCORE, "run", str(paths["run"]), "--duration", "300"],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: process.poll() is not None or answers(
            f"http://127.0.0.1:{port}/get_report?symbol=ETHUSDT"), "the node's first reports")
        assert process.poll() is None, (tmp / "node.log").read_text()
        wait_until(lambda: jsonl.exists() and jsonl.stat().st_size > 0, "the jsonl file")
        yield paths
    finally:
        stop_processes(process, sig=signal.SIGINT)
        log.close()


@pytest.mark.parametrize("via", ["http", "jsonl"])
def test_report_prints_the_latest_report_pretty(node, via):
    result = cli("report", "btcusdt", str(node[via]))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["symbol"] == "BTCUSDT" and report["writer"]["nodeId"] == "node-r"
    assert result.stdout.startswith("{\n  ") and len(result.stdout.splitlines()) > 10
    assert report["updatedAt"] > 0


def test_report_compact_prints_the_stored_line(node):
    result = cli("report", "ETHUSDT", str(node["http"]), "--compact")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert json.loads(result.stdout)["symbol"] == "ETHUSDT"


@pytest.mark.parametrize("via", ["http", "jsonl"])
def test_report_of_an_unknown_symbol_is_one_line_and_a_hint(node, via):
    result = cli("report", "DOGEUSDT", str(node[via]))
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: no report for DOGEUSDT in ")
    assert lines[1] == "hint: the profile's symbols: BTCUSDT, ETHUSDT"
    assert "Traceback" not in result.stderr


def test_report_with_no_readable_sink_says_which_to_add(node):
    result = cli("report", "BTCUSDT", str(node["stdout"]))
    assert result.returncode == 1
    assert "no sink of this profile can be read back (sinks: stdout)" in result.stderr
    assert 'hint: add [[sink]] use = "http"' in result.stderr


def test_report_when_no_node_is_running(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text(f'[node]\nsymbols = ["BTCUSDT"]\n[venue]\nuse = "synthetic"\n'
                       f'[[sink]]\nuse = "http"\nbind = "127.0.0.1:{free_port()}"\n')
    result = cli("report", "BTCUSDT", str(profile))
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot reach the read API at http://127.0.0.1:")
    assert "hint: is a node running with this profile?" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_rejects_a_malformed_symbol_through_the_api(node):
    result = cli("report", "BTC/USDT", str(node["http"]))
    assert result.returncode == 1
    assert "the read API answered 400: malformed symbol" in result.stderr


@pytest.mark.parametrize("via", ["http", "jsonl"])
def test_top_prints_a_table_of_every_symbol(node, via):
    result = cli("top", str(node[via]), "--iterations", "2", "--interval", "0.5")
    assert result.returncode == 0, result.stderr
    frames = [f for f in result.stdout.split("\n\n") if f.strip()]
    assert len(frames) == 2
    last = frames[-1].splitlines()
    assert last[0].startswith("marketcore top ") and "2 symbols on 1 node(s)" in last[0]
    assert last[1].split()[:3] == ["SYMBOL", "OWNER", "STATUS"]
    rows = [line.split() for line in last[2:]]
    assert [r[0] for r in rows] == SYMBOLS
    assert all(r[1] == "node-r" and r[2] in ("ok", "degraded", "down") for r in rows)
    assert "\x1b[" not in result.stdout  # no terminal codes into a pipe


def read_until(fd: int, needle: bytes, timeout_s: float = 30.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout_s
    while needle not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {needle!r} in {seen[-500:]!r}")
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


@pytest.mark.parametrize("quit_with", ["q", "ctrl-c"])
def test_top_on_a_terminal_redraws_and_quits_cleanly(node, quit_with):
    leader, follower = pty.openpty()
    process = subprocess.Popen([*MARKETCORE, "top", str(node["http"]), "--interval", "0.3"],
                               stdin=follower, stdout=follower, stderr=follower,
                               start_new_session=True)
    os.close(follower)
    try:
        screen = read_until(leader, b"ETHUSDT")
        assert b"\x1b[?1049h" in screen  # alternate screen
        screen += read_until(leader, b"\x1b[H\x1b[2J", 10)  # and it redraws
        if quit_with == "q":
            os.write(leader, b"q")
        else:
            process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
        rest = read_until(leader, b"\x1b[?1049l", 10)  # the terminal is given back
        assert b"Traceback" not in screen + rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
