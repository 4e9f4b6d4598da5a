"""Shared settings of this plugin's tests.

marketcore's pytest plugin (``marketcore.testing``) is loaded automatically: its
fixtures (``make_state``, ``run_cycle``, ``binance_recording``, ``redis_server``, …)
need no import.
"""

from __future__ import annotations

import os

from hypothesis import settings

# Shared CI machines are noisy: no hypothesis deadlines (they are timing assertions).
settings.register_profile("marketcore", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "marketcore"))
