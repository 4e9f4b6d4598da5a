"""The read API in a fleet, on a real Redis: any node answers for every symbol.

Two ``marketcore run`` processes share six symbols through the redis coordinator and
write through the fenced redis sink; each also runs the ``http`` sink. Asked for a
symbol the *other* node writes, a node answers from Redis — the report's writer is the
other node. ``marketcore report`` with the same profile reads Redis too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from marketcore.testing import free_port, stop_processes, validate_report

MARKETCORE = [sys.executable, "-c", "import sys; from marketcore.cli import main; sys.exit(main())"]
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT"]
NODES = ("reader-a", "reader-b")


def profile_text(url: str, node_id: str, http_port: int) -> str:
    return f"""
[node]
id = "{node_id}"
symbols = {json.dumps(SYMBOLS)}
[venue]
use = "synthetic"
seed = 5
[coordinator]
use = "redis"
url = "{url}"
[[sink]]
use = "redis"
url = "{url}"
[[sink]]
use = "http"
bind = "127.0.0.1:{http_port}"
"""


def get_json(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        return json.loads(answer.read())


@pytest.fixture
def fleet(tmp_path, redis_server) -> Iterator[dict[str, tuple[int, object]]]:
    nodes: dict[str, tuple[int, object]] = {}
    processes = []
    for node_id in NODES:
        port = free_port()
        profile = tmp_path / f"{node_id}.toml"
        profile.write_text(profile_text(redis_server.url, node_id, port))
        processes.append(subprocess.Popen([*MARKETCORE, "run", str(profile), "--json"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          text=True))
        nodes[node_id] = (port, profile)
    yield nodes
    stop_processes(*processes, timeout_s=30)


def owners_seen_by(port: int) -> dict[str, str]:
    try:
        index = get_json(port, "/reports")
    except OSError:
        return {}
    return {entry["symbol"]: entry["owner"] for entry in index["reports"]}


def test_any_node_answers_for_every_symbol_from_redis(fleet):
    (port_a, profile_a), (port_b, _) = fleet["reader-a"], fleet["reader-b"]
    deadline = time.monotonic() + 90  # a liveness bound for a loaded machine, not a figure
    while time.monotonic() < deadline:
        seen_a, seen_b = owners_seen_by(port_a), owners_seen_by(port_b)
        if (set(seen_a) == set(SYMBOLS) and seen_a == seen_b
                and set(seen_a.values()) == set(NODES)):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the fleet never shared the symbols: a sees {seen_a}, b sees {seen_b}")

    others = [symbol for symbol, owner in seen_a.items() if owner == "reader-b"]
    assert others, seen_a
    for symbol in SYMBOLS:
        report = get_json(port_a, f"/get_report?symbol={symbol}")
        validate_report(report)
        assert report["symbol"] == symbol
        assert report["writer"]["nodeId"] in NODES
    # a symbol node b writes, answered by node a: read back from Redis
    assert get_json(port_a, f"/get_report?symbol={others[0]}")["writer"]["nodeId"] == \
        "reader-b"

    # `marketcore report` with a fleet profile reads the redis sink (its first sink)
    shown = subprocess.run([*MARKETCORE, "report", others[0], str(profile_a)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    printed = json.loads(shown.stdout)
    assert printed["symbol"] == others[0]
    assert printed["writer"]["nodeId"] == "reader-b"
