"""Prometheus metrics of a live node, scraped over HTTP while it runs."""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import attrs
import pytest
from marketcore import Cycle, Needs, hookimpl
from marketcore.testing import free_port, make_plugin_manager, run_node
from prometheus_client.parser import text_string_to_metric_families

NODE_FAMILIES = {
    "marketcore_node_info", "marketcore_node_start_time_seconds",
    "marketcore_node_heartbeat_timestamp_seconds", "marketcore_symbols_universe",
    "marketcore_symbols_assigned", "marketcore_symbols_owned", "marketcore_reports_published",
    "marketcore_reports_refused", "marketcore_events_unowned",
    "marketcore_component_restarts", "marketcore_log_records_suppressed",
    "marketcore_cycle_duration_seconds", "marketcore_cycle_skipped_ticks",
    "marketcore_calc_latency_seconds", "marketcore_calc_errors", "marketcore_calc_overruns",
    "marketcore_data_age_seconds", "marketcore_report_data_age_seconds",
    "marketcore_lease_acquisitions", "marketcore_lease_losses", "marketcore_lease_releases",
    "marketcore_lease_conflicts", "marketcore_hrw_rebalances", "marketcore_fleet_members",
    "marketcore_token_epoch", "marketcore_venue_reconnects", "marketcore_venue_resyncs",
    "marketcore_venue_gaps", "marketcore_venue_malformed_frames",
    "marketcore_venue_malformed_frames_by_kind", "marketcore_venue_snapshot_weight_used",
    "marketcore_venue_frames", "marketcore_venue_events", "marketcore_sink_publish_seconds",
    "marketcore_sink_errors", "marketcore_component_stat",
    "marketcore_process_resident_memory_bytes",
}
"""Family names as the text parser gives them (counters without ``_total``)."""


def profile_text(port: int, node_id: str = "metrics-node", sink: str = "flaky") -> str:
    return f"""
        [node]
        id = "{node_id}"
        symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
        [venue]
        use = "synthetic"
        seed = 5
        [pipeline.fast]
        period_ms = 100
        [pipeline.slow]
        period_ms = 500
        [[sink]]
        use = "{sink}"
        [metrics]
        bind = "127.0.0.1:{port}"
    """


# -- in-test components: a sink that keeps counters and fails now and then; a slow
# -- calculator, so both cycles have one ------------------------------------------------


@attrs.define
class FlakyStats:
    batches: int = 0
    written: int = 0
    last_batch_ms: float = 0.0
    note: str = "not a number: never exported"


class FlakySink:
    """Every third publish raises; the others count what they got."""

    name = "flaky"

    def __init__(self, _options: object) -> None:
        self.stats = FlakyStats()
        self.calls = 0

    async def start(self) -> None:
        pass

    async def publish(self, batch):
        self.calls += 1
        if self.calls % 3 == 0:
            raise ConnectionError("the flaky sink's backend went away")
        self.stats.batches += 1
        self.stats.written += len(batch)
        return ()

    async def close(self) -> None:
        pass


class SpreadTicks:
    name = "spread_ticks"
    cycle = Cycle.SLOW
    sections = ("spread_ticks",)
    needs = Needs()

    def compute(self, state, ctx):
        bid, ask = state.book.best_bid(), state.book.best_ask()
        return {"spread_ticks": {"seen": bid is not None and ask is not None}}


class TestParts:
    @hookimpl
    def marketcore_register_sinks(self, register):
        register("flaky", FlakySink)

    @hookimpl
    def marketcore_register_calculators(self, register):
        register("spread_ticks", lambda options: SpreadTicks())


# -- scraping --------------------------------------------------------------------------


def scrape(port: int, path: str = "/metrics", method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """``{sample name: [(labels, value)]}`` and, under ``families``, the family names."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        found.setdefault("families", []).append(({"name": family.name}, 0.0))
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(found, name: str, **labels: str) -> float:
    matching = [v for sample_labels, v in found.get(name, [])
                if all(sample_labels.get(k) == want for k, want in labels.items())]
    assert len(matching) == 1, f"{name}{labels}: {found.get(name)}"
    return matching[0]


class Scraper(threading.Thread):
    """Scrapes a node from a thread (the node runs in the main thread, as it needs its
    signal handlers) until ``ready(text)`` holds; keeps the last good scrape and the
    answers to a few wrong requests."""

    def __init__(self, port: int, ready: Callable[[dict], bool]) -> None:
        super().__init__(daemon=True)
        self.port, self.ready = port, ready
        self.text = ""
        self.wrong: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, body = scrape(self.port)
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200:
                self.text = body.decode()
                if self.ready(samples(self.text)):
                    self.wrong = {"POST": scrape(self.port, method="POST")[0],
                                  "/nope": scrape(self.port, "/nope")[0],
                                  "HEAD": scrape(self.port, method="HEAD")[0]}
                    return
            time.sleep(0.1)


def busy(found) -> bool:
    """Both cycles ran, reports went out, and the flaky sink failed at least once."""
    try:
        return (value(found, "marketcore_reports_published_total") > 0
                and value(found, "marketcore_calc_latency_seconds_count",
                          cycle="slow", calculator="spread_ticks") > 0
                and value(found, "marketcore_sink_errors_total", sink="flaky") > 0
                and len(found.get("marketcore_data_age_seconds", [])) == 3)
    except AssertionError:
        return False


def run_scraped(port: int, profile: str, duration_s: float = 6.0):
    scraper = Scraper(port, busy)
    scraper.start()
    started = time.time()
    info = run_node(profile, duration_s=duration_s,
                    plugin_manager=make_plugin_manager(("test-parts", TestParts())))
    ended = time.time()
    scraper.stop.set()
    scraper.join(timeout=10)
    return info, scraper, started, ended


@pytest.fixture(scope="module")
def live_scrape():
    port = free_port()
    info, scraper, started, ended = run_scraped(port, profile_text(port))
    assert scraper.text, "the node never answered a scrape"
    return info, samples(scraper.text), scraper, started, ended, port


# -- tests -----------------------------------------------------------------------------


def test_every_metric_family_is_exported(live_scrape):
    _info, found, *_ = live_scrape
    families = {labels["name"] for labels, _ in found["families"]}
    assert families >= NODE_FAMILIES, NODE_FAMILIES - families
    assert all(name.startswith("marketcore_") for name in families)


def test_every_node_sample_is_labelled_with_the_node(live_scrape):
    _info, found, *_ = live_scrape
    for name, rows in found.items():
        if name == "families" or name.startswith("marketcore_process_"):
            continue
        assert rows and all(labels["node"] == "metrics-node" for labels, _ in rows), name


def test_values_are_those_of_the_running_node(live_scrape):
    info, found, scraper, started, ended, _port = live_scrape
    assert busy(found), scraper.text
    assert value(found, "marketcore_node_info", venue="synthetic", coordinator="local",
                 mode="live") == 1
    assert started <= value(found, "marketcore_node_heartbeat_timestamp_seconds") <= ended
    assert started - 5 <= value(found, "marketcore_node_start_time_seconds") <= ended
    assert value(found, "marketcore_symbols_universe") == 3
    assert value(found, "marketcore_symbols_owned") == 3
    assert value(found, "marketcore_symbols_assigned") == 3
    assert value(found, "marketcore_lease_acquisitions_total", coordinator="local") == 3
    assert value(found, "marketcore_lease_conflicts_total") == 0
    assert value(found, "marketcore_hrw_rebalances_total") == 0
    published = value(found, "marketcore_reports_published_total")
    assert 0 < published <= info.stats.reports_published
    for cycle, calculator in (("fast", "health"), ("slow", "spread_ticks")):
        count = value(found, "marketcore_calc_latency_seconds_count", cycle=cycle,
                      calculator=calculator)
        assert count > 0
        assert value(found, "marketcore_calc_latency_seconds_sum", cycle=cycle,
                     calculator=calculator) > 0
        assert value(found, "marketcore_calc_errors_total", cycle=cycle,
                     calculator=calculator) == 0
    fast_runs = value(found, "marketcore_cycle_duration_seconds_count", cycle="fast")
    assert fast_runs > 0
    # every fast cycle published one report per owned symbol (3)
    assert value(found, "marketcore_report_data_age_seconds_count") <= 3 * fast_runs
    for labels, age in found["marketcore_data_age_seconds"]:
        assert labels["symbol"] in {"BTCUSDT", "ETHUSDT", "SOLUSDT"}
        assert 0 <= age < 60


def test_histograms_are_cumulative_and_end_at_their_count(live_scrape):
    _info, found, *_ = live_scrape
    for name in ("marketcore_calc_latency_seconds", "marketcore_cycle_duration_seconds",
                 "marketcore_sink_publish_seconds", "marketcore_report_data_age_seconds"):
        series: dict[tuple, list[tuple[float, float]]] = {}
        for labels, count in found[f"{name}_bucket"]:
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            series.setdefault(key, []).append((float(labels["le"]), count))
        assert series, name
        for key, buckets in series.items():
            buckets.sort()
            counts = [count for _, count in buckets]
            assert counts == sorted(counts), (name, key)
            assert buckets[-1][0] == float("inf")
            total = value(found, f"{name}_count", **dict(key))
            assert counts[-1] == total, (name, key)


def test_sink_latency_errors_and_component_counters(live_scrape):
    _info, found, *_ = live_scrape
    publishes = value(found, "marketcore_sink_publish_seconds_count", sink="flaky")
    errors = value(found, "marketcore_sink_errors_total", sink="flaky")
    batches = value(found, "marketcore_component_stat", component="sink.flaky", stat="batches")
    assert errors > 0 and batches > 0
    assert batches + errors == publishes  # every publish either counted a batch or failed
    assert value(found, "marketcore_component_stat", component="sink.flaky",
                 stat="written") > 0
    stats = {labels["stat"] for labels, _ in found["marketcore_component_stat"]}
    assert "note" not in stats  # a string field is not a counter


def test_other_paths_and_methods_are_refused(live_scrape):
    _info, _found, scraper, *_ = live_scrape
    assert scraper.wrong == {"POST": 405, "/nope": 404, "HEAD": 200}


def test_the_endpoint_closes_with_the_node(live_scrape):
    *_, port = live_scrape
    with pytest.raises(OSError):
        scrape(port)


def test_two_nodes_in_one_process_each_export_their_own(live_scrape):
    """A second node in the same process: its own registry, its own counters."""
    first_info, *_ = live_scrape
    port = free_port()
    info, scraper, *_ = run_scraped(port, profile_text(port, node_id="second-node"), 5.0)
    found = samples(scraper.text)
    assert {labels["node"] for labels, _ in found["marketcore_reports_published_total"]} \
        == {"second-node"}
    assert value(found, "marketcore_reports_published_total") <= info.stats.reports_published
    assert first_info.stats is not info.stats


def test_a_taken_port_is_logged_once_and_the_node_runs_on(caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.INFO):
            info = run_node(profile_text(port, sink="stdout").replace(
                'use = "stdout"', 'use = "jsonl"\npath = "/dev/null"'), duration_s=1.5,
                plugin_manager=make_plugin_manager(("test-parts", TestParts())))
    assert info.stats.reports_published > 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert f"127.0.0.1:{port}" in message and "without metrics" in message
    assert errors[0].exc_info is None  # one clear line, no traceback
