"""Shared settings of the calc_liquidity suite."""

from __future__ import annotations

import os

from hypothesis import settings

# Shared CI machines are noisy: no hypothesis deadlines (they are timing assertions).
settings.register_profile("marketcore", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "marketcore"))
