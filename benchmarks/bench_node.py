"""Node capacity: how many Binance symbols one node process serves at a 250 ms fast cycle.

One command writes ``node.json`` and ``node.md`` (see ``--help``)::

    python benchmarks/bench_node.py [--symbols 25,100,300,1000] [--measure 40]
                                    [--pyspy 20] [--out benchmarks/results]

For each symbol count, with nothing shared between the points:

* a real ``redis-server`` (:class:`marketcore.testing.RedisServer`, no persistence);
* the project's Binance simulator in its own process (``marketcore binance-sim``),
  cloning the repository's real BTCUSDT recording
  (``examples/data/binance-spot-btcusdt-20240808.gz``) into N symbols at the recorded
  rate (``--speed 1 --loop``): depth diffs every 100 ms, trades and the 24 h ticker,
  every clone at the recording's own rates;
* one node process (``_node_worker.py``, i.e. :func:`marketcore.testing.run_node` with
  a measuring probe sink): the ``binance`` venue pointed at the simulator (snapshots of
  100 levels, weight 5 each, so N snapshots fit one minute's REST budget), the ``redis``
  coordinator and the fenced ``redis`` sink on that server, and SPEC §4's pipelines
  (fast 250 ms: spread, depth, flow, health; slow 2000 ms: volume_profile, walls,
  vacuums, anomalies), or with ``--calculators installed`` every installed calculator
  in its default cycle.

Once every symbol reports ``ok`` the node settles for ``--settle`` s, then the window of
``--measure`` s is measured:

* fast-cycle p50/p99 (tick to every sink done), skipped fast and slow ticks;
* data age of the reports at their tick (``data_age_ms``) and the **added data age**:
  each report's ``newest event time of the cycle - its own event time + the cycle's
  duration``. Every clone replays the same recorded events at the same instants, so a
  node that kept up would hold the same latest event for every symbol at a tick: the
  spread behind the freshest symbol is what the node's own backlog added, and the
  cycle's duration is the time from the tick until the report is in Redis. The
  freshest symbol's own age (p95) is reported too: a node lagging on *every* symbol
  would raise it above the low-count rows;
* the node's CPU (cores busy: CPU seconds over wall seconds), RSS, reports per second
  and mean report size; Redis' commands and bytes per second in the window (``INFO``)
  and its CPU; the simulator's CPU.

``--pyspy S`` samples the node with py-spy for S seconds of the window at the largest
symbol count (or those of ``--pyspy-at N,M``; during its sync if it never syncs; py-spy on PATH or
next to the interpreter) and tabulates where the time goes. The machine's load average
is recorded with every point: the node shares a small machine with the simulator and
Redis (and, on a shared host, with other work).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _common import (
    REPO_ROOT,
    find_pyspy,
    machine,
    machine_line,
    markdown_table,
    read_pyspy,
    summarize_pyspy,
    write_results,
)

sys.path.insert(0, str(REPO_ROOT / "core" / "src"))
from _node_worker import percentile
from marketcore.testing import RedisServer, free_port, stop_processes

RECORDING = REPO_ROOT / "examples" / "data" / "binance-spot-btcusdt-20240808.gz"
WORKER = Path(__file__).resolve().parent / "_node_worker.py"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def clone_names(count: int) -> list[str]:
    """The simulator's names for ``count`` clones of BTCUSDT (``BTC0001USDT`` …)."""
    width = max(4, len(str(count)))
    return [f"BTC{k:0{width}d}USDT" for k in range(1, count + 1)]


SPEC_CALCULATORS = {
    "fast": ["spread", "depth", "flow", "health"],
    "slow": ["volume_profile", "walls", "vacuums", "anomalies"],
}
"""The pipelines of SPEC §4's profile: the default calculators of the node benchmark.
``--calculators installed`` lists none instead, i.e. every installed calculator (in this
workspace that adds ``anomaly_tracker``, which observes the book at every fast cycle,
and the example plugin ``realized_vol``)."""


def _calculator_lines(cycle: str, which: str) -> str:
    if which == "installed":
        return ""
    return f"calculators = {json.dumps(SPEC_CALCULATORS[cycle])}\n"


def profile_text(symbols: list[str], sim_port: int, redis_url: str,
                 calculators: str = "spec") -> str:
    return f"""
[node]
id = "bench-node"
symbols = {json.dumps(symbols)}

[venue]
use = "binance"
market = "spot"
ws_endpoints = ["ws://127.0.0.1:{sim_port}"]
rest_endpoints = ["http://127.0.0.1:{sim_port}"]
snapshot_limit = 100
snapshot_weight_per_minute = 6000
snapshot_concurrency = 8
snapshot_jitter_s = 0.02

[coordinator]
use = "redis"
url = "{redis_url}"

[pipeline.fast]
period_ms = 250
{_calculator_lines("fast", calculators)}
[pipeline.slow]
period_ms = 2000
{_calculator_lines("slow", calculators)}
[[sink]]
use = "redis"
url = "{redis_url}"

[[sink]]
use = "bench-probe"
"""


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far, from ``/proc``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def redis_info(server: RedisServer) -> dict[str, float]:
    """The ``INFO`` counters the table uses."""
    raw = server.command("INFO", "all")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    wanted = ("total_commands_processed", "total_net_input_bytes", "total_net_output_bytes",
              "used_memory", "instantaneous_ops_per_sec")
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            found[key] = float(value)
    return found


def wait_for_file(path: Path, process: subprocess.Popen[Any], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if process.poll() is not None:
            return path.exists()
        time.sleep(0.2)
    return False


PHASES = (
    ("fast cycle (reports built, calculators, encoded, published)", "_run_live.<locals>.fast_tick"),
    ("  report JSON encoding", "encode_report"),
    ("slow cycle", "Node.slow_cycle_sliced"),
    ("calculators, both cycles", "Pipeline.run"),
    ("ingestion: WebSocket frames read and parsed", "FeedConnection._read"),
    ("  frame decoding (msgspec, checks)", "FrameDecoder.frame"),
    ("  events into the venue and the node (sync, books, trades)", "Feed.dispatch"),
    ("REST snapshots", "RestScheduler._worker"),
    ("coordinator: leases renewed and acquired", "_Run._leases_loop"),
    ("waiting for I/O (event loop idle)", "EpollSelector.select"),
)
"""Functions whose *total* share says which part of the node the time went to."""


def pyspy_phases(raw_path: Path) -> list[tuple[str, float]]:
    """``(phase, % of samples)`` for :data:`PHASES` (samples include idle time)."""
    counts: collections.Counter[str] = collections.Counter()
    samples = 0
    for stack, n in read_pyspy(raw_path):
        samples += n
        names = {frame.partition(" (")[0] for frame in stack}
        for label, function in PHASES:
            if function in names:
                counts[label] += n
    return [(label, 100 * counts[label] / samples if samples else 0.0) for label, _ in PHASES]


def run_point(count: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One symbol count: Redis, simulator, node; the node's figures plus what was seen
    from outside (Redis counters, CPU of the simulator and Redis)."""
    symbols = clone_names(count)
    point_dir = workdir / f"n{count}"
    point_dir.mkdir()
    load_before = os.getloadavg()[0]
    sim_port = free_port()
    entry = "from marketcore.cli import main; raise SystemExit(main())"
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(RedisServer())
        sim_log = stack.enter_context(open(point_dir / "sim.log", "wb"))
        node_out = stack.enter_context(open(point_dir / "node.out", "wb"))
        node_log = stack.enter_context(open(point_dir / "node.log", "wb"))
        sim = subprocess.Popen(
            [sys.executable, "-c", entry, "binance-sim", str(RECORDING), "--clone", str(count),
             "--speed", "1", "--loop", "--port", str(sim_port), "--weight-per-minute", "6000"],
            stdout=subprocess.DEVNULL, stderr=sim_log)
        nodes: list[subprocess.Popen[Any]] = []
        try:
            _wait_http(f"http://127.0.0.1:{sim_port}/_sim/stats", sim, 60)
            profile = point_dir / "profile.toml"
            profile.write_text(profile_text(symbols, sim_port, server.url, args.calculators),
                               encoding="utf-8")
            nodes = start_workers(count, args, profile, point_dir, node_out, node_log)
            node = nodes[0]
            outside: dict[str, Any] = {}
            profiled = (args.pyspy > 0 and args.processes == 1
                        and count in (args.pyspy_at or [max(args.symbols)]))
            # a node that never syncs is profiled anyway, while it still runs
            patience = args.timeout - args.pyspy - 15 if profiled else args.timeout
            synced = wait_for_window(point_dir, nodes, args, patience)
            pids = [n.pid for n in nodes]
            if synced:
                outside["start"] = _outside(server, sim.pid, pids)
            profile_path = _pyspy(node.pid, args.pyspy, point_dir) if profiled else None
            if profile_path is not None and profile_path.exists():
                outside["pyspy"] = summarize_pyspy(profile_path)
                outside["pyspy_phases"] = pyspy_phases(profile_path)
                outside["pyspy_phase"] = "measuring" if synced else "still syncing"
                args.out.mkdir(parents=True, exist_ok=True)
                kept = args.out / f"node-{count}-pyspy.txt"
                shutil.copyfile(profile_path, kept)
                print(f"py-spy samples kept in {kept} (raw: one stack per line, count last)")
            if synced and all(wait_for_file(d / "window_end.json", n, args.measure + 60)
                              for d, n in zip(worker_dirs(point_dir, args), nodes,
                                              strict=True)):
                outside["end"] = _outside(server, sim.pid, pids)
            if args.processes > 1:  # they run on until all have measured: stop them now
                for n in nodes:
                    n.send_signal(signal.SIGTERM)
            for n in nodes:
                n.wait(timeout=args.timeout + 60)
            sim_stats = _get_json(f"http://127.0.0.1:{sim_port}/_sim/stats")
        finally:
            stop_processes(*nodes, sim, sig=signal.SIGINT)
    figures = worker_figures(point_dir, args)
    figures["symbols"] = count
    figures["processes"] = args.processes
    figures["load_average_1min"] = {"start": load_before, "end": os.getloadavg()[0]}
    if "start" in outside and "end" in outside:
        start, end = outside["start"], outside["end"]
        wall = end["t"] - start["t"]
        figures["redis_commands_per_s"] = (end["redis"]["total_commands_processed"]
                                           - start["redis"]["total_commands_processed"]) / wall
        figures["redis_in_bytes_per_s"] = (end["redis"]["total_net_input_bytes"]
                                           - start["redis"]["total_net_input_bytes"]) / wall
        figures["redis_out_bytes_per_s"] = (end["redis"]["total_net_output_bytes"]
                                            - start["redis"]["total_net_output_bytes"]) / wall
        figures["redis_used_memory_mib"] = end["redis"]["used_memory"] / 2**20
        for name in ("redis", "sim", "node"):
            a, b = start.get(f"{name}_cpu"), end.get(f"{name}_cpu")
            if a is not None and b is not None:
                figures[f"{name}_cpu_cores_outside"] = (b - a) / wall
    if "pyspy" in outside:
        figures["pyspy"] = outside["pyspy"]
        figures["pyspy_phase"] = outside["pyspy_phase"]
        figures["pyspy_phases"] = outside["pyspy_phases"]
    if sim_stats:
        figures["simulator"] = {k: sim_stats.get(k) for k in (
            "frames_out", "bytes_out", "snapshots_served", "replay_lag_max_ms", "disconnects",
            "http_429", "http_418", "connections_opened")}
    return figures


def worker_dirs(point_dir: Path, args: argparse.Namespace) -> list[Path]:
    """Where each node process writes: the point's folder, or one per process."""
    if args.processes == 1:
        return [point_dir]
    return [point_dir / f"w{i}" for i in range(args.processes)]


def start_workers(count: int, args: argparse.Namespace, profile: Path, point_dir: Path,
                  out: Any, log: Any) -> list[subprocess.Popen[Any]]:
    """The node process, or ``--processes`` of them, each a member of the Redis fleet
    (node ids ``bench-node-<i>``) that waits for the driver's go to measure."""
    k = args.processes
    nodes = []
    for i, folder in enumerate(worker_dirs(point_dir, args)):
        command = [sys.executable, str(WORKER), str(profile), "--out", str(folder),
                   "--settle", str(args.settle), "--measure", str(args.measure),
                   "--timeout", str(args.timeout)]
        if k == 1:
            command += ["--symbols", str(count)]
        else:
            # its own node id (the worker's profile is not read with environment overrides)
            own = folder / "profile.toml"
            folder.mkdir(parents=True, exist_ok=True)
            own.write_text(profile.read_text(encoding="utf-8").replace(
                'id = "bench-node"', f'id = "bench-node-{i}"'), encoding="utf-8")
            command[2] = str(own)
            # bounded-load HRW leaves each member floor or ceil of count / k
            command += ["--symbols", str(count // k), "--most", str(-(-count // k)),
                        "--go", str(point_dir / "go")]
        nodes.append(subprocess.Popen(command, stdout=out, stderr=log))
    return nodes


def wait_for_window(point_dir: Path, nodes: list[subprocess.Popen[Any]],
                    args: argparse.Namespace, timeout_s: float) -> bool:
    """Until every node process has opened its measuring window (False: one never did).

    Several processes: once all have synced their share, the driver waits ``--settle``
    and creates the go file, so that every process measures the same seconds."""
    folders = worker_dirs(point_dir, args)
    if args.processes > 1:
        deadline = time.monotonic() + timeout_s
        if not all(wait_for_file(f / "synced.json", n, deadline - time.monotonic())
                   for f, n in zip(folders, nodes, strict=True)):
            return False
        time.sleep(args.settle)
        (point_dir / "go").touch()
        timeout_s = 30.0
    return all(wait_for_file(f / "window_start.json", n, timeout_s)
               for f, n in zip(folders, nodes, strict=True))


def worker_figures(point_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The node's figures, or the processes' merged (see :func:`merge_workers`)."""
    found = []
    for folder in worker_dirs(point_dir, args):
        path = folder / "node.json"
        log = point_dir / "node.log"
        found.append(json.loads(path.read_text()) if path.exists() else {
            "measured": False, "error": log.read_text()[-2000:] if log.exists() else ""})
    return found[0] if len(found) == 1 else merge_workers(found)


def merge_workers(workers: list[dict[str, Any]]) -> dict[str, Any]:
    """Several node processes as one node: cycle percentiles over every process's
    cycles; skipped ticks, CPU, RSS and reports summed; ages the worst process's p95
    (the per-report ages stay in each process)."""
    if not all(w.get("measured") for w in workers):
        unmeasured = [w for w in workers if not w.get("measured")]
        return {"measured": False, "symbols_synced": sum(w.get("symbols_synced", 0)
                                                          for w in unmeasured),
                "sync_s": max(w.get("sync_s", 0) for w in workers), "workers": workers}
    fast_ms = [ms for w in workers for ms in w["fast_ms_series"]]
    reports = sum(w["reports_in_window"] for w in workers)

    def total(key: str) -> float:
        return sum(w[key] for w in workers)

    def worst(key: str) -> float | None:
        values = [w[key] for w in workers if w[key] is not None]
        return max(values) if values else None

    return {
        "measured": True, "sync_s": worst("sync_s"), "window_s": worst("window_s"),
        "fast_p50_ms": percentile(fast_ms, 0.50), "fast_p99_ms": percentile(fast_ms, 0.99),
        "fast_max_ms": max(fast_ms) if fast_ms else None,
        "fast_skipped_ticks": total("fast_skipped_ticks"),
        "slow_skipped_ticks": total("slow_skipped_ticks"),
        "data_age_p95_ms": worst("data_age_p95_ms"),
        "added_data_age_p95_ms": worst("added_data_age_p95_ms"),
        "freshest_symbol_age_p95_ms": worst("freshest_symbol_age_p95_ms"),
        "cpu_cores": total("cpu_cores"), "peak_rss_mib": total("peak_rss_mib"),
        "reports_per_s": total("reports_per_s"),
        "report_bytes_mean": sum(w["report_bytes_mean"] * w["reports_in_window"]
                                 for w in workers) / reports if reports else None,
        "ok_share": sum(w["ok_share"] * w["reports_in_window"] for w in workers) / reports
        if reports else None,
        "gc_collections": [sum(w["gc_collections"][g] for w in workers) for g in range(3)],
        "gc_max_ms": worst("gc_max_ms"),
        "fast_ms_series": fast_ms,
        "workers": [{k: v for k, v in w.items() if k not in ("fast_ms_series", "gc_pauses_ms")}
                    for w in workers],
    }


def _outside(server: RedisServer, sim_pid: int, node_pids: list[int]) -> dict[str, Any]:
    cpu = [cpu_seconds(pid) for pid in node_pids]
    return {"t": time.monotonic(), "redis": redis_info(server),
            "redis_cpu": cpu_seconds(server.pid) if server.pid else None,
            "sim_cpu": cpu_seconds(sim_pid),
            "node_cpu": None if None in cpu else sum(cpu)}


def _pyspy(pid: int, seconds: float, point_dir: Path) -> Path | None:
    binary = find_pyspy()
    if binary is None:
        print("py-spy not found: no profile", file=sys.stderr)
        return None
    out = point_dir / "pyspy.txt"
    result = subprocess.run(
        [binary, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100",
         "--format", "raw", "--nonblocking", "--idle", "--output", str(out)],
        capture_output=True, check=False)
    if result.returncode != 0:
        print(f"py-spy failed: {result.stderr.decode()[-400:]}", file=sys.stderr)
        return None
    return out


def _wait_http(url: str, process: subprocess.Popen[Any], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the simulator exited with {process.returncode}")
        if _get_json(url) is not None:
            return
        time.sleep(0.3)
    raise RuntimeError(f"no answer from {url} within {timeout_s:.0f} s")


def _get_json(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


# ------------------------------------------------------------------------- tables


def _fmt(value: Any, spec: str = ".1f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def capacity_table(points: list[dict[str, Any]]) -> str:
    header = ["symbols", "fast p50 ms", "fast p99 ms", "skipped fast/slow", "data age p95 ms",
              "added age p95 ms", "freshest age p95 ms", "reports ok", "node CPU cores",
              "RSS MiB", "reports/s", "load avg"]
    rows = []
    for p in points:
        if not p.get("measured"):
            synced = f"{p.get('symbols_synced', '?')} synced after {p.get('sync_s', 0):.0f} s"
            rows.append([f"{p['symbols']:,}", f"not measured: {synced}",
                         *[""] * (len(header) - 2)])
            continue
        load = p["load_average_1min"]
        rows.append([
            f"{p['symbols']:,}", _fmt(p["fast_p50_ms"]), _fmt(p["fast_p99_ms"]),
            f"{p['fast_skipped_ticks']}/{p['slow_skipped_ticks']}",
            _fmt(p["data_age_p95_ms"], ".0f"), _fmt(p["added_data_age_p95_ms"], ".0f"),
            _fmt(p["freshest_symbol_age_p95_ms"], ".0f"), _fmt(100 * p["ok_share"], ".0f", "%"),
            _fmt(p["cpu_cores"], ".2f"),
            _fmt(p["peak_rss_mib"], ".0f"), _fmt(p["reports_per_s"], ",.0f"),
            f"{load['start']:.1f}→{load['end']:.1f}"])
    return markdown_table(header, rows)


def per_symbol_table(points: list[dict[str, Any]]) -> str:
    header = ["symbols", "CPU ms/s per symbol", "RSS MiB per symbol", "report bytes",
              "Redis commands/s", "Redis in KB/s", "Redis CPU cores", "simulator CPU cores",
              "sync s", "GC runs gen0/1/2", "GC max ms"]
    rows = []
    for p in points:
        if not p.get("measured"):
            continue
        rows.append([
            f"{p['symbols']:,}", _fmt(p["cpu_cores"] * 1000 / p["symbols"], ".2f"),
            _fmt(p["peak_rss_mib"] / p["symbols"], ".2f"),
            _fmt(p["report_bytes_mean"], ",.0f"), _fmt(p.get("redis_commands_per_s"), ",.0f"),
            _fmt(p.get("redis_in_bytes_per_s") and p["redis_in_bytes_per_s"] / 1e3, ",.0f"),
            _fmt(p.get("redis_cpu_cores_outside"), ".2f"),
            _fmt(p.get("sim_cpu_cores_outside"), ".2f"), _fmt(p["sync_s"], ".0f"),
            "/".join(map(str, p.get("gc_collections", []))) or "—",
            _fmt(p.get("gc_max_ms"), ".1f")])
    return markdown_table(header, rows)


def pyspy_table(point: dict[str, Any]) -> str:
    rows = [[name, f"{own:.1f}", f"{total:.1f}"] for name, own, total in point["pyspy"]]
    return markdown_table(["function (module)", "self %", "total %"], rows)


def _processes_words(processes: int) -> str:
    if processes == 1:
        return "one node process"
    return (f"one node as {processes} processes (each a member of the Redis fleet holding "
            f"its share of the symbols, as `marketcore run --processes {processes}` runs "
            f"them; cycle percentiles over every process's cycles, ages the worst "
            f"process's p95, CPU and RSS summed)")


def calculator_words(which: str) -> str:
    if which == "installed":
        return "every installed calculator in its default cycle"
    return (f"SPEC §4's pipelines (fast: {', '.join(SPEC_CALCULATORS['fast'])}; slow: "
            f"{', '.join(SPEC_CALCULATORS['slow'])})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=lambda s: [int(x) for x in s.split(",")],
                        default=[25, 100, 300, 1000], help="comma-separated symbol counts")
    parser.add_argument("--settle", type=float, default=5.0, help="s after every symbol is ok")
    parser.add_argument("--measure", type=float, default=40.0, help="measured window, s")
    parser.add_argument("--timeout", type=float, default=150.0,
                        help="give a point up when its node has not synced by then, s")
    parser.add_argument("--pyspy", type=float, default=0.0,
                        help="profile one point with py-spy for this many seconds (0: no)")
    parser.add_argument("--pyspy-at", type=lambda s: [int(x) for x in s.split(",")],
                        default=[], help="symbol counts to profile (default: the largest)")
    parser.add_argument("--calculators", choices=("spec", "installed"), default="spec",
                        help="spec: SPEC §4's pipelines (default); installed: every installed "
                             "calculator in its default cycle")
    parser.add_argument("--processes", type=int, default=1,
                        help="node processes sharing the symbols through the Redis "
                             "coordinator, as `marketcore run --processes N` runs them")
    parser.add_argument("--name", help="results file name (default: node, or "
                                       "node-<N>proc with --processes N)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    name = args.name or ("node" if args.processes == 1 else f"node-{args.processes}proc")
    if not RECORDING.is_file():
        print(f"{RECORDING} is missing", file=sys.stderr)
        return 1
    started = time.perf_counter()
    points = []
    with tempfile.TemporaryDirectory(prefix="marketcore-bench-node-") as tmp:
        for count in args.symbols:
            print(f"--- {count} symbols", file=sys.stderr, flush=True)
            point = run_point(count, args, Path(tmp))
            points.append(point)
            print(json.dumps({k: v for k, v in point.items()
                              if k not in ("component_stats", "pyspy", "fast_ms_series",
                                           "gc_pauses_ms")}, default=str),
                  file=sys.stderr, flush=True)
    info = machine()
    payload = {"benchmark": "node", "machine": info, "recording": RECORDING.name,
               "parameters": {"symbols": args.symbols, "processes": args.processes,
                              "settle_s": args.settle,
                              "measure_s": args.measure, "fast_period_ms": 250,
                              "slow_period_ms": 2000, "snapshot_limit": 100,
                              "calculators": (SPEC_CALCULATORS if args.calculators == "spec"
                                              else "every installed")},
               "points": points}
    lines = [
        "# Node capacity", "",
        f"{machine_line(info)} The node, the simulator and Redis share these cores.", "",
        f"Each row: {_processes_words(args.processes)}, the Binance simulator cloning "
        f"`{RECORDING.name}` into "
        f"that many symbols at the recorded rate, a real Redis; fenced Redis sink, Redis "
        f"coordinator, {calculator_words(args.calculators)} (fast 250 ms, slow "
        f"2000 ms). Measured over {args.measure:.0f} s once every symbol's book had synced (plus "
        f"{args.settle:.0f} s). Fast p50/p99: tick to every sink done. Added age: newest "
        f"event time of the cycle minus the report's own, plus the cycle's duration (clones "
        f"replay the same events at the same instants, so a node that keeps up adds "
        f"nothing but its cycle). Freshest age: the age of the newest symbol at the tick "
        f"(it rises only if the node lags on every symbol). Reports ok: share of the "
        f"window's reports with `ingestion.status` ok (data age ≤ 1 s, feed connected). "
        f"RSS: peak. Load average: 1-minute, at the start and end of the row.", "",
        capacity_table(points), "", "Per symbol and around the node:", "",
        per_symbol_table(points)]
    for point in (p for p in points if p.get("pyspy")):
        lines += ["", f"Where the node's time goes at {point['symbols']:,} symbols (py-spy "
                  f"at 100 Hz for {args.pyspy:.0f} s, {point['pyspy_phase']}, idle samples "
                  f"included), by part of the node:", "",
                  markdown_table(["part", "% of samples"],
                                 [[label.replace("  ", "· "), f"{share:.1f}"]
                                  for label, share in point["pyspy_phases"]]),
                  "", "and by function (self = in the function itself, total = with what "
                  "it calls):", "", pyspy_table(point)]
    markdown = "\n".join(lines)
    write_results(args.out, name, payload, markdown)
    print(markdown)
    print(f"\n{time.perf_counter() - started:.0f} s; wrote {args.out}/{name}.json and {name}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
