"""marketcore calculators for order-book anomalies: spoofing, icebergs, flash-crash risk.

Registers ``anomalies`` (slow cycle, writes the ``anomalies`` section) and
``anomaly_tracker`` (fast cycle, writes nothing: it observes the book and the trades
for ``anomalies`` at every fast cycle). See the README for the rules and options.
"""

from __future__ import annotations

from marketcore import hookimpl
from marketcore.components import RegisterCalculator

from marketcore_calc_anomalies.calculators import AnomaliesCalculator, AnomalyTracker
from marketcore_calc_anomalies.options import AnomaliesOptions, TrackerOptions
from marketcore_calc_anomalies.tracker import Observer

__all__ = [
    "AnomaliesCalculator",
    "AnomaliesOptions",
    "AnomalyTracker",
    "Observer",
    "TrackerOptions",
    "marketcore_register_calculators",
]


@hookimpl
def marketcore_register_calculators(register: RegisterCalculator) -> None:
    register("anomalies", AnomaliesCalculator, options=AnomaliesOptions)
    register("anomaly_tracker", AnomalyTracker, options=TrackerOptions)
