"""Commands ``marketcore report SYMBOL [PROFILE]`` and ``marketcore top [PROFILE]``.

Both read what a running node (or fleet) publishes, from the first sink of the profile
that can be read back (see ``readers``), so they work the same against one node's
``http`` sink, a ``jsonl`` file, or the fleet's Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from marketcore import hookimpl
from marketcore._builtins.readers import ReadError, Report, open_reader
from marketcore._plugins import get_plugin_manager
from marketcore.cli import CommandRegistrar
from marketcore.profile import Profile, load_default_profile, load_profile


def _profile(path: str | None) -> tuple[Profile, Any]:
    pm = get_plugin_manager()
    profile = (load_profile(path) if path is not None
               else load_default_profile(text=pm.hooks.default_profile()))
    return profile, pm.registries


def _fail(error: ReadError) -> int:
    print(f"error: {error}", file=sys.stderr)
    if error.hint:
        print(f"hint: {error.hint}", file=sys.stderr)
    return 1


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("symbol", help="the symbol, e.g. BTCUSDT (case does not matter)")
    parser.add_argument("profile", nargs="?", help="profile TOML (omit for the embedded default)")
    parser.add_argument("--compact", action="store_true", help="one line of JSON, as stored")


def run_report(args: argparse.Namespace) -> int:
    profile, registries = _profile(args.profile)
    symbol = args.symbol.strip().upper()
    try:
        payload, where = asyncio.run(_read_latest(profile, registries, symbol))
    except ReadError as error:
        return _fail(error)
    if payload is None:
        return _fail(ReadError(f"no report for {symbol} in {where}",
                               f"the profile's symbols: {', '.join(profile.node.symbols)}"))
    print(payload.decode() if args.compact else json.dumps(json.loads(payload), indent=2))
    return 0


async def _read_latest(profile: Profile, registries: Any, symbol: str) -> tuple[bytes | None, str]:
    reader = await open_reader(profile, registries)
    try:
        return await reader.latest(symbol), reader.where
    finally:
        await reader.close()


# ---------------------------------------------------------------------------
# top
# ---------------------------------------------------------------------------


def configure_top(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profile", nargs="?", help="profile TOML (omit for the embedded default)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between redraws")
    parser.add_argument("--iterations", type=int, default=0,
                        help="stop after this many redraws (0: until q or Ctrl-C)")


def _num(value: Any, digits: int) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,.{digits}f}"
    return "-"


def _price(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    return _num(value, 2 if value >= 100 else 4 if value >= 1 else 6)


def _imbalance(report: Mapping[str, Any]) -> Any:
    bands = (report.get("depth") or {}).get("bands") or []
    chosen = next((b for b in bands if b.get("bps") == 50), bands[0] if bands else {})
    return chosen.get("imbalance")


COLOURS = {"ok": "\x1b[32m", "degraded": "\x1b[33m", "down": "\x1b[31m"}
HEADER = ("SYMBOL", "OWNER", "STATUS", "MID", "SPREAD bp", "IMB", "HEALTH", "AGE ms")
WIDTHS = (12, 16, 9, 15, 9, 7, 6, 8)


def render_top(reports: Mapping[str, Report], *, where: str, now_ms: int, colour: bool,
               rows: int | None = None) -> str:
    """The ``top`` screen for the latest report of each symbol."""
    owners = {(r.get("writer") or {}).get("nodeId") for r in reports.values()}
    stamp = time.strftime("%H:%M:%S", time.gmtime(now_ms / 1000))
    title = (f"marketcore top  {where}  {len(reports)} symbols on {len(owners)} node(s)  "
             f"{stamp} UTC  (q quits)")
    lines = [title, " ".join(h.ljust(w) if i < 3 else h.rjust(w)
                             for i, (h, w) in enumerate(zip(HEADER, WIDTHS, strict=True)))]
    symbols = sorted(reports)
    shown = symbols if rows is None or len(symbols) <= rows else symbols[:max(rows - 1, 0)]
    for symbol in shown:
        report = reports[symbol]
        status = str((report.get("ingestion") or {}).get("status", "-"))
        updated = report.get("updatedAt")
        age = now_ms - updated if isinstance(updated, int) else None
        cells = (symbol[:12], str((report.get("writer") or {}).get("nodeId", "-"))[:16], status,
                 _price(report.get("mid_price")), _num(report.get("spread_bps"), 3),
                 _num(_imbalance(report), 3), str((report.get("health") or {}).get("score", "-")),
                 "-" if age is None else str(age))
        text = [c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, WIDTHS, strict=True))]
        if colour and status in COLOURS:
            text[2] = COLOURS[status] + text[2] + "\x1b[0m"
        lines.append(" ".join(text))
    if len(shown) < len(symbols):
        lines.append(f"… {len(symbols) - len(shown)} more")
    if not symbols:
        lines.append("(no reports yet)")
    return "\n".join(lines)


def run_top(args: argparse.Namespace) -> int:
    profile, registries = _profile(args.profile)
    try:
        asyncio.run(_top(profile, registries, args.interval, args.iterations, sys.stdout))
    except ReadError as error:
        return _fail(error)
    except KeyboardInterrupt:
        pass
    return 0


@contextlib.contextmanager
def _keys(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> Any:
    """On a terminal: single keys without Enter (``q`` quits); Ctrl-C quits too."""
    loop.add_signal_handler(signal.SIGINT, stop.set)
    fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
    saved = None
    if fd is not None:
        import termios
        import tty

        saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)

        def key() -> None:
            if os.read(fd, 32).lower().startswith(b"q"):
                stop.set()

        loop.add_reader(fd, key)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if fd is not None:
            import termios

            loop.remove_reader(fd)
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def _top(profile: Profile, registries: Any, interval: float, iterations: int,
               out: TextIO) -> None:
    reader = await open_reader(profile, registries)
    reports: dict[str, Report] = {}
    stop = asyncio.Event()
    arrived = asyncio.Event()
    failure: list[BaseException] = []

    async def follow() -> None:
        try:
            async for batch in reader.follow():
                for report in batch:
                    if isinstance(report, dict) and isinstance(report.get("symbol"), str):
                        reports[report["symbol"]] = report
                arrived.set()
        except ReadError as error:
            failure.append(error)
            stop.set()
            arrived.set()

    screen = out.isatty()
    task = asyncio.create_task(follow())
    drawn = 0
    try:
        with _keys(asyncio.get_running_loop(), stop):
            if screen:
                out.write("\x1b[?1049h\x1b[?25l")  # alternate screen, hidden cursor
            with contextlib.suppress(TimeoutError):  # the first frame shows data if it can
                await asyncio.wait_for(arrived.wait(), max(interval, 2.0))
            while not stop.is_set():
                rows = shutil.get_terminal_size().lines - 3 if screen else None
                frame = render_top(reports, where=reader.where, now_ms=int(time.time() * 1000),
                                   colour=screen, rows=rows)
                out.write(("\x1b[H\x1b[2J" + frame + "\n") if screen else frame + "\n\n")
                out.flush()
                drawn += 1
                if iterations and drawn >= iterations:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
    finally:
        if screen:
            out.write("\x1b[?25h\x1b[?1049l")
            out.flush()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await reader.close()
    if failure:
        raise failure[0]


@hookimpl
def marketcore_register_commands(cli: CommandRegistrar) -> None:
    cli.add_command("report", help="print the latest report of a symbol from the profile's sink",
                    configure=configure_report, run=run_report)
    cli.add_command("top", help="a live table of every symbol's latest report (q quits)",
                    configure=configure_top, run=run_top)
