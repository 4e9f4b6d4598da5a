"""The ``marketcore`` command line.

Errors are one line (``error: …``) plus a hint, exit status 2 for bad input
(profile, arguments, plugins) and 1 for failures while running; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import tomli_w

from marketcore._assembly import assemble
from marketcore._builtins.jsonl import JsonlOptions, JsonlSink
from marketcore._logging import configure_logging
from marketcore._plugins import PluginError, PluginManager, get_plugin_manager
from marketcore._runtime import make_node, run_live, run_replay
from marketcore._supervisor import SupervisorError, supervise
from marketcore.cli import CommandRegistrar
from marketcore.clock import SimulatedClock, WallClock
from marketcore.profile import (
    LOG_FORMATS,
    LOG_LEVELS,
    ComponentSection,
    Profile,
    ProfileError,
    load_default_profile,
    load_profile,
    parse_profile,
)

PROFILE_HINT = ("hint: `marketcore validate PROFILE` lists every problem; "
                "`marketcore init` writes a starter profile")


class UsageError(Exception):
    """Bad command-line input: printed as one line, exit status 2."""


# ---------------------------------------------------------------------------
# Shared steps
# ---------------------------------------------------------------------------


def _load(path: str | None, pm: PluginManager) -> Profile:
    if path is None:
        return load_default_profile(text=pm.hooks.default_profile())
    return load_profile(path)


def _configure_logging(args: argparse.Namespace, profile: Profile | None = None) -> None:
    """Logging from the profile's ``[log]``, overridden by ``--log-format`` / ``--log-level``
    (and ``--debug``, which means level ``debug``)."""
    section = profile.log if profile is not None else None
    log_format = getattr(args, "log_format", None) or (section.format if section else "text")
    level = getattr(args, "log_level", None) or (section.level if section else "warning")
    if getattr(args, "debug", False):
        level = "debug"
    configure_logging(format=log_format, level=level,
                      burst=section.burst if section else 5,
                      interval_s=section.interval_s if section else 10.0)


def _with_json_stdout(profile: Profile) -> Profile:
    """``--json``: every stdout sink prints JSON lines; add one if there is none."""
    sinks = [
        attrs.evolve(s, options={**s.options, "format": "json"}) if s.use == "stdout" else s
        for s in profile.sink
    ]
    if not any(s.use == "stdout" for s in sinks):
        sinks.append(ComponentSection("stdout", {"format": "json"}, "stdout"))
    return attrs.evolve(profile, sink=tuple(sinks))


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, pm: PluginManager) -> int:
    profile = _load(args.profile, pm)
    _configure_logging(args, profile)
    if args.processes > 1:
        assemble(profile, pm.registries)  # a bad profile fails here, once, not in N children
        try:
            return supervise(args, profile)
        except SupervisorError as error:
            raise UsageError(str(error)) from None
    if args.json:
        profile = _with_json_stdout(profile)
    node = make_node(profile, pm, mode="live", clock=WallClock())
    with asyncio.Runner() as runner:
        runner.run(run_live(node, duration_s=args.duration))
        stuck = [t for t in asyncio.all_tasks(runner.get_loop()) if not t.done()]
        if stuck:  # a plugin ignored its cancellation: do not hang on it at exit
            print(f"error: {len(stuck)} task(s) did not stop: "
                  f"{', '.join(sorted(t.get_name() for t in stuck))}", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)
    return 0


def cmd_replay(args: argparse.Namespace, pm: PluginManager) -> int:
    profile = _load(args.profile, pm)
    _configure_logging(args, profile)
    recordings = [Path(p) for p in args.recording]
    for path in recordings:
        if not path.is_file():
            raise UsageError(f"recording {path} does not exist")
    out = Path(args.out)
    if out.exists() and not args.append:
        out.unlink()
    clock = SimulatedClock()
    node = make_node(profile, pm, mode="replay", clock=clock,
                     sinks=(JsonlSink(JsonlOptions(path=str(out))),))
    events = node.components.venue.replay(recordings, profile.node.symbols)
    applied = asyncio.run(run_replay(
        node, events, clock, speed=args.speed, duration_s=args.duration,
        progress=sys.stderr.isatty()))
    print(f"replayed {applied:,} events into {node.stats.reports_published:,} reports "
          f"→ {out}", file=sys.stderr)
    return 0


def cmd_validate(args: argparse.Namespace, pm: PluginManager) -> int:
    failed = 0
    for path in args.profiles:
        try:
            profile = _load(path, pm)
            components = assemble(profile, pm.registries)
        except ProfileError as error:
            failed += 1
            for problem in error.problems:
                print(f"error: {problem}", file=sys.stderr)
            continue
        print(f"{profile.source}: ok — venue {components.venue.name}, "
              f"coordinator {components.coordinator.name}, "
              f"sinks {', '.join(s.name for s in components.sinks) or 'none'}; "
              f"fast [{', '.join(components.fast.names)}] every "
              f"{profile.pipeline.fast.period_ms} ms, slow [{', '.join(components.slow.names)}] "
              f"every {profile.pipeline.slow.period_ms} ms; {len(profile.node.symbols)} "
              f"symbol{'' if len(profile.node.symbols) == 1 else 's'}")
    if failed:
        print(PROFILE_HINT, file=sys.stderr)
    return 2 if failed else 0


STARTER_HEADER = """\
# A marketcore profile. Check it with `marketcore validate {path}`,
# run it with `marketcore run {path}`.
# Every key can be overridden from the environment: MARKETCORE_<SECTION>__<KEY>,
# e.g. MARKETCORE_NODE__SYMBOLS="BTCUSDT,ETHUSDT" or MARKETCORE_PIPELINE__FAST__PERIOD_MS=500.
# Secrets (passwords, keys) belong in the environment, never in this file.
# Leaving out `calculators` in a pipeline runs every installed calculator in its default cycle.

"""


def cmd_init(args: argparse.Namespace, pm: PluginManager) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    venues = pm.registries.venues
    if args.venue not in venues:
        raise UsageError(f"unknown venue {args.venue!r}; installed: {', '.join(sorted(venues))}")
    data: dict[str, Any] = {
        "node": {"symbols": list(args.symbols.split(","))},
        "venue": {"use": args.venue},
        "coordinator": {"use": "local"},
        "pipeline": {"fast": {"period_ms": 250}, "slow": {"period_ms": 2000}},
        "sink": [{"use": "stdout"}],
    }
    text = STARTER_HEADER.format(path=path) + tomli_w.dumps(data)
    parse_profile(text, str(path), environ={})  # what we write must validate
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


def cmd_plugins(args: argparse.Namespace, pm: PluginManager) -> int:
    infos = pm.describe()
    if args.json:
        print(json.dumps([attrs.asdict(i) for i in infos], indent=2))
        return 0
    for info in infos:
        print(f"{info.name}  ({info.distribution} {info.version})")
        for kind, names in info.registers.items():
            print(f"    {kind}: {', '.join(names)}")
        if info.hooks:
            print(f"    hooks: {', '.join(info.hooks)}")
    return 0


# ---------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------


def _seconds(value: str) -> float:
    """A positive number (``--duration``)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, found {value!r}")
    return seconds


def _processes(value: str) -> int:
    """``--processes``: a whole number ≥ 1, or ``auto``: the cores this process may use."""
    if value == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(
            f"expected a whole number ≥ 1 or 'auto', found {value!r}")
    return int(value)


def _speed(value: str) -> float | None:
    """``max`` (``None``: as fast as the CPU allows) or a positive factor of real time."""
    return None if value == "max" else _seconds(value)


BUILTIN_COMMANDS = ("run", "replay", "validate", "init", "plugins")


def _add_log_flags(parser: argparse.ArgumentParser, default: Any = None) -> None:
    """``--log-format`` / ``--log-level``: before the command, or after ``run`` / ``replay``
    (``default=SUPPRESS`` there, so an absent flag does not erase one given before)."""
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=default,
                        help="log lines as text or JSON (default: the profile's [log] format)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, type=str.lower, default=default,
                        help="least severe level logged (default: the profile's [log] level)")


def build_parser(pm: PluginManager) -> tuple[argparse.ArgumentParser, CommandRegistrar]:
    parser = argparse.ArgumentParser(
        prog="marketcore",
        description="Live exchange market data in, compact market reports out.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    _add_log_flags(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser("run", help="run a node (default: the embedded default profile)")
    run.add_argument("profile", nargs="?", help="profile TOML (omit for the embedded default)")
    run.add_argument("--duration", type=_seconds, help="stop by itself after this many seconds")
    run.add_argument("--json", action="store_true", help="stdout prints JSON lines, not a table")
    run.add_argument("--processes", type=_processes, default=1, metavar="N",
                     help="run the node as N processes, one per core; 'auto': one per "
                          "usable core (docs/operations.md)")
    _add_log_flags(run, default=argparse.SUPPRESS)
    run.set_defaults(handler=cmd_run)

    replay = sub.add_parser("replay", help="run a profile over recordings, deterministically")
    replay.add_argument("profile", nargs="?", help="profile TOML (omit for the embedded default)")
    replay.add_argument("--recording", nargs="*", default=[], metavar="FILE",
                        help="recording files, in order (a synthetic venue needs none)")
    replay.add_argument("--out", required=True, help="reports as JSON lines")
    replay.add_argument("--append", action="store_true", help="append to --out, not replace it")
    replay.add_argument("--speed", type=_speed, default=None,
                        help="'max' (default) or N times real time")
    replay.add_argument("--duration", type=_seconds, help="stop after this much market time (s)")
    _add_log_flags(replay, default=argparse.SUPPRESS)
    replay.set_defaults(handler=cmd_replay)

    validate = sub.add_parser("validate", help="check profiles without running them")
    validate.add_argument("profiles", nargs="+", metavar="PROFILE")
    validate.set_defaults(handler=cmd_validate)

    init = sub.add_parser("init", help="write a starter profile")
    init.add_argument("path", nargs="?", default="marketcore.toml")
    init.add_argument("--venue", default="synthetic", help="venue to use (default: synthetic)")
    init.add_argument("--symbols", default="BTCUSDT,ETHUSDT", help="comma-separated symbols")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(handler=cmd_init)

    plugins = sub.add_parser("plugins", help="list loaded plugins and what they register")
    plugins.add_argument("--json", action="store_true")
    plugins.set_defaults(handler=cmd_plugins)

    registrar = CommandRegistrar(taken=set(BUILTIN_COMMANDS))
    pm.hooks.register_commands(registrar)
    for command in registrar.commands.values():
        extra = sub.add_parser(command.name, help=command.help)
        command.configure(extra)
        extra.set_defaults(plugin_run=command.run)
    return parser, registrar


def run(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    configure_logging(level="debug" if debug else "warning")
    try:
        pm = get_plugin_manager()
        parser, _ = build_parser(pm)
        args = parser.parse_args(argv)
        _configure_logging(args)
        if getattr(args, "plugin_run", None) is not None:
            return int(args.plugin_run(args) or 0)
        return args.handler(args, pm)
    except ProfileError as error:
        if debug:
            raise
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(PROFILE_HINT, file=sys.stderr)
        return 2
    except (PluginError, UsageError) as error:
        if debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        if isinstance(error, PluginError):
            print("hint: `marketcore plugins` lists what is installed; "
                  "MARKETCORE_DISABLE_PLUGINS=name blocks one", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        if debug:
            raise
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        print("hint: run again with --debug for the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run())
