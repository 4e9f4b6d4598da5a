"""How much each chaos scenario does, and where its figures go.

``MARKETCORE_CHAOS=full`` (``make chaos``) runs the full counts of the issue;
anything else (``make test``) a reduced count of every scenario, so the whole CI
stays within its time. Safety checks (no stale, late or dual write accepted,
tokens monotonic) are the same in both; liveness bounds are the pass column's
in the full run and generous in the reduced one, which shares a loaded machine.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TypeVar

from marketcore_coord_redis.testing import wait_for  # the chaos scenarios poll with it

__all__ = ["FULL", "counts", "percentile", "wait_for"]

FULL = os.environ.get("MARKETCORE_CHAOS", "").strip().lower() == "full"

T = TypeVar("T")


def counts(reduced: T, full: T) -> T:
    """The reduced value in CI, the full one under ``MARKETCORE_CHAOS=full``."""
    return full if FULL else reduced


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: a reported p99 is a measured value, never interpolated."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
