"""Registration, options from a profile, the commands."""

from __future__ import annotations

import json

import attrs
import marketcore_venue_binance
import pytest
from marketcore.cli import CommandRegistrar, main
from marketcore.components import Venue
from marketcore.testing import make_plugin_manager
from marketcore_venue_binance import BinanceOptions, BinanceVenue
from marketcore_venue_binance.options import depth_weight


def test_registers_the_binance_venue_with_its_options():
    pm = make_plugin_manager(("venue-binance", marketcore_venue_binance))
    registration = pm.registries.venues["binance"]
    assert registration.options is BinanceOptions
    venue = registration.factory(BinanceOptions())
    assert isinstance(venue, Venue) and venue.name == "binance"


def test_registers_record_and_binance_sim_commands():
    registrar = CommandRegistrar(taken={"run", "replay", "validate", "init", "plugins"})
    marketcore_venue_binance.marketcore_register_commands(cli=registrar)
    assert set(registrar.commands) == {"record", "binance-sim"}


def test_defaults_are_the_specs_numbers():
    options = BinanceOptions()
    assert options.market == "spot"
    assert options.streams == ("depth@100ms", "trade", "ticker")
    assert options.max_streams_per_connection == 1024
    assert options.messages_per_second <= 5
    assert options.snapshot_limit == 1000
    assert options.snapshot_weight_per_minute < 6000
    assert options.rotate_after_s < 24 * 3600
    assert options.ws_urls()[0] == "wss://stream.binance.com:9443"
    assert options.rest_urls()[0] == "https://api.binance.com"
    assert BinanceOptions(market="usdm").ws_urls() == ("wss://fstream.binance.com",)


def test_depth_weights():
    assert [depth_weight(n) for n in (5, 100, 500, 1000, 5000)] == [5, 5, 25, 50, 250]
    assert [depth_weight(n, "usdm") for n in (5, 50, 100, 500, 1000)] == [2, 2, 5, 10, 20]


@pytest.mark.parametrize("changes, message", [
    ({"market": "coinm"}, "market"),
    ({"streams": ("depth@100ms", "kline_1m")}, "streams"),
    ({"streams": ("depth", "depth@100ms")}, "at most one depth stream"),
    ({"ws_endpoints": ("https://x",)}, "ws_endpoints"),
    ({"snapshot_limit": 300}, "snapshot_limit"),
    ({"market": "usdm", "snapshot_limit": 5000}, "snapshot_limit"),
    ({"max_streams_per_connection": 2000}, "max_streams_per_connection"),
    ({"messages_per_second": 6.0}, "messages_per_second"),
    ({"snapshot_weight_per_minute": 7000}, "snapshot_weight_per_minute"),
    ({"max_streams_per_connection": 2}, "max_streams_per_connection"),
])
def test_bad_options_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        attrs.evolve(BinanceOptions(), **changes)


def test_validate_reports_a_bad_venue_option_precisely(tmp_path, capsys):
    profile = tmp_path / "p.toml"
    profile.write_text('[node]\nsymbols = ["BTCUSDT"]\n[venue]\nuse = "binance"\n'
                       'snapshot_limit = "lots"\n')
    assert main(["validate", str(profile)]) == 2
    err = capsys.readouterr().err
    assert "venue.snapshot_limit" in err


def test_validate_accepts_a_full_profile(tmp_path, capsys):
    profile = tmp_path / "p.toml"
    profile.write_text('[node]\nsymbols = ["BTCUSDT"]\n[venue]\nuse = "binance"\n'
                       'market = "usdm"\nstreams = ["depth@0ms", "aggTrade"]\n'
                       'ws_endpoints = ["ws://127.0.0.1:9"]\nsnapshot_limit = 500\n')
    assert main(["validate", str(profile)]) == 0
    assert "venue binance" in capsys.readouterr().out


def test_the_factory_does_no_io():
    venue = BinanceVenue(BinanceOptions(simulate=("/does/not/exist.gz",)))
    venue.subscribe(["btcusdt", "ETHUSDT", "BTCUSDT"])
    assert venue.symbols == ("BTCUSDT", "ETHUSDT")
    venue.unsubscribe(["ethusdt"])
    assert venue.symbols == ("BTCUSDT",)
    assert json.dumps(venue.stats.as_dict())  # counters exist before running


def test_replay_without_recordings_is_a_clear_error():
    with pytest.raises(ValueError, match="--recording"):
        BinanceVenue().replay([], ["BTCUSDT"])
