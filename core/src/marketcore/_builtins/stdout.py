"""Sink ``stdout``: a readable live table, or JSON lines (``format = "json"``).

On a terminal the table is redrawn in place; when stdout is a pipe or a file a
new table is printed at most every ``every_ms``, so logs stay readable.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TextIO

import attrs

from marketcore import hookimpl
from marketcore.components import Publication, RegisterSink


@attrs.frozen
class StdoutOptions:
    format: str = attrs.field(default="table", validator=attrs.validators.in_(("table", "json")))
    every_ms: int = 1000
    """Table mode: redraw at most this often."""


def _num(value: Any, digits: int = 2) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,.{digits}f}"
    return "-"


def _price(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    digits = 2 if value >= 100 else 4 if value >= 1 else 6
    return f"{value:,.{digits}f}"


def _touch(report: Mapping[str, Any], side: str) -> Any:
    touch = report.get(side)
    return touch.get("price") if isinstance(touch, Mapping) else None


def _count(items: Any) -> str:
    return str(len(items)) if isinstance(items, list) else "-"


def _imbalance(report: Mapping[str, Any]) -> Any:
    bands = (report.get("depth") or {}).get("bands") or []
    for band in bands:
        if band.get("bps") == 50:
            return band.get("imbalance")
    return bands[0].get("imbalance") if bands else None


def _net_flow(report: Mapping[str, Any]) -> Any:
    windows = (report.get("flow") or {}).get("windows") or []
    return windows[0].get("net_flow") if windows else None


COLUMNS = (
    ("SYMBOL", 12, lambda r: r.get("symbol", "-")),
    ("STATUS", 9, lambda r: (r.get("ingestion") or {}).get("status", "-")),
    ("AGE ms", 7, lambda r: "-" if r.get("data_age_ms") is None else str(r["data_age_ms"])),
    ("LAST", 14, lambda r: _price(r.get("last_price"))),
    ("BID", 14, lambda r: _price(_touch(r, "best_bid"))),
    ("ASK", 14, lambda r: _price(_touch(r, "best_ask"))),
    ("SPREAD bp", 9, lambda r: _num(r.get("spread_bps"))),
    ("IMB", 6, lambda r: _num(_imbalance(r))),
    ("NET FLOW", 11, lambda r: _num(_net_flow(r), 3)),
    ("WALLS", 5, lambda r: _count((r.get("liquidity") or {}).get("walls"))),
    ("ANOM", 4, lambda r: _count(r.get("anomalies"))),
    ("HEALTH", 6, lambda r: str((r.get("health") or {}).get("score", "-"))),
)


def render_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """The live table's text for one batch of reports."""
    header = " ".join(title.rjust(width) if i else title.ljust(width)
                      for i, (title, width, _) in enumerate(COLUMNS))
    lines = [header]
    for report in reports:
        cells = [str(cell(report)) for _, _, cell in COLUMNS]
        lines.append(" ".join(c.rjust(w) if i else c.ljust(w)
                              for i, (c, (_, w, _)) in enumerate(zip(cells, COLUMNS, strict=True))))
    return "\n".join(lines)


class StdoutSink:
    name = "stdout"

    def __init__(self, options: StdoutOptions, stream: TextIO | None = None) -> None:
        self.options = options
        self.stream = stream
        self._last_draw = 0.0
        self._reader_gone = False

    @property
    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    async def start(self) -> None:
        self._last_draw = 0.0

    async def publish(self, batch: Sequence[Publication]) -> Collection[str]:
        """Print the batch; once the reader of a pipe is gone (``| head``), stay quiet."""
        if self._reader_gone:
            return ()
        try:
            self._write(batch)
        except BrokenPipeError:
            self._reader_gone = True
        return ()

    def _write(self, batch: Sequence[Publication]) -> None:
        out = self._out
        if self.options.format == "json":
            out.write("".join(p.payload.decode() + "\n" for p in batch))
            out.flush()
            return
        now = time.monotonic()
        if now - self._last_draw < self.options.every_ms / 1000:
            return
        self._last_draw = now
        table = render_table([p.report for p in batch])
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        title = f"marketcore  {stamp} UTC  {len(batch)} symbols"
        if out.isatty():
            out.write("\x1b[H\x1b[2J" + title + "\n" + table + "\n")
        else:
            out.write(title + "\n" + table + "\n\n")
        out.flush()

    async def close(self) -> None:
        if not self._reader_gone:
            with contextlib.suppress(BrokenPipeError):
                self._out.flush()


@hookimpl
def marketcore_register_sinks(register: RegisterSink) -> None:
    register("stdout", StdoutSink, options=StdoutOptions)
