"""Replay the bundled Binance recording through ``realized_vol`` and plot it to a PNG.

No notebook: one deterministic replay on the recording's clock, one figure::

    uv run --package marketcore-example-realized-vol --extra plot \\
        python examples/plugins/realized_vol/scripts/plot_realized_vol.py --out realized_vol.png

Needs this plugin, the Binance venue (which reads the recording) and matplotlib
(the ``plot`` extra); says so plainly when one is missing.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from marketcore.testing import find_recording, replay_calculator, section_series


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recording", type=Path, default=None,
                        help="a Binance recording (default: examples/data/'s BTCUSDT)")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--window-s", type=int, default=60)
    parser.add_argument("--sample-ms", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("realized_vol.png"))
    args = parser.parse_args(argv)

    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        print("error: plotting needs matplotlib, which this plugin does not install by "
              "itself\nhint: uv run --package marketcore-example-realized-vol --extra plot "
              "python ...  (or: pip install matplotlib)", file=sys.stderr)
        return 2
    recording = args.recording or find_recording(start=__file__)
    if recording is None or not recording.is_file():
        print("error: no recording found; pass --recording FILE", file=sys.stderr)
        return 2
    try:
        reports = replay_calculator(
            "realized_vol", recordings=[recording], symbols=[args.symbol],
            options={"window_s": args.window_s, "sample_ms": args.sample_ms})
    except LookupError as error:  # the plugin or the Binance venue is not installed
        print(f"error: {error}", file=sys.stderr)
        return 2
    series = section_series(reports, "ext.realized_vol.annualized_pct", symbol=args.symbol)
    prices = section_series(reports, "last_price", symbol=args.symbol)
    if not series:
        print(f"error: no report of {args.symbol} carried ext.realized_vol "
              f"({len(reports)} reports)", file=sys.stderr)
        return 1

    def times(points: list[tuple[int, object]]) -> list[datetime]:
        return [datetime.fromtimestamp(ms / 1000, UTC) for ms, _ in points]

    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    top.plot(times(prices), [p for _, p in prices], linewidth=0.8, color="black")
    top.set_ylabel(f"{args.symbol} last price")
    bottom.plot(times(series), [v for _, v in series], linewidth=1.0, color="tab:red")
    bottom.set_ylabel(f"realized vol, annualized %\n({args.window_s} s window, "
                      f"{args.sample_ms} ms grid)")
    bottom.set_xlabel("UTC (the recording's clock)")
    figure.suptitle(f"{recording.name}: realized volatility, one point per 250 ms report")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(args.out, dpi=120)
    values = [v for _, v in series]
    print(f"{len(reports)} reports, {len(series)} with ext.realized_vol; annualized vol "
          f"{min(values):.1f}–{max(values):.1f} % → {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
