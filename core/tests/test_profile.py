"""Profiles: loading, environment overrides, precise errors, init, validate."""

from __future__ import annotations

import pytest
from marketcore import ProfileError, load_profile
from marketcore.cli import main
from marketcore.profile import env_overrides, load_default_profile, parse_profile

GOOD = """
[node]
symbols = ["BTCUSDT", "ETHUSDT"]

[venue]
use = "synthetic"
"""

# (name, profile text, environment, the one error line's expected content)
BROKEN = [
    ("bad TOML", '[node]\nsymbols = ["BTCUSDT"\n', {},
     "expected valid TOML, found"),
    ("unknown key", GOOD + "\n[metrics]\nbind = \"127.0.0.1:9101\"\nport = 9101\n", {},
     "metrics.port: expected one of the keys bind, found unknown key 'port'"),
    ("wrong type", GOOD + "\n[pipeline.fast]\nperiod_ms = \"fast\"\n", {},
     "pipeline.fast.period_ms: expected an integer, found 'fast'"),
    ("unknown calculator", GOOD + "\n[pipeline.fast]\nperiod_ms = 250\ncalculators = [\"spred\"]\n", {},
     "pipeline.fast.calculators[0]: expected an installed calculator (health), found 'spred'"),
    ("period out of range", GOOD + "\n[pipeline.fast]\nperiod_ms = 50\n", {},
     "pipeline.fast.period_ms: expected milliseconds from 100 to 1000, found 50"),
    ("missing section", '[node]\nsymbols = ["BTCUSDT"]\n', {},
     'venue: expected a [venue] table with use = "<venue>", found no such section'),
    ("bad env override", GOOD, {"MARKETCORE_PIPELINE__SLOW__PERIOD_MS": "soon"},
     "environment MARKETCORE_PIPELINE__SLOW__PERIOD_MS: pipeline.slow.period_ms: expected an integer, found 'soon'"),
    ("duplicate sink", GOOD + '\n[[sink]]\nuse = "stdout"\n\n[[sink]]\nuse = "stdout"\n', {},
     "sink[1]: expected a sink name used once (sink[0] is already 'stdout'"),
    ("unknown venue", '[node]\nsymbols = ["BTCUSDT"]\n[venue]\nuse = "binanse"\n', {},
     "venue.use: expected an installed venue (synthetic), found 'binanse'"),
    ("bad plugin option", GOOD + "seed = 1.5\n", {},
     "venue.seed: expected an integer, found 1.5"),
    ("calculator in both cycles", GOOD + '\n[pipeline.fast]\nperiod_ms = 250\ncalculators = ["health"]\n'
     '\n[pipeline.slow]\nperiod_ms = 2000\ncalculators = ["health"]\n', {},
     "pipeline.slow.calculators[0]: expected each calculator listed once (it is already in pipeline.fast)"),
    ("slow faster than fast", GOOD + "\n[pipeline.fast]\nperiod_ms = 700\n[pipeline.slow]\nperiod_ms = 600\n", {},
     "pipeline.slow.period_ms: expected at least the fast period (700), found 600"),
    ("budget beyond period", GOOD + "\n[pipeline.fast]\nbudget_ms = 300\n", {},
     "pipeline.fast.budget_ms: expected milliseconds > 0 and <= period_ms (250), found 300"),
    ("bad symbol", '[node]\nsymbols = ["BTC/USDT"]\n[venue]\nuse = "synthetic"\n', {},
     "node.symbols: expected symbols of 1–32 letters and digits, found 'BTC/USDT'"),
    ("sink option of wrong kind", GOOD + '\n[[sink]]\nuse = "stdout"\nformat = "xml"\n', {},
     "sink[0].format: expected one of 'table', 'json', found 'xml'"),
    ("missing required option", GOOD + '\n[[sink]]\nuse = "jsonl"\n', {},
     "sink[0].path: expected this key to be set, found nothing"),
]


@pytest.mark.parametrize(("text", "environ", "expected"),
                         [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_validate_prints_one_precise_line_and_fails(write_profile, monkeypatch, capsys,
                                                    text, environ, expected):
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    path = write_profile(text)
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, captured.err
    assert expected in errors[0]
    if not expected.startswith("environment"):
        assert errors[0].startswith(f"error: {path}")
    assert captured.out == ""


def test_a_bad_profile_never_starts_a_node(write_profile, capsys):
    path = write_profile(GOOD + "\n[pipeline.fast]\nperiod_ms = 5\n")
    assert main(["run", str(path), "--duration", "1", "--json"]) == 2
    assert capsys.readouterr().out == ""  # not one report


def validate_errors(path, capsys) -> list[str]:
    assert main(["validate", str(path)]) == 2
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def test_every_problem_is_listed(write_profile, capsys):
    components = """
        [venue]
        use = "synthetic"
        levels = "many"
        [[sink]]
        use = "kafka"
    """
    # structure errors stop before components are looked up
    errors = validate_errors(write_profile('[node]\nsymbols = ["A"]\ncolour = "red"\n' + components), capsys)
    assert len(errors) == 1 and "node.colour" in errors[0]
    errors = validate_errors(write_profile('[node]\nsymbols = ["A"]\n' + components, "b.toml"), capsys)
    assert [e.split(": ")[2] for e in errors] == ["venue.levels", "sink[0].use"]


def test_good_profile_validates(write_profile, capsys):
    assert main(["validate", str(write_profile(GOOD))]) == 0
    out = capsys.readouterr().out
    assert "ok — venue synthetic, coordinator local, sinks stdout" in out
    assert "fast [health] every 250 ms" in out


def test_defaults_fill_what_the_file_leaves_out(write_profile):
    profile = load_profile(write_profile(GOOD), environ={})
    assert profile.node.symbols == ("BTCUSDT", "ETHUSDT")
    assert profile.coordinator.use == "local"
    assert profile.pipeline.fast.period_ms == 250
    assert profile.pipeline.slow.period_ms == 2000
    assert profile.pipeline.fast.calculators is None
    assert [s.use for s in profile.sink] == ["stdout"]
    assert profile.venue.options == {}


def test_environment_overrides_every_level(write_profile):
    environ = {
        "MARKETCORE_NODE__ID": "node-7",
        "MARKETCORE_NODE__SYMBOLS": "btcusdt, solusdt",
        "MARKETCORE_PIPELINE__FAST__PERIOD_MS": "500",
        "MARKETCORE_PIPELINE__SLOW__CALCULATORS": '["health"]',
        "MARKETCORE_VENUE__SEED": "42",
        "MARKETCORE_SINK__0__FORMAT": "json",
        "MARKETCORE_LOAD_PLUGINS": "ignored: not an override",
    }
    profile = load_profile(write_profile(GOOD + '\n[[sink]]\nuse = "stdout"\n'), environ=environ)
    assert profile.node.id == "node-7"
    assert profile.node.symbols == ("BTCUSDT", "SOLUSDT")
    assert profile.pipeline.fast.period_ms == 500
    assert profile.pipeline.slow.calculators == ("health",)
    assert profile.venue.options == {"seed": 42}
    assert profile.sink[0].options == {"format": "json"}
    assert profile.env_paths["node.id"] == "MARKETCORE_NODE__ID"


def test_env_values_are_toml_when_they_parse():
    found = env_overrides({"MARKETCORE_A__B": "250", "MARKETCORE_A__C": "true",
                           "MARKETCORE_A__D": "plain text", "MARKETCORE_PLAIN": "x"})
    assert found == {("a", "b"): ("MARKETCORE_A__B", 250), ("a", "c"): ("MARKETCORE_A__C", True),
                     ("a", "d"): ("MARKETCORE_A__D", "plain text")}


def test_env_override_into_a_missing_array_entry_is_an_error(write_profile):
    with pytest.raises(ProfileError, match=r"environment MARKETCORE_SINK__3__FORMAT: sink\[3\].format"):
        load_profile(write_profile(GOOD), environ={"MARKETCORE_SINK__3__FORMAT": "json"})


def test_strict_types_reject_silent_coercion():
    with pytest.raises(ProfileError, match=r"node\.symbols: expected a list of strings"):
        parse_profile('[node]\nsymbols = [1]\n[venue]\nuse = "synthetic"\n', "p.toml", {})
    with pytest.raises(ProfileError, match=r"pipeline\.fast\.period_ms: expected an integer, found true"):
        parse_profile(GOOD + "[pipeline.fast]\nperiod_ms = true\n", "p.toml", {})


def test_missing_file_is_one_line(capsys, tmp_path):
    assert main(["validate", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err
    assert "nope.toml: expected a readable TOML file, found No such file or directory" in err


def test_embedded_default_profile_is_valid(capsys):
    profile = load_default_profile(environ={})
    assert profile.venue.use == "synthetic"
    assert profile.coordinator.use == "local"
    assert len(profile.node.symbols) >= 2


def test_init_writes_a_profile_that_validates(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    assert main(["init", str(path), "--symbols", "BTCUSDT,ETHUSDT,SOLUSDT"]) == 0
    text = path.read_text()
    assert text.startswith("# A marketcore profile.")
    assert main(["validate", str(path)]) == 0
    profile = load_profile(path, environ={})
    assert profile.node.symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    assert main(["init", str(path)]) == 2  # never overwrites without --force
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["init", str(path), "--force", "--venue", "nowhere"]) == 2


def test_profile_round_trips_through_to_dict(write_profile):
    import tomli_w

    profile = load_profile(write_profile(GOOD + '\n[[sink]]\nuse = "jsonl"\npath = "out.jsonl"\n'),
                           environ={})
    again = parse_profile(tomli_w.dumps(profile.to_dict()), "again.toml", {})
    assert again.node == profile.node
    assert again.venue == profile.venue
    assert again.sink == profile.sink
    assert again.pipeline == profile.pipeline
