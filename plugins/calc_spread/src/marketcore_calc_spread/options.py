"""Options of the spread and depth calculators, read from ``[calculators.<name>]``.

Defaults are the numbers of the specification (SPEC §6). Validation happens when
the profile is checked, so a bad value stops ``marketcore validate`` with the key
path and the reason, never a running node.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import attrs

__all__ = ["DepthOptions", "SpreadOptions"]

MAX_BANDS = 16
"""More bands than this would make the depth section a table nobody reads."""


@attrs.frozen
class SpreadOptions:
    """``spread`` has no knobs: its fields are fixed formulas of the best bid and ask.

    The class exists so that a misspelt key under ``[calculators.spread]`` is an
    error instead of being ignored.
    """


def _bands(value: Iterable[Any]) -> tuple[float, ...]:
    """Bands as sorted unique floats (TOML gives ints or floats, Python may give a list)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"bands_bps must be a list of numbers, got {value!r}")
    bands = []
    for bps in value:
        if isinstance(bps, bool) or not isinstance(bps, int | float):
            raise TypeError(f"bands_bps must hold numbers, got {bps!r}")
        bands.append(float(bps))
    return tuple(sorted(set(bands)))


def _refuse(attribute: attrs.Attribute, expected: str, value: Any) -> ValueError:
    """The error attrs' own validators raise, which the profile loader turns into
    ``calculators.<name>.<key>: expected …, found …``."""
    return ValueError(f"{attribute.name} must be {expected}, got {value!r}", attribute,
                      expected, value)


def _check_bands(_instance: Any, attribute: attrs.Attribute, bands: tuple[float, ...]) -> None:
    if not bands:
        raise _refuse(attribute, "at least one band", list(bands))
    if len(bands) > MAX_BANDS:
        raise _refuse(attribute, f"at most {MAX_BANDS} bands", list(bands))
    for bps in bands:
        if not (math.isfinite(bps) and 0.0 < bps < 1e4):
            raise _refuse(attribute, "bands > 0 and < 10000 bps", list(bands))


def _check_top_n(_instance: Any, attribute: attrs.Attribute, top_n: int) -> None:
    if isinstance(top_n, bool) or not isinstance(top_n, int) or not 0 <= top_n <= 1000:
        raise _refuse(attribute, "an integer from 0 to 1000", top_n)


@attrs.frozen
class DepthOptions:
    """Options of ``depth``."""

    bands_bps: tuple[float, ...] = attrs.field(
        default=(10.0, 25.0, 50.0, 100.0), converter=_bands, validator=_check_bands)
    """Half-widths of the bands around the mid, in basis points. The book keeps running
    sums for its tracked bands (10, 25, 50, 100 unless the host says otherwise); other
    bands are summed by walking their levels on each call."""
    top_n: int = attrs.field(default=20, validator=_check_top_n)
    """Levels per side listed in ``top_bids`` / ``top_asks`` (0: none)."""
