"""The chaos suite: real node processes, a real redis-server, the Binance simulator.

Every test here carries the ``chaos`` marker (``pytest -m chaos`` runs only them,
``-m "not chaos"`` skips them). Each scenario records its figures through the
``chaos_results`` fixture; at the end of the session they are printed, and in a
full run (``MARKETCORE_CHAOS=full``) written to ``tests/chaos/results/chaos.json`` and
a table beside it, ``chaos.md`` (``MARKETCORE_CHAOS_RESULTS=path`` writes them anywhere,
in any mode).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import pytest
from chaosrun import FULL

RESULTS = Path(__file__).resolve().parent / "results" / "chaos.json"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: chaos scenarios with real processes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.chaos)


class ChaosResults:
    """Figures per scenario: ``record("owner_crash", p99_ms=…, passed=True)``."""

    def __init__(self) -> None:
        self.started = time.time()
        self.scenarios: dict[str, dict[str, Any]] = {}

    def record(self, scenario: str, **figures: Any) -> None:
        entry = self.scenarios.setdefault(scenario, {})
        entry.update(figures)
        entry["recorded"] = time.strftime("%Y-%m-%d %H:%M", time.gmtime())

    def merge_earlier(self, path: Path) -> None:
        """Keep the figures of scenarios this session did not run (a run of one module
        updates its rows of the table, not the whole table)."""
        try:
            earlier = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        if earlier.get("mode") != self.as_dict()["mode"]:
            return
        for scenario, figures in earlier.get("scenarios", {}).items():
            self.scenarios.setdefault(scenario, figures)

    def markdown(self) -> str:
        """One table row per scenario: its pass criterion, its figures, whether met."""
        lines = ["| scenario | pass criterion | figures | met |", "|---|---|---|---|"]
        for scenario, figures in self.scenarios.items():
            shown = ", ".join(f"{k} {v}" for k, v in figures.items()
                              if k not in ("criterion", "met", "recorded")
                              and not isinstance(v, dict))
            met = {True: "yes", False: "**no**"}.get(figures.get("met"), "?")
            lines.append(f"| {scenario} | {figures.get('criterion', '')} | {shown} | {met} |")
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": "chaos",
            "mode": "full" if FULL else "reduced",
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "wall_s": round(time.time() - self.started, 1),
            "scenarios": self.scenarios,
        }


_RESULTS = ChaosResults()


@pytest.fixture(scope="session")
def chaos_results() -> ChaosResults:
    return _RESULTS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _RESULTS.scenarios:
        return
    terminalreporter.section(f"chaos figures ({'full' if FULL else 'reduced'} run)")
    for scenario, figures in _RESULTS.scenarios.items():
        shown = ", ".join(f"{k}={v}" for k, v in figures.items()
                          if k not in ("criterion", "recorded")
                          and not isinstance(v, list | dict))
        terminalreporter.write_line(f"{scenario}: {shown}")
    target = os.environ.get("MARKETCORE_CHAOS_RESULTS") or (str(RESULTS) if FULL else "")
    if target:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        _RESULTS.merge_earlier(path)
        path.write_text(json.dumps(_RESULTS.as_dict(), indent=2, default=str) + "\n")
        path.with_suffix(".md").write_text(
            f"# Chaos suite figures ({_RESULTS.as_dict()['mode']} run)\n\n"
            + _RESULTS.markdown())
        terminalreporter.write_line(f"chaos figures written to {path} and its .md")


@pytest.fixture
def redis(tmp_path: Path) -> Any:
    """A fresh real redis-server (no persistence) on a free port, stopped by its pid."""
    from marketcore.testing import RedisServer, RedisUnavailable

    try:
        server = RedisServer(directory=tmp_path / "redis").start()
    except RedisUnavailable as error:
        pytest.skip(str(error))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fleet_on(tmp_path: Path) -> Any:
    """``fleet_on(server, symbols=…)``: a :class:`ChaosFleet` whose processes die with the
    test."""
    from chaosfleet import ChaosFleet

    fleets: list[ChaosFleet] = []

    def make(server: Any, **options: Any) -> ChaosFleet:
        try:
            fleet = ChaosFleet(server, tmp_path, **options)
        except FileNotFoundError as error:
            pytest.skip(str(error))
        fleets.append(fleet)
        return fleet

    try:
        yield make
    finally:
        for fleet in fleets:
            fleet.close()
