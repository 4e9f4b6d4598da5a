"""marketcore-calc-spread: the top of the book and the depth around it.

Two fast-cycle calculators:

* ``spread`` — ``best_bid``, ``best_ask``, ``book_state``, ``mid_price``,
  ``spread_bps``, ``micro_price``;
* ``depth`` — ``depth``: quantity and notional within bands around the mid, their
  bid/ask imbalance, and the top levels of each side.

Both read only the book's maintained answers (best prices, incremental band sums,
top-N), so they cost a few microseconds per symbol whatever the book's size.
"""

from __future__ import annotations

from marketcore import hookimpl
from marketcore.components import RegisterCalculator

from marketcore_calc_spread.depth import DepthCalculator
from marketcore_calc_spread.options import DepthOptions, SpreadOptions
from marketcore_calc_spread.spread import SpreadCalculator

__all__ = ["DepthCalculator", "DepthOptions", "SpreadCalculator", "SpreadOptions"]


@hookimpl
def marketcore_register_calculators(register: RegisterCalculator) -> None:
    register("spread", SpreadCalculator, options=SpreadOptions)
    register("depth", DepthCalculator, options=DepthOptions)
