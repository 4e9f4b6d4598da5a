"""Structured logs of a real node: JSON or text, rate-limited per kind, never a secret.

A throw-away plugin is installed as a real distribution; its startup and shutdown
hooks log a flood of one kind, secrets in every shape a library might print them,
and timing fields. ``marketcore run`` then runs in a subprocess, and its stderr is
read back as an operator (or a log pipeline) would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from marketcore.profile import ProfileError, parse_profile

MARKETCORE = [sys.executable, "-c", "import sys; from marketcore.cli import main; sys.exit(main())"]

SECRETS = {
    "url": "hunter2-url",
    "sentinel": "s3ntinel-pass",
    "tls": "tls-pass-9",
    "dict_password": "dict-pass-1",
    "api_key": "key-abc-123",
    "token": "tok-xyz-789",
    "assigned": "plain-pass-2",
    "quoted": "quoted-secret-3",
    "exception": "exc-pass-4",
    "environment": "env-secret-5",
}

CHATTY = '''
import logging
import os
from marketcore import hookimpl

log = logging.getLogger("mc_chatty")


@hookimpl
def marketcore_startup(node):
    for i in range(50):
        log.warning("frame %d of BTCUSDT was garbage", i,
                    extra={"kind": "garbage", "symbol": "BTCUSDT"})
    log.warning("frame of ETHUSDT was crossed", extra={"kind": "crossed", "symbol": "ETHUSDT"})
    for i in range(12):  # a kind that never comes back: its count is reported at shutdown
        log.warning("absurd price in frame %d", i, extra={"kind": "absurd"})
    log.error("cannot reach %s", "redis://alice:hunter2-url@redis.example:6379/0")
    log.error("sentinel at %s", "redis+sentinel://:s3ntinel-pass@sentinel.example:26379/m")
    log.warning("options %s", {"url": "rediss://bob:tls-pass-9@r.example:6380",
                               "password": "dict-pass-1", "api_key": "key-abc-123",
                               "token": "tok-xyz-789", "lease_ttl_ms": 2000})
    log.warning("connecting with password=plain-pass-2 and secret='quoted-secret-3'")
    log.warning("a header carried %s", os.environ["MC_TEST_API_TOKEN"])
    log.info("timed", extra={"elapsed_ms": 12.5, "cycle": "fast", "component": "chatty"})
    try:
        raise ConnectionError("AUTH failed for redis://:exc-pass-4@h.example:1")
    except ConnectionError:
        log.exception("the connection failed")


@hookimpl
def marketcore_shutdown(node):
    # the run lasted longer than the interval: this one passes and carries the count
    log.warning("frame %d of BTCUSDT was garbage", 50,
                extra={"kind": "garbage", "symbol": "BTCUSDT"})
'''


def install(root: Path) -> Path:
    """``root`` laid out as an installed distribution ``chatty-logs`` (module mc_chatty)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mc_chatty.py").write_text(CHATTY)
    info = root / "chatty_logs-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: chatty-logs\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[marketcore]\nchatty-logs = mc_chatty\n")
    (info / "RECORD").write_text("")
    return root


PROFILE = """
[node]
id = "log-node"
symbols = ["BTCUSDT", "ETHUSDT"]
[venue]
use = "synthetic"
[[sink]]
use = "jsonl"
path = "{out}"
[log]
format = "json"
level = "info"
burst = 5
interval_s = 2.0
"""


def run_logged(tmp: Path, *flags: str, after: tuple[str, ...] = ()) -> str:
    profile = tmp / "profile.toml"
    profile.write_text(PROFILE.format(out=tmp / "reports.jsonl"))
    env = {**os.environ, "PYTHONPATH": str(install(tmp / "plugin")),
           "MARKETCORE_LOAD_PLUGINS": "chatty-logs",
           "MC_TEST_API_TOKEN": SECRETS["environment"]}
    result = subprocess.run([*MARKETCORE, *flags, "run", str(profile), "--duration", "3", *after],
                            capture_output=True, text=True, timeout=120, env=env, check=False)
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def json_logs(tmp_path_factory) -> str:
    return run_logged(tmp_path_factory.mktemp("json"))


@pytest.fixture(scope="module")
def text_logs(tmp_path_factory) -> str:
    return run_logged(tmp_path_factory.mktemp("text"), "--log-format", "text",
                      after=("--log-level", "warning"))


def lines_of(stderr: str) -> list[dict]:
    return [json.loads(line) for line in stderr.splitlines()]


def test_every_line_is_a_json_object_with_the_context_fields(json_logs):
    lines = lines_of(json_logs)
    assert lines
    for line in lines:
        assert {"ts", "level", "logger", "component", "symbol", "node_id", "message"} <= set(line)
        assert line["ts"].endswith("Z")
        assert line["node_id"] == "log-node", line
    started = [line for line in lines if line["message"].startswith("node log-node started")]
    assert len(started) == 1 and started[0]["component"] == "node"


def test_extra_fields_and_symbols_are_kept(json_logs):
    lines = lines_of(json_logs)
    (timed,) = [line for line in lines if line["message"] == "timed"]
    assert timed["component"] == "chatty" and timed["elapsed_ms"] == 12.5
    assert timed["cycle"] == "fast" and timed["level"] == "info"
    (crossed,) = [line for line in lines if "crossed" in line["message"]]
    assert crossed["symbol"] == "ETHUSDT" and crossed["kind"] == "crossed"
    assert crossed["component"] == "mc_chatty"  # from the logger's name when not given
    (failed,) = [line for line in lines if line["message"] == "the connection failed"]
    assert "ConnectionError" in failed["exc"] and failed["level"] == "error"
    stopped = [line for line in lines if "stopped after" in line["message"]]
    assert stopped and stopped[0]["uptime_s"] > 0 and stopped[0]["reports_published"] > 0


def test_a_flood_of_one_kind_is_cut_to_the_burst_and_counted(json_logs):
    lines = lines_of(json_logs)
    flood = [line for line in lines if line.get("kind") == "garbage"]
    # 5 of the first 50 pass; the 51st, after the interval, carries the other 45
    assert [line["message"] for line in flood] == [
        f"frame {i} of BTCUSDT was garbage" for i in (0, 1, 2, 3, 4, 50)]
    assert [line.get("suppressed") for line in flood] == [None] * 5 + [45]
    assert all(line["symbol"] == "BTCUSDT" for line in flood)
    # another kind of the same logger has its own budget
    assert any(line.get("kind") == "crossed" for line in lines)


def test_a_kind_that_never_comes_back_has_its_count_reported_at_shutdown(json_logs):
    lines = lines_of(json_logs)
    absurd = [line for line in lines if line.get("kind") == "absurd"]
    assert len(absurd) == 5
    (summary,) = [line for line in lines if "were suppressed" in line["message"]]
    assert summary["suppressed"] == 7 and "absurd price in frame" in summary["message"]
    assert summary["logger"] == "mc_chatty"
    assert lines.index(summary) > lines.index(absurd[-1])


@pytest.mark.parametrize("fixture", ["json_logs", "text_logs"])
def test_no_secret_is_ever_written(fixture, request):
    logs = request.getfixturevalue(fixture)
    for name, secret in SECRETS.items():
        assert secret not in logs, name
    assert "redis://alice:***@redis.example:6379/0" in logs
    assert "redis+sentinel://:***@sentinel.example" in logs
    assert "rediss://bob:***@r.example:6380" in logs
    assert "password=***" in logs and "secret='***'" in logs
    assert "redis://:***@h.example:1" in logs  # inside the traceback
    assert "a header carried ***" in logs


def test_secret_named_options_are_redacted_and_others_kept(json_logs):
    (options,) = [line["message"] for line in lines_of(json_logs)
                  if line["message"].startswith("options ")]
    for key in ("password", "api_key", "token"):
        assert f"'{key}': '***'" in options
    assert "'lease_ttl_ms': 2000" in options


def test_text_format_and_level_from_the_command_line_win_over_the_profile(text_logs):
    lines = text_logs.splitlines()
    assert lines and not any(line.startswith("{") for line in lines)
    assert not any(" INFO " in line for line in lines)  # --log-level warning
    flood = [line for line in lines if "of BTCUSDT was garbage" in line]
    assert len(flood) == 6 and "(+45 like it suppressed)" in flood[-1]
    assert all("[log-node BTCUSDT]: frame" in line for line in flood)


@pytest.mark.parametrize(("table", "problem"), [
    ('format = "xml"', "log.format: expected one of 'text', 'json', found 'xml'"),
    ('level = "loud"', "log.level: expected one of 'debug', 'info', 'warning', 'error', "
                       "'critical', found 'loud'"),
    ("burst = 0", "log.burst: expected an integer from 1 to 10000, found 0"),
    ("interval_s = 0", "log.interval_s: expected a number > 0, found 0.0"),
])
def test_a_bad_log_section_is_a_precise_profile_error(table, problem):
    text = textwrap.dedent(f"""
        [node]
        symbols = ["BTCUSDT"]
        [venue]
        use = "synthetic"
        [log]
        {table}
    """)
    with pytest.raises(ProfileError) as error:
        parse_profile(text, "p.toml", environ={})
    assert str(error.value) == f"p.toml: {problem}"


def test_the_log_section_comes_from_the_environment_too():
    text = '[node]\nsymbols = ["BTCUSDT"]\n[venue]\nuse = "synthetic"\n'
    profile = parse_profile(text, "p.toml", environ={"MARKETCORE_LOG__FORMAT": "json",
                                                     "MARKETCORE_LOG__LEVEL": "INFO"})
    assert (profile.log.format, profile.log.level) == ("json", "info")
