"""Decimal price strings as integer ticks, and the per-clone price map.

The simulator never turns a price into a float: Binance sends decimal strings and
a replay must send the same strings back. A recorded symbol's prices become
integer *ticks* (the smallest decimal step any of its prices uses); formatting a
tick count gives back the recorded string exactly (same number of decimals).

A clone multiplies prices by ``num / den`` and rounds half up to the same tick.
For a factor >= 1 that map is strictly increasing, so two different recorded
prices never become one clone price and a clone's book is the recorded book
with relabelled prices: snapshots and diffs stay consistent.
"""

from __future__ import annotations

import attrs

__all__ = ["ClonePrices", "PriceScale", "decimals_of", "significant_decimals"]


def decimals_of(text: str) -> int:
    """Digits after the decimal point as written: ``"61837.63000000"`` → 8."""
    _, dot, frac = text.partition(".")
    return len(frac) if dot else 0


def significant_decimals(text: str) -> int:
    """Digits after the point that are not trailing zeros: ``"61837.63000000"`` → 2."""
    _, dot, frac = text.partition(".")
    return len(frac.rstrip("0")) if dot else 0


@attrs.frozen(slots=True)
class PriceScale:
    """How one recorded symbol writes prices: ``decimals`` written, ``tick_decimals`` used."""

    decimals: int
    tick_decimals: int

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.tick_decimals <= self.decimals:
            raise ValueError(f"tick decimals {self.tick_decimals} not within 0..{self.decimals}")

    @property
    def tick_size(self) -> str:
        """The tick as Binance writes a filter value: ``"0.01000000"``."""
        return self.format(1)

    def ticks(self, text: str) -> int:
        """``"61837.63000000"`` → 6183763 (for 2 tick decimals); exact, no float."""
        whole, _, frac = text.partition(".")
        frac = frac.rstrip("0")
        if len(frac) > self.tick_decimals:
            raise ValueError(f"price {text!r} is finer than the tick 1e-{self.tick_decimals}")
        if not whole.isdigit() or (frac and not frac.isdigit()):
            raise ValueError(f"not a decimal price: {text!r}")
        return int(whole + frac.ljust(self.tick_decimals, "0"))

    def format(self, ticks: int) -> str:
        """The inverse of :meth:`ticks`, written with :attr:`decimals` digits."""
        if self.tick_decimals:
            whole, frac = divmod(ticks, 10 ** self.tick_decimals)
            text = f"{whole}.{frac:0{self.tick_decimals}d}"
            return text + "0" * (self.decimals - self.tick_decimals)
        return f"{ticks}.{'0' * self.decimals}" if self.decimals else str(ticks)

    def formatter(self) -> str:
        """A ``%``-format string turning ``divmod(ticks, 10**tick_decimals)`` into text.

        Used on the hot path (one clone price per level per event): a ``%`` format
        of a divmod pair is the cheapest exact way to write a tick count.
        """
        zeros = "0" * (self.decimals - self.tick_decimals)
        if self.tick_decimals:
            return f"%d.%0{self.tick_decimals}d{zeros}"
        return f"%d.{zeros}" if self.decimals else "%d"


class ClonePrices:
    """Maps a recorded symbol's tick counts to one clone's price strings.

    ``factor = num / den`` (>= 1); ``ClonePrices(scale, 1, 1)`` is the identity.
    """

    __slots__ = (
        "_den",
        "_den2",
        "_fmt",
        "_num2",
        "_tick_div",
        "den",
        "identity",
        "num",
        "scale",
    )

    def __init__(self, scale: PriceScale, num: int, den: int) -> None:
        if num < den or den <= 0:
            raise ValueError(f"clone price factor {num}/{den} must be >= 1")
        self.scale = scale
        self.num = num
        self.den = den
        self.identity = num == den
        self._num2 = 2 * num
        self._den = den
        self._den2 = 2 * den
        self._fmt = scale.formatter()
        self._tick_div = 10 ** scale.tick_decimals if scale.tick_decimals else 0

    @property
    def factor(self) -> float:
        return self.num / self.den

    def ticks(self, ticks: int) -> int:
        """The clone's tick count for a recorded tick count (round half up)."""
        return (ticks * self._num2 + self._den) // self._den2

    def text(self, ticks: int) -> str:
        """The clone's price string for a recorded tick count."""
        mapped = (ticks * self._num2 + self._den) // self._den2
        if self._tick_div:
            return self._fmt % divmod(mapped, self._tick_div)
        return self._fmt % mapped

    def levels(self, ticks: tuple[int, ...], qtys: tuple[str, ...]) -> str:
        """One side of a depth event as JSON array items: ``["p","q"],["p","q"]``.

        The hot path of cloning: one divmod and one format per level.
        """
        num2, den, den2, fmt = self._num2, self._den, self._den2, self._fmt
        div = self._tick_div
        if div:
            return ",".join([
                f'["{fmt % divmod((t * num2 + den) // den2, div)}","{q}"]'
                for t, q in zip(ticks, qtys, strict=True)])
        return ",".join([f'["{fmt % ((t * num2 + den) // den2)}","{q}"]'
                         for t, q in zip(ticks, qtys, strict=True)])

    def scale_float(self, value: float) -> float:
        """A derived (non-tick) price figure such as a VWAP, scaled by the factor."""
        return value * self.num / self.den
