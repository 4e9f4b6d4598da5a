"""marketcore-calc-liquidity: order flow and the shape of liquidity.

Four calculators:

* ``flow`` (fast cycle) — trades, aggressor volumes, net flow, VWAP and the change of
  net flow over rolling windows;
* ``walls`` (slow) — levels far above this symbol's usual level size;
* ``vacuums`` (slow) — runs of thin levels near the touch;
* ``volume_profile`` (slow) — point of control and value area of the last 30 minutes
  of trades.

``walls``, ``vacuums`` and ``volume_profile`` are published under ``liquidity``.
"""

from __future__ import annotations

from marketcore import hookimpl
from marketcore.components import RegisterCalculator

from marketcore_calc_liquidity.flow import FlowCalculator
from marketcore_calc_liquidity.options import (
    FlowOptions,
    VacuumsOptions,
    VolumeProfileOptions,
    WallsOptions,
)
from marketcore_calc_liquidity.vacuums import VacuumsCalculator
from marketcore_calc_liquidity.volume_profile import VolumeProfileCalculator
from marketcore_calc_liquidity.walls import WallsCalculator

__all__ = [
    "FlowCalculator",
    "FlowOptions",
    "VacuumsCalculator",
    "VacuumsOptions",
    "VolumeProfileCalculator",
    "VolumeProfileOptions",
    "WallsCalculator",
    "WallsOptions",
]


@hookimpl
def marketcore_register_calculators(register: RegisterCalculator) -> None:
    register("flow", FlowCalculator, options=FlowOptions)
    register("walls", WallsCalculator, options=WallsOptions)
    register("vacuums", VacuumsCalculator, options=VacuumsOptions)
    register("volume_profile", VolumeProfileCalculator, options=VolumeProfileOptions)
