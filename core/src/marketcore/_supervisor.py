"""``marketcore run --processes N``: one node spread over N processes, one per core.

A node's work is CPU in one interpreter (about 4.4 ms a second per BTCUSDT-rate symbol
with SPEC's pipelines; ``docs/scaling.md``), so one process tops out near 100 such
symbols whatever the machine. ``--processes N`` runs N ``marketcore run`` children of
the same profile and supervises them. Each child is a node of its own, told apart by
environment overrides (``MARKETCORE_<SECTION>__<KEY>``, which win over the file):

* node id ``<id>-p<i>`` (``<id>``: the profile's, else ``hostname-pid`` of the
  supervisor);
* symbols: with the ``local`` coordinator the supervisor deals them out (child ``i``
  takes every N-th, starting with the i-th); with any other coordinator (``redis``)
  every child joins the fleet with the whole list and the coordinator shares them;
* ports: child ``i`` serves metrics and each ``http`` sink on the profile's port + i
  (port 0 stays 0, any free port);
* ``stdout`` sinks print JSON lines: N live tables in one terminal would overwrite
  each other (``marketcore top`` shows the whole fleet in one table);
* each ``jsonl`` sink writes a file of its own per child, ``reports-p<i>.jsonl`` for
  ``reports.jsonl``.

SIGINT and SIGTERM reach every child, which stops cleanly; a second one kills them. On
Linux a child also gets SIGTERM when the supervisor dies (``PR_SET_PDEATHSIG``), so a
killed supervisor leaves no node behind to publish beside its successor.
A child that fails after :data:`STARTUP_S` seconds of running is started again (after
1 s, doubling up to 30 s) while the others run on; one that fails sooner stops the
whole node, since the same failure would repeat. The supervisor exits once every child
has: 0 when all stopped cleanly, else the first failure's status.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from marketcore.profile import Profile

__all__ = ["STARTUP_S", "Child", "child_environments", "supervise"]

STARTUP_S = 5.0
"""A child that fails within this many seconds of its start stops the node (no restart)."""

RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
DEFAULT_HTTP_BIND = "127.0.0.1:8080"


class SupervisorError(ValueError):
    """The profile cannot be split over the requested processes (a usage error)."""


def _shifted(bind: str, by: int) -> str:
    """``host:port`` with ``port + by``; port 0 (any free port) stays 0."""
    host, _, port = bind.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return bind
    shifted = int(port) + by
    if shifted > 65535:
        raise SupervisorError(f"{bind} + {by} is past port 65535; choose a lower port")
    return f"{host}:{shifted}"


def _numbered(path: str, index: int) -> str:
    """``reports.jsonl`` → ``reports-p<index>.jsonl``: a file of each child's own (two
    writers rotating one file would lose lines)."""
    found = Path(path)
    return str(found.with_name(f"{found.stem}-p{index}{found.suffix}"))


def child_environments(profile: Profile, count: int, environ: Mapping[str, str], *,
                       base_id: str | None = None) -> list[dict[str, str]]:
    """The environment of each of ``count`` children: ``environ`` plus the overrides that
    make child ``i`` a node of its own (see the module docstring)."""
    symbols = profile.node.symbols
    local = profile.coordinator.use == "local"
    if local and len(symbols) < count:
        raise SupervisorError(
            f"--processes {count} with the local coordinator needs at least {count} "
            f"symbols to deal out; {profile.source or 'the profile'} has {len(symbols)}")
    base_id = base_id or profile.node.id or f"{socket.gethostname()}-{os.getpid()}"
    envs = []
    for i in range(count):
        env = dict(environ)
        env["MARKETCORE_NODE__ID"] = f"{base_id}-p{i}"
        if local:
            env["MARKETCORE_NODE__SYMBOLS"] = ",".join(symbols[i::count])
        if profile.metrics.bind:
            env["MARKETCORE_METRICS__BIND"] = _shifted(profile.metrics.bind, i)
        for j, sink in enumerate(profile.sink):
            if sink.use == "http":
                bind = str(sink.options.get("bind", DEFAULT_HTTP_BIND))
                env[f"MARKETCORE_SINK__{j}__BIND"] = _shifted(bind, i)
            elif sink.use == "stdout" and count > 1:
                env[f"MARKETCORE_SINK__{j}__FORMAT"] = "json"
            elif sink.use == "jsonl" and count > 1 and "path" in sink.options:
                env[f"MARKETCORE_SINK__{j}__PATH"] = _numbered(str(sink.options["path"]), i)
        envs.append(env)
    return envs


def child_command(args: argparse.Namespace) -> list[str]:
    """``marketcore run`` with the arguments given, less ``--processes``."""
    command = [sys.executable, "-m", "marketcore"]
    if getattr(args, "debug", False):
        command.append("--debug")
    if getattr(args, "log_format", None):
        command += ["--log-format", args.log_format]
    if getattr(args, "log_level", None):
        command += ["--log-level", args.log_level]
    command.append("run")
    if args.profile is not None:
        command.append(args.profile)
    if args.duration is not None:
        command += ["--duration", repr(args.duration)]
    if args.json:
        command.append("--json")
    return command


@attrs.define
class Child:
    """One child node process and when it may be started again."""

    index: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff_s: float = RESTART_FIRST_S
    restart_at: float | None = None
    exit_code: int | None = None
    """Set once the child has stopped for good (never to be restarted)."""

    @property
    def node_id(self) -> str:
        return self.env["MARKETCORE_NODE__ID"]

    def start(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, env=self.env, stdin=subprocess.DEVNULL,
                                        preexec_fn=_term_with_parent)
        self.started = time.monotonic()
        self.restart_at = None

    def signal(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)


class _Stop:
    """What the signal handlers set: how many stop signals arrived."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _sig: int, _frame: Any) -> None:
        self.count += 1


def supervise(args: argparse.Namespace, profile: Profile, *, poll_s: float = 0.1) -> int:
    """Run ``args.processes`` children of ``profile`` until they have all stopped."""
    count = args.processes
    command = child_command(args)
    children = [Child(i, env) for i, env in
                enumerate(child_environments(profile, count, os.environ))]
    stop = _Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    forwarded = 0
    try:
        for child in children:
            child.start(command)
        _announce(profile, children)
        while any(c.exit_code is None for c in children):
            if stop.count > forwarded:
                forwarded = stop.count
                for child in children:
                    child.restart_at = None
                    child.signal(signal.SIGTERM if forwarded == 1 else signal.SIGKILL)
            now = time.monotonic()
            for child in children:
                if child.exit_code is not None:
                    continue
                if child.restart_at is not None:
                    if now >= child.restart_at and not stop.count:
                        _say(f"restarting {child.node_id}")
                        child.start(command)
                    continue
                code = child.process.poll() if child.process is not None else None
                if code is None:
                    continue
                if stop.count or code == 0:
                    child.exit_code = code
                    status = status or _exit_status(code)
                    continue
                ran_s = now - child.started
                if ran_s < STARTUP_S:
                    _say(f"{child.node_id} failed {ran_s:.1f} s after its start (status "
                         f"{_status_text(code)}): stopping every process of the node")
                    child.exit_code = code
                    status = status or _exit_status(code)
                    stop.count += 1
                    continue
                child.restart_at = now + child.backoff_s
                _say(f"{child.node_id} stopped with status {_status_text(code)} after "
                     f"{ran_s:.0f} s; restarting it in {child.backoff_s:g} s")
                child.backoff_s = min(RESTART_MAX_S, 2 * child.backoff_s)
            time.sleep(poll_s)
    finally:
        for child in children:
            child.signal(signal.SIGKILL)
            if child.process is not None:
                child.process.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def _term_with_parent() -> None:
    """In the child, before ``exec``: SIGTERM when the parent dies (Linux; else nothing)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return


PR_SET_PDEATHSIG = 1


def _exit_status(code: int) -> int:
    """A child's return code as an exit status (killed by signal ``s``: ``128 + s``)."""
    return 128 - code if code < 0 else code


def _status_text(code: int) -> str:
    if code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            return str(code)
    return str(code)


def _say(text: str) -> None:
    print(f"marketcore: {text}", file=sys.stderr, flush=True)


def _announce(profile: Profile, children: list[Child]) -> None:
    """One line on stderr: which nodes run and where their ports are."""
    first, last = children[0].env, children[-1].env
    parts = [f"{len(children)} node processes ({children[0].node_id} … {children[-1].node_id})"]
    if profile.coordinator.use == "local":
        parts.append("symbols dealt out by the supervisor")
    else:
        parts.append(f"symbols shared by the {profile.coordinator.use} coordinator")
    if profile.metrics.bind:
        parts.append(f"metrics {first['MARKETCORE_METRICS__BIND']} … "
                     f"{last['MARKETCORE_METRICS__BIND']}")
    for j, sink in enumerate(profile.sink):
        key = f"MARKETCORE_SINK__{j}__BIND"
        if sink.use == "http":
            parts.append(f"read API {first[key]} … {last[key]}")
    _say("; ".join(parts))
