"""The default profile this venue offers: the real client against the local simulator.

``marketcore run`` without a profile (``make run``) then runs the real Binance client
code path (combined streams, REST snapshot, book sync) against the bundled exchange
simulator replaying a real BTCUSDT recording in a loop: no internet, no Redis.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

DEMO_RECORDING = "binance-spot-btcusdt-20240808.gz"


def demo_recording() -> Path | None:
    """The bundled recording: inside the wheel, or in the repository's examples/data."""
    packaged = resources.files("marketcore_venue_binance").joinpath("data", DEMO_RECORDING)
    if packaged.is_file():
        return Path(str(packaged))
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "examples" / "data" / DEMO_RECORDING
        if candidate.is_file():
            return candidate
    return None


def demo_profile() -> str | None:
    """TOML of the demo profile, or ``None`` when the recording is not installed."""
    recording = demo_recording()
    if recording is None:
        return None
    return f"""\
# The embedded default profile of marketcore-venue-binance: the real Binance client
# against the bundled local exchange simulator, which replays a real BTCUSDT recording
# (2024-08-08, see NOTICE.md beside it) in a loop. No internet, no Redis.
[node]
symbols = ["BTCUSDT"]

[venue]
use = "binance"
simulate = [{json.dumps(str(recording))}]
simulate_speed = 1.0

[coordinator]
use = "local"

[[sink]]
use = "stdout"

# the read API and live web view: http://127.0.0.1:8080/
[[sink]]
use = "http"
required = false

# Prometheus metrics: `curl 127.0.0.1:9101/metrics` while it runs
[metrics]
bind = "127.0.0.1:9101"
"""
