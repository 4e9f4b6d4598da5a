"""Bad input from the operator and from clients: fuzzed profiles and environment
variables, and abuse of a running node's read API.

A profile, however wrong, gets a clear one-line error and exit status 2 — never a
traceback. The read API of a real node process answers junk paths, junk query
strings, methods other than GET, huge headers and hundreds of idle sockets with
4xx answers (or a closed connection), stays within bounded memory and keeps
serving.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import string
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from chaosrun import counts, wait_for
from chaosvenue import free_port, rss_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marketcore.cli import main
from marketcore.testing import stop_processes
from marketcore_coord_redis.testing import die_with_parent, marketcore_command

KEYS = ("node", "venue", "coordinator", "pipeline", "fast", "slow", "sink", "metrics", "state",
        "calculators", "symbols", "id", "use", "period_ms", "url", "lease_ttl_ms", "bind",
        "seed", "password", "streams", "ttl_s", "spread", "depth", "x", "")
SCALARS = (st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False)
           | st.text(max_size=30) | st.booleans())
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
                      max_leaves=12)
TABLES = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6)
ENV_NAMES = st.lists(st.sampled_from(("NODE", "ID", "SYMBOLS", "VENUE", "USE", "COORDINATOR",
                                      "URL", "LEASE_TTL_MS", "SINK", "0", "7", "PIPELINE",
                                      "FAST", "PERIOD_MS", "PASSWORD", "")),
                     min_size=1, max_size=4).map(lambda parts: "MARKETCORE_" + "__".join(parts))
ENVIRON = st.dictionaries(ENV_NAMES, st.text(string.printable, max_size=20), max_size=3)
FUZZED: dict[int, int] = {}
"""Exit statuses of the fuzzed profiles, for the figures."""
VALID = ('[node]\nsymbols = ["BTCUSDT", "ETHUSDT"]\n[venue]\nuse = "synthetic"\n'
         '[pipeline.fast]\nperiod_ms = 250\n')


def _validate(path: Path, environ: dict[str, str], capsys: Any) -> tuple[int, str]:
    """``marketcore validate`` in this process under ``environ``: (status, its output)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("MARKETCORE_")}
    for key in saved:
        del os.environ[key]
    os.environ.update(environ)
    try:
        status = main(["validate", str(path)])
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        for key in [k for k in os.environ if k.startswith("MARKETCORE_")]:
            del os.environ[key]
        os.environ.update(saved)
    captured = capsys.readouterr()
    return status, captured.out + captured.err


@settings(max_examples=counts(60, 1500), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(document=st.one_of(TABLES.map(tomli_w.dumps),
                          st.text(max_size=200),
                          st.text(max_size=60).map(lambda junk: VALID + junk)),
       environ=ENVIRON)
def test_fuzzed_profiles_get_a_clear_error_never_a_traceback(document, environ, tmp_path,
                                                             capsys, chaos_results):
    path = tmp_path / "fuzz.toml"
    path.write_text(document, encoding="utf-8", errors="surrogatepass")
    status, output = _validate(path, environ, capsys)
    assert "Traceback" not in output, output
    assert status in (0, 2), (status, output)
    if status == 2:
        assert "error" in output, output
    FUZZED[status] = FUZZED.get(status, 0) + 1
    chaos_results.record("profile_fuzz", criterion="always a clear error, never a traceback",
                         met=True, profiles=sum(FUZZED.values()), valid=FUZZED.get(0, 0),
                         refused_with_error=FUZZED.get(2, 0))


# ---------------------------------------------------------------------------------------
# The read API of a real node
# ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def api_node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    command = marketcore_command()
    if command is None:
        pytest.skip("no marketcore command in this environment")
    directory = tmp_path_factory.mktemp("read-api")
    port = free_port()
    profile = directory / "node.toml"
    profile.write_text(VALID + f'[[sink]]\nuse = "http"\nbind = "127.0.0.1:{port}"\n')
    with (directory / "node.log").open("wb") as log:
        process = subprocess.Popen([command, "run", str(profile)], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   preexec_fn=die_with_parent)
    try:
        wait_for(lambda: _status(port, "GET", "/get_report?symbol=BTCUSDT") == 200, 90,
                 "the read API serving a report", every=0.2)
        yield process, port, directory
    finally:
        stop_processes(process)


def _status(port: int, method: str, target: str, headers: dict[str, str] | None = None,
            body: bytes | None = None) -> int | None:
    """The answer's status, or None when the server closed the connection instead."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders(body)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    except (TimeoutError, ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
        return None
    except OSError:
        return None
    finally:
        connection.close()


PATH_CHARS = string.ascii_letters + string.digits + "/?&=%.-_~!$'()*+,;:@[]"


def test_read_api_abuse_gets_4xx_and_bounded_memory(api_node, chaos_results):
    process, port, directory = api_node
    baseline = rss_bytes(process.pid)
    statuses: dict[str, set[int | None]] = {}

    sent = [0]

    def note(kind: str, status: int | None) -> None:
        sent[0] += 1
        statuses.setdefault(kind, set()).add(status)

    @settings(max_examples=counts(80, 2000), deadline=None, derandomize=True)
    @given(path=st.text(PATH_CHARS, max_size=80), query=st.text(PATH_CHARS, max_size=120))
    def junk_paths(path: str, query: str) -> None:
        status = _status(port, "GET", "/" + path.lstrip("/") + ("?" + query if query else ""))
        note("junk path", status)
        assert status is None or status < 500, (path, query, status)

    junk_paths()
    for symbol in ("btcusdt", "BTC-USDT", "A" * 5000, "%00", "../../etc/passwd", "", "ETH%20USDT", "BTCUSDT%0d%0aX:1"):
        status = _status(port, "GET", f"/get_report?symbol={symbol}")
        note("bad symbol", status)
        assert status in (400, 404, 414, 431, None), (symbol, status)
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"):
        status = _status(port, method, "/get_report?symbol=BTCUSDT", body=b"{}")
        note("not GET", status)
        assert status in (400, 405, 501, None), (method, status)
    for size in (8_000, 64_000, 1_000_000):
        status = _status(port, "GET", "/get_report?symbol=BTCUSDT", {"X-Junk": "x" * size})
        note("huge header", status)
        assert status in (200, 400, 413, 431, None), (size, status)
    idle = []
    sockets = counts(300, 1000)
    with contextlib.ExitStack() as stack:
        for _ in range(sockets):  # idle sockets that never send a request
            try:
                idle.append(stack.enter_context(socket.create_connection(("127.0.0.1", port),
                                                                         timeout=5)))
            except OSError:
                break
        time.sleep(1.0)
        assert process.poll() is None
        during = _status(port, "GET", "/healthz")
    time.sleep(0.5)
    peak = rss_bytes(process.pid)
    after = _status(port, "GET", "/get_report?symbol=BTCUSDT")
    log = (directory / "node.log").read_text(errors="replace")
    assert process.poll() is None, log[-2000:]
    assert after == 200
    assert "Traceback" not in log, log[-3000:]
    assert peak <= baseline + 50 * 2**20, (baseline, peak)
    chaos_results.record("read_api_abuse", criterion="4xx answers, bounded memory, no crash",
                         met=True, requests=sent[0], idle_sockets=len(idle),
                         healthz_while_idle=during,
                         baseline_rss_mb=round(baseline / 2**20, 1),
                         peak_rss_mb=round(peak / 2**20, 1),
                         statuses=json.loads(json.dumps(
                             {k: sorted(map(str, v)) for k, v in statuses.items()})))
