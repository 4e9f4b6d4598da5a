"""The ``flow`` calculator: every field of every window by hand, and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from marketcore import Needs
from marketcore.testing import make_state, run_cycle, validate_report
from marketcore_calc_liquidity import FlowCalculator, FlowOptions

NOW = 60_000
TRADES = [  # (ts_ms, price, qty, aggressor)
    (0, 100.0, 1.0, "buy"),
    (5_000, 101.0, 2.0, "sell"),
    (25_000, 102.0, 1.0, "buy"),
    (35_000, 100.0, 3.0, "buy"),
    (45_000, 99.0, 1.0, "sell"),
    (52_000, 100.0, 2.0, "buy"),
    (55_000, 101.0, 1.0, "sell"),
    (59_999, 102.0, 0.5, "buy"),
]


def flow_of(state, calculator=None, now_ms=NOW):
    report, _ = run_cycle([calculator or FlowCalculator(FlowOptions())], state, now_ms=now_ms)
    validate_report(report)
    return report["flow"]["windows"]


def test_both_default_windows_by_hand():
    ten, thirty = flow_of(make_state(bids=[(99.0, 1.0)], asks=[(101.0, 1.0)], trades=TRADES))
    # 10 s: [50 000, now] holds 52 000 buy 2 @100, 55 000 sell 1 @101, 59 999 buy 0.5 @102;
    # the window before, [40 000, 50 000), holds 45 000 sell 1 @99 (net flow -1).
    assert ten == {
        "window_s": 10.0,
        "trades": 3,
        "trades_per_sec": 0.3,
        "buy_volume": 2.5,
        "sell_volume": 1.0,
        "net_flow": 1.5,
        "vwap": pytest.approx((200.0 + 101.0 + 51.0) / 3.5),    # 100.5714…
        "acceleration": 2.5,                                    # 1.5 - (-1)
    }
    # 30 s: [30 000, now] adds 35 000 buy 3 @100 and 45 000 sell 1 @99; before it,
    # [0, 30 000): buy 1, sell 2, buy 1 -> net flow 0.
    assert thirty == {
        "window_s": 30.0,
        "trades": 5,
        "trades_per_sec": pytest.approx(5 / 30),
        "buy_volume": 5.5,
        "sell_volume": 2.0,
        "net_flow": 3.5,
        "vwap": pytest.approx((300.0 + 99.0 + 200.0 + 101.0 + 51.0) / 7.5),   # 100.1333…
        "acceleration": 3.5,
    }


def test_configured_windows():
    calculator = FlowCalculator(FlowOptions(windows_s=[20, 5]))
    assert calculator.needs == Needs(trade_window_ms=40_000)     # twice the longest window
    five, twenty = flow_of(make_state(trades=TRADES), calculator)
    assert five["window_s"] == 5.0 and twenty["window_s"] == 20.0
    # 5 s: [55 000, now]: sell 1 @101, buy 0.5 @102; before: [50 000, 55 000): buy 2 -> +2
    assert (five["trades"], five["buy_volume"], five["sell_volume"]) == (2, 0.5, 1.0)
    assert five["net_flow"] == -0.5 and five["acceleration"] == -2.5
    # 20 s: [40 000, now]: sell 1, buy 2, sell 1, buy 0.5; before: [20 000, 40 000): buy 1, buy 3
    assert (twenty["trades"], twenty["net_flow"], twenty["acceleration"]) == (4, 0.5, -3.5)
    assert twenty["trades_per_sec"] == 0.2


def test_acceleration_waits_until_the_previous_window_was_watched():
    # The node saw its first trade at 20 000: the 30 s window before [30 000, 60 000]
    # starts at 0, which it never saw, so that acceleration is null; the 10 s one is not.
    ten, thirty = flow_of(make_state(trades=[t for t in TRADES if t[0] >= 20_000]))
    assert ten["acceleration"] == 2.5
    assert thirty["acceleration"] is None
    assert thirty["net_flow"] == 3.5


def test_no_trades_means_zero_flow_and_no_vwap():
    state = make_state(bids=[(99.0, 1.0)], asks=[(101.0, 1.0)])
    calculator = FlowCalculator()
    first = flow_of(state, calculator, now_ms=NOW)
    for window in first:
        assert window["trades"] == 0 and window["trades_per_sec"] == 0.0
        assert window["buy_volume"] == window["sell_volume"] == window["net_flow"] == 0.0
        assert window["vwap"] is None
        assert window["acceleration"] is None        # nothing watched before now
    later = flow_of(state, calculator, now_ms=NOW + 60_000)
    assert [w["acceleration"] for w in later] == [0.0, 0.0]   # watched: really no flow


trade_lists = st.lists(
    st.tuples(st.integers(min_value=0, max_value=60_000),
              st.floats(min_value=0.01, max_value=1e6),
              st.floats(min_value=1e-8, max_value=1e4),
              st.sampled_from(["buy", "sell"])),
    max_size=60,
).map(lambda trades: sorted(trades, key=lambda t: t[0]))


@given(trades=trade_lists, windows=st.lists(st.integers(min_value=1, max_value=40), min_size=1,
                                            max_size=3, unique=True))
def test_properties_on_random_trades(trades, windows):
    calculator = FlowCalculator(FlowOptions(windows_s=windows))
    result = flow_of(make_state(trades=trades), calculator, now_ms=NOW)
    assert [w["window_s"] for w in result] == sorted(float(w) for w in windows)
    for window in result:
        start = NOW - window["window_s"] * 1000
        inside = [t for t in trades if t[0] >= start]
        assert window["trades"] == len(inside)
        buy = math.fsum(q for _, _, q, side in inside if side == "buy")
        sell = math.fsum(q for _, _, q, side in inside if side == "sell")
        assert window["buy_volume"] == pytest.approx(buy, rel=1e-12, abs=1e-12)
        assert window["sell_volume"] == pytest.approx(sell, rel=1e-12, abs=1e-12)
        assert window["net_flow"] == window["buy_volume"] - window["sell_volume"]
        if inside:
            low, high = min(t[1] for t in inside), max(t[1] for t in inside)
            assert low * (1 - 1e-12) <= window["vwap"] <= high * (1 + 1e-12)
        else:
            assert window["vwap"] is None
        for value in window.values():
            assert value is None or math.isfinite(value)


# ------------------------------------------- the fused sums against the former code


class _FormerFlow(FlowCalculator):
    """``compute`` as it was before the three sums of a window became one call: the
    reference the fused version must match bit for bit."""

    def compute(self, state, ctx):
        import numpy as np

        with np.errstate(over="ignore", invalid="ignore"):
            return self._compute(state, ctx)

    def _compute(self, state, ctx):
        import numpy as np
        from marketcore import Omitted

        now = ctx.now_ms
        trades = state.trades.window(now - 2 * self.windows_ms[-1])
        watched_since = self._watched_since(state, now)
        ts, qty = trades.ts_ms, trades.qty
        buy = np.where(trades.sign > 0, qty, 0.0)
        sell = qty - buy
        signed = buy - sell
        notional = trades.price * qty
        total = np.add.reduce
        bounds = ts.searchsorted(self._bounds(now), side="left").tolist()
        windows = []
        for index, (seconds, w) in enumerate(zip(self.windows_s, self.windows_ms, strict=True)):
            start, middle = bounds[2 * index], bounds[2 * index + 1]
            buy_volume = float(total(buy[middle:]))
            sell_volume = float(total(sell[middle:]))
            volume = buy_volume + sell_volume
            spent = float(total(notional[middle:]))
            net = buy_volume - sell_volume
            acceleration = None
            if watched_since <= now - 2 * w:
                acceleration = net - float(total(signed[start:middle]))
            if not math.isfinite(volume + spent + (acceleration or 0.0)):
                return {"flow": Omitted(f"non-finite trade price or quantity in the last "
                                        f"{2 * seconds:g} s")}
            windows.append({
                "window_s": seconds, "trades": len(ts) - middle,
                "trades_per_sec": (len(ts) - middle) / seconds, "buy_volume": buy_volume,
                "sell_volume": sell_volume, "net_flow": net,
                "vwap": spent / volume if volume > 0 else None, "acceleration": acceleration,
            })
        return {"flow": {"windows": windows}}


_QTY = st.one_of(st.floats(min_value=1e-8, max_value=1e4),
                 st.sampled_from([float("nan"), float("inf"), 0.0, -1.5, 1e300]))


@given(st.lists(st.tuples(st.integers(0, 90_000), st.floats(min_value=1.0, max_value=1e5),
                          _QTY, st.sampled_from(["buy", "sell"])), max_size=300),
       st.lists(st.sampled_from([1.0, 5.0, 10.0, 30.0]), min_size=1, max_size=3, unique=True),
       st.integers(0, 120_000), st.integers(0, 2))
@example(trades=[(0, 100.0, 1.0, "buy"), (11_000, 100.0, 0.1, "buy"),
                 (12_000, 100.0, 0.2, "sell"), (13_000, 100.0, 0.3, "buy")],
         windows=[10.0], now=30_000, cycles=0)  # sum(buy - sell) != sum(buy) - sum(sell)
@settings(max_examples=300)
def test_fused_sums_match_the_former_code_bit_for_bit(trades, windows, now, cycles):
    trades.sort(key=lambda t: t[0])
    options = FlowOptions(windows_s=tuple(sorted(windows)))
    fused, former = FlowCalculator(options), _FormerFlow(options)
    fused_state = make_state(trades=trades, needs=fused.needs)
    former_state = make_state(trades=trades, needs=former.needs)
    for k in range(cycles + 1):  # later cycles may reach the acceleration
        at = now + k * 60_000
        got = run_cycle([fused], fused_state, now_ms=at)
        expected = run_cycle([former], former_state, now_ms=at)
        assert repr(got) == repr(expected)
