"""Options, registration and profile validation: precise errors, secrets only from the environment."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from marketcore.cli import main as marketcore_main
from marketcore.profile import ProfileError, structure_options
from marketcore.testing import make_plugin_manager
from marketcore_coord_redis import (
    CoordinatorOptions,
    KeyLayout,
    RedisCoordinator,
    RedisSink,
    SinkOptions,
)
from marketcore_coord_redis.options import check_secret_source
from marketcore_coord_redis.transport import redacted_url

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "cluster.toml"


def problems(data: dict, cls: type = CoordinatorOptions) -> str:
    with pytest.raises(ProfileError) as error:
        structure_options(data, cls, source="p.toml", path="coordinator")
    return str(error.value)


def test_defaults_are_specs_numbers():
    options = CoordinatorOptions()
    assert (options.lease_ttl_ms, options.sticky_pct, options.min_hold_ms) == (2000, 0.02, 2000)
    assert (options.node_ttl_ms, options.heartbeat_ms, options.load_factor) == (5000, 1000, 1.25)
    assert options.socket_timeout_ms <= options.lease_ttl_ms / 3
    assert options.member_timeout_ms == options.lease_ttl_ms
    assert SinkOptions().ttl_s == 300


@pytest.mark.parametrize(("data", "message"), [
    ({"lease_ttl_ms": 50}, "coordinator.lease_ttl_ms: expected a number from 100 to 600000, found 50"),
    ({"socket_timeout_ms": 900}, "coordinator.socket_timeout_ms: expected at most lease_ttl_ms / 3 = 666, found 900"),
    ({"mode": "cluster", "key_layout": "seed"}, "coordinator.key_layout: expected \"marketcore\" in cluster mode"),
    ({"url": "http://example"}, "coordinator.url: expected a URL \"redis://host:port/db\""),
    ({"mode": "sentinel"}, "coordinator.sentinels: expected at least one \"host:port\""),
    ({"sentinels": ["nope"]}, "coordinator.sentinels: expected addresses \"host:port\", found 'nope'"),
    ({"key_prefix": "a{b"}, "coordinator.key_prefix: expected a non-empty key prefix"),
    ({"mode": "replicated"}, "coordinator.mode: expected one of 'standalone', 'sentinel', 'cluster'"),
    ({"lease_ttl_ms": "2s"}, "coordinator.lease_ttl_ms: expected an integer, found '2s'"),
    ({"node_timeout_ms": 100}, "coordinator.node_timeout_ms: expected from 1.5 × heartbeat_ms"),
    ({"leese_ttl_ms": 1}, "coordinator.leese_ttl_ms: expected one of the keys url, mode"),
])
def test_bad_options_give_precise_errors(data, message):
    assert message in problems(data)


def test_the_sink_rejects_the_seed_layout_in_cluster_mode_too():
    assert "key_layout" in problems({"mode": "cluster", "key_layout": "seed"}, SinkOptions)


def test_both_components_are_registered_and_factories_do_no_io():
    pm = make_plugin_manager(entry_points=True)
    coordinator = pm.registries.coordinators["redis"]
    sink = pm.registries.sinks["redis"]
    assert coordinator.options is CoordinatorOptions and sink.options is SinkOptions
    # nothing listens on port 1: building must not try to connect
    built = coordinator.factory(CoordinatorOptions(url="redis://127.0.0.1:1/0"))
    assert isinstance(built, RedisCoordinator) and built.name == "redis"
    assert isinstance(sink.factory(SinkOptions(url="redis://127.0.0.1:1/0")), RedisSink)


def test_the_example_profile_validates(capsys):
    if not EXAMPLE.is_file():
        pytest.skip("examples/cluster.toml is not next to this plugin (installed elsewhere)")
    assert marketcore_main(["validate", str(EXAMPLE)]) == 0


def profile(tmp_path: Path, coordinator: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(textwrap.dedent(f"""
        [node]
        symbols = ["BTCUSDT"]
        [venue]
        use = "synthetic"
        [coordinator]
        use = "redis"
        {coordinator}
        [[sink]]
        use = "redis"
    """))
    return path


def test_a_password_in_the_profile_file_is_refused_without_showing_it(tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.delenv("MARKETCORE_COORDINATOR__PASSWORD", raising=False)
    path = profile(tmp_path, 'password = "hunter2-in-a-file"')
    assert marketcore_main(["validate", str(path)]) != 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "password: expected it from the environment" in text
    assert "hunter2" not in text


def test_a_password_from_the_environment_is_accepted(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MARKETCORE_COORDINATOR__PASSWORD", "from-the-env")
    path = profile(tmp_path, "")
    assert marketcore_main(["validate", str(path)]) == 0
    assert "from-the-env" not in capsys.readouterr().out


def test_a_url_with_a_password_only_from_the_environment(monkeypatch):
    monkeypatch.delenv("MARKETCORE_COORDINATOR__URL", raising=False)
    options = CoordinatorOptions(url="redis://user:secret@localhost:6379/0")
    with pytest.raises(ValueError, match="url: expected a URL without a password") as error:
        check_secret_source(options)
    assert "secret" not in str(error.value).replace("without", "")
    monkeypatch.setenv("MARKETCORE_COORDINATOR__URL", options.url)
    check_secret_source(options)


def test_the_password_never_shows(monkeypatch):
    monkeypatch.setenv("MARKETCORE_COORDINATOR__PASSWORD", "sw0rdfish")
    options = CoordinatorOptions(password="sw0rdfish")
    assert "sw0rdfish" not in repr(options)
    assert "sw0rdfish" not in repr(RedisCoordinator(options).options)
    assert redacted_url("redis://alice:sw0rdfish@h:1/0") == "redis://alice:***@h:1/0"
    assert redacted_url("redis://h:1/0") == "redis://h:1/0"


def test_key_layouts():
    keys = KeyLayout("marketcore", "mc").symbol("BTCUSDT")
    assert (keys.lease, keys.token, keys.report) == (
        b"mc:lease:{BTCUSDT}", b"mc:token:{BTCUSDT}", b"mc:report:{BTCUSDT}")
    assert KeyLayout("marketcore", "mc").node("n1") == "mc:node:n1"
    seed = KeyLayout("seed").symbol("BTCUSDT")
    assert (seed.lease, seed.token, seed.report) == (
        b"report:writer:BTCUSDT", b"report:writer:token:BTCUSDT", b"report:BTCUSDT")
    assert KeyLayout("seed").node("n1") == "nt:node:n1"
