"""Observability of real nodes on a real Redis: no secret in the logs, fleet metrics.

Nodes run as ``marketcore run`` subprocesses, as in production; Redis is a real
``redis-server`` (with ``requirepass`` where a password is under test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from marketcore.testing import RedisServer, RedisUnavailable, free_port, stop_processes
from prometheus_client.parser import text_string_to_metric_families

MARKETCORE = [sys.executable, "-c", "import sys; from marketcore.cli import main; sys.exit(main())"]
PASSWORD = "Pw-0f-the-fleet-7c1e"
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT"]


def fleet_profile(url: str, node_id: str, metrics_port: int | None = None) -> str:
    metrics = f'[metrics]\nbind = "127.0.0.1:{metrics_port}"\n' if metrics_port else ""
    return f"""
[node]
id = "{node_id}"
symbols = {json.dumps(SYMBOLS)}
[venue]
use = "synthetic"
seed = 11
[coordinator]
use = "redis"
url = "{url}"
[[sink]]
use = "redis"
url = "{url}"
{metrics}"""


@pytest.fixture
def locked_redis() -> Iterator[RedisServer]:
    try:
        server = RedisServer(password=PASSWORD).start()
    except RedisUnavailable as error:
        pytest.skip(str(error))
    yield server
    server.close()


def run_with_password(tmp_path: Path, server: RedisServer, password: str) -> str:
    """A node whose coordinator gets ``password`` from the environment and whose sink
    gets a URL embedding it, at log level debug; returns everything it printed."""
    url = f"redis://127.0.0.1:{server.port}/0"
    profile = tmp_path / "fleet.toml"
    profile.write_text(fleet_profile(url, "locked-node"))
    env = {**os.environ, "MARKETCORE_COORDINATOR__PASSWORD": password,
           "MARKETCORE_SINK__0__URL": f"redis://:{password}@127.0.0.1:{server.port}/0"}
    result = subprocess.run(
        [*MARKETCORE, "--log-format", "json", "--log-level", "debug", "run", str(profile),
         "--duration", "3", "--json"],
        capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout + result.stderr


def log_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith('{"ts"')]


def test_the_redis_password_never_appears_in_logs_or_reports(tmp_path, locked_redis):
    output = run_with_password(tmp_path, locked_redis, PASSWORD)
    assert PASSWORD not in output
    # the run was real: the password worked and reports reached the locked Redis
    keys = {key.decode() for key in locked_redis.command("KEYS", "marketcore:report:*")}
    assert keys == {f"marketcore:report:{{{symbol}}}" for symbol in SYMBOLS}
    # and where it would have been written, the log shows it redacted
    lines = log_lines(output)
    (started,) = [line for line in lines if "started" in line["message"]
                  and line["logger"] == "marketcore.node"]
    assert started["coordinator_options"]["password"] == "***"
    assert started["sink_options"]["redis"]["url"] == \
        f"redis://:***@127.0.0.1:{locked_redis.port}/0"
    assert all(line["node_id"] == "locked-node" for line in lines if line["logger"] != "asyncio")


def test_a_wrong_password_is_refused_and_not_logged_either(tmp_path, locked_redis):
    wrong = "Wrong-pass-of-9d4a"
    output = run_with_password(tmp_path, locked_redis, wrong)
    assert wrong not in output and PASSWORD not in output
    refused = [line for line in log_lines(output) if line["level"] == "warning"
               and line["component"] == "coordinator"]
    assert refused, "the authentication failure was not logged"
    assert locked_redis.command("KEYS", "marketcore:report:*") == []


# -- the metrics of a fleet ----------------------------------------------------------------


def scrape(port: int) -> dict[str, dict[tuple, float]]:
    """``{sample name: {labels (sorted, without node): value}}`` of one node."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "node"))
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


def total(found, name: str) -> float:
    return sum(found.get(name, {}).values())


@pytest.fixture
def redis_fleet(tmp_path, redis_server) -> Iterator[list[tuple[subprocess.Popen, int]]]:
    nodes = []
    for node_id in ("fleet-a", "fleet-b"):
        port = free_port()
        profile = tmp_path / f"{node_id}.toml"
        profile.write_text(fleet_profile(redis_server.url, node_id, port))
        process = subprocess.Popen([*MARKETCORE, "run", str(profile), "--json"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        nodes.append((process, port))
    yield nodes
    stop_processes(*(process for process, _port in nodes), timeout_s=30)


def test_fleet_metrics_add_up_across_nodes(redis_fleet):
    """Two nodes share the symbols: owned and assigned add up to the universe, both see
    two members, every symbol's lease was acquired, and nothing conflicted."""
    deadline = time.monotonic() + 90  # a liveness bound for a loaded machine, not a figure
    scrapes: list[dict] = []
    while time.monotonic() < deadline:
        try:
            scrapes = [scrape(port) for _process, port in redis_fleet]
        except OSError:
            scrapes = []
        if scrapes and all(total(s, "marketcore_fleet_members") == 2 for s in scrapes) \
                and sum(total(s, "marketcore_symbols_owned") for s in scrapes) == len(SYMBOLS) \
                and all(total(s, "marketcore_symbols_owned") > 0 for s in scrapes) \
                and all(total(s, "marketcore_reports_published_total") > 0 for s in scrapes) \
                and all(len(s.get("marketcore_data_age_seconds", {}))
                        == total(s, "marketcore_symbols_owned") for s in scrapes):
            # settled, and every owned symbol has had data (a symbol acquired a moment
            # ago has no data age until its first event)
            break
        assert all(p.poll() is None for p, _ in redis_fleet), "a node exited"
        time.sleep(0.5)
    else:
        pytest.fail(f"the fleet never settled: {scrapes}")
    assert sum(total(s, "marketcore_symbols_assigned") for s in scrapes) == len(SYMBOLS)
    assert sum(total(s, "marketcore_lease_acquisitions_total") for s in scrapes) >= len(SYMBOLS)
    assert all(total(s, "marketcore_lease_conflicts_total") == 0 for s in scrapes)
    assert any(total(s, "marketcore_hrw_rebalances_total") > 0 for s in scrapes)
    for s in scrapes:
        assert s["marketcore_node_info"] == {(("coordinator", "redis"), ("mode", "live"),
                                              ("venue", "synthetic")): 1.0}
        assert all(0 <= age < 60 for age in s["marketcore_data_age_seconds"].values())
        stats = {dict(labels)["stat"] for labels in s["marketcore_component_stat"]
                 if dict(labels)["component"] == "coordinator"}
        assert {"acquisitions", "members", "symbols_held"} <= stats
        publish_count = s["marketcore_sink_publish_seconds_count"]
        assert publish_count[(("sink", "redis"),)] > 0
