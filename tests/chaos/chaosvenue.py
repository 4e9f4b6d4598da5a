"""A ``marketcore binance-sim`` process and a ``marketcore run`` node reading from it.

The simulator replays the bundled real recording (cloned to several symbols,
looping) over real sockets and takes faults over its own HTTP control endpoint
(``/_sim/fault?kind=…``), so a test in another process can drop, gap or garble
the feed while the node runs. The node publishes to a ``jsonl`` file (every
report, to check afterwards) and serves ``/healthz`` (its venue's counters) on
the read API. Both processes are stopped by their pids.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chaosrun import wait_for
from marketcore.testing import free_port, stop_processes
from marketcore_coord_redis.testing import die_with_parent, marketcore_command

__all__ = ["RECORDING", "VenueRig", "free_port", "rss_bytes"]

RECORDING = Path(__file__).resolve().parents[2] / "examples" / "data" / \
    "binance-spot-btcusdt-20240808.gz"


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmRSS for pid {pid}")


def _get(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.loads(answer.read())


class VenueRig:
    """One simulator process and one node process; see the module docstring."""

    def __init__(self, directory: Path, *, clone: int = 4, speed: float = 1.0,
                 venue_options: str = "") -> None:
        command = marketcore_command()
        if command is None:
            raise FileNotFoundError("no marketcore command in this environment")
        if not RECORDING.is_file():
            raise FileNotFoundError(f"the bundled recording {RECORDING.name} is absent")
        self.command = command
        self.directory = directory
        self.clone = clone
        self.speed = speed
        self.venue_options = venue_options
        self.sim_port = free_port()
        self.http_port = free_port()
        self.reports_path = directory / "reports.jsonl"
        self.sim: subprocess.Popen[bytes] | None = None
        self.node: subprocess.Popen[bytes] | None = None
        self.symbols: list[str] = []

    # -- processes ------------------------------------------------------------------

    def _spawn(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with (self.directory / log_name).open("ab") as log:
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=dict(os.environ),
                                    preexec_fn=die_with_parent)

    def start_sim(self) -> None:
        self.sim = self._spawn([self.command, "binance-sim", str(RECORDING), "--clone",
                                str(self.clone), "--loop", "--speed", f"{self.speed:g}",
                                "--port", str(self.sim_port)], "sim.log")
        self.symbols = wait_for(self._symbols, 90, lambda: "the simulator to serve "
                                + self.log("sim.log")[-500:], every=0.2)

    def _symbols(self) -> list[str] | None:
        if self.sim is not None and self.sim.poll() is not None:
            raise AssertionError("the simulator exited: " + self.log("sim.log")[-1000:])
        try:
            return _get(self.sim_url("/_sim/symbols"), timeout=1.0)
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def start_node(self) -> None:
        profile = self.directory / "node.toml"
        profile.write_text(
            f"[node]\nid = \"venue-node\"\nsymbols = {json.dumps(self.symbols)}\n"
            f'[venue]\nuse = "binance"\nws_endpoints = ["ws://127.0.0.1:{self.sim_port}"]\n'
            f'rest_endpoints = ["http://127.0.0.1:{self.sim_port}"]\n{self.venue_options}\n'
            "[pipeline.fast]\nperiod_ms = 250\n"
            f'[[sink]]\nuse = "jsonl"\npath = "{self.reports_path}"\n'
            f'[[sink]]\nuse = "http"\nbind = "127.0.0.1:{self.http_port}"\n')
        self.node = self._spawn([self.command, "run", str(profile)], "node.log")
        wait_for(self._all_ok, 120, lambda: f"every symbol ok (health: {self._health_or()})",
                 every=0.5)

    def __enter__(self) -> VenueRig:
        try:
            self.start_sim()
            self.start_node()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        stop_processes(self.node, self.sim)

    def log(self, name: str) -> str:
        path = self.directory / name
        return path.read_text(errors="replace") if path.exists() else ""

    def node_alive(self) -> bool:
        return self.node is not None and self.node.poll() is None

    # -- talking to them ------------------------------------------------------------

    def sim_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.sim_port}{path}"

    def fault(self, kind: str, symbol: str | None = None, **extra: str) -> None:
        query = f"kind={kind}" + (f"&symbol={symbol}" if symbol else "") + \
            "".join(f"&{k}={v}" for k, v in extra.items())
        answer = _get(self.sim_url(f"/_sim/fault?{query}"))
        assert answer.get("ok"), answer

    def sim_stats(self) -> dict[str, Any]:
        return _get(self.sim_url("/_sim/stats"))

    def health(self) -> dict[str, Any]:
        """``/healthz`` (200 or 503 both carry the body)."""
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        try:
            return _get(url)
        except urllib.error.HTTPError as error:
            return json.loads(error.read())

    def _health_or(self) -> Any:
        try:
            return self.health()
        except (OSError, ValueError) as error:
            return repr(error)

    def venue_stats(self) -> dict[str, float]:
        return self.health()["venue"]["stats"]

    def _all_ok(self) -> bool:
        if self.node is not None and self.node.poll() is not None:
            raise AssertionError("the node exited: " + self.log("node.log")[-2000:])
        try:
            latest = self.latest()
        except (OSError, ValueError):
            return False
        return len(latest) == len(self.symbols) and all(
            r["ingestion"]["status"] == "ok" for r in latest.values())

    def all_ok(self) -> bool:
        return self._all_ok()

    # -- what the node published ----------------------------------------------------

    def reports(self, start: int = 0) -> Iterator[dict[str, Any]]:
        """Every published report from byte offset ``start`` of the jsonl file, in order."""
        if not self.reports_path.exists():
            return
        with self.reports_path.open("rb") as stream:
            if start > 0:  # start at a line's beginning: skip the rest of a partial one
                stream.seek(start - 1)
                if stream.read(1) != b"\n":
                    stream.readline()
            for line in stream:
                if line.endswith(b"\n"):
                    yield json.loads(line)

    def offset(self) -> int:
        return self.reports_path.stat().st_size if self.reports_path.exists() else 0

    def latest(self, start: int = 0) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for report in self.reports(max(start, self.offset() - 400_000)):
            out[report["symbol"]] = report
        return out
