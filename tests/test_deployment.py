"""The deployment examples, checked without a Docker engine.

The compose file, the Dockerfile, the Prometheus config and alert rules and the Grafana
dashboard are parsed and cross-checked: every file they reference exists, the services
agree with each other and with examples/fleet.toml, and every metric a query or a rule
names is one a real node exports — the names come from scraping a running node (Binance
client against the bundled simulator, Redis coordinator and fenced sink on a real
redis-server, the http sink), not from a list written by hand.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from marketcore.cli import main
from marketcore.testing import RedisServer, RedisUnavailable, free_port, stop_processes
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
RECORDING = EXAMPLES / "data" / "binance-spot-btcusdt-20240808.gz"
MARKETCORE = [sys.executable, "-c", "import sys; from marketcore.cli import main; sys.exit(main())"]
METRIC = re.compile(r"\bmarketcore_[a-z0-9_]+\b")
REQUIRED_ALERTS = {"MarketcoreDataAgeSLO", "MarketcoreLeaseConflicts", "MarketcoreHeartbeatLost",
                   "MarketcoreResyncStorm"}


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(EXAMPLES / "docker-compose.yml")


@pytest.fixture(scope="module")
def alerts() -> list[dict]:
    data = load_yaml(EXAMPLES / "prometheus" / "alerts.yml")
    return [rule for group in data["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads((EXAMPLES / "grafana" / "marketcore-dashboard.json").read_text())


def node_services(compose: dict) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if name.startswith("node-")}


# -- the names a real node exports ------------------------------------------------------------


def series_names(text: str) -> set[str]:
    """Every series name the exposition makes queryable, whether or not it has samples yet."""
    names = set()
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Iterator[set[str]]:
    if not RECORDING.is_file():
        pytest.skip(f"the bundled recording {RECORDING.name} is missing")
    try:
        server = RedisServer().start()
    except RedisUnavailable as error:
        pytest.skip(str(error))
    tmp = tmp_path_factory.mktemp("exported")
    metrics_port, http_port = free_port(), free_port()
    profile = tmp / "profile.toml"
    profile.write_text(f"""
[node]
id = "exporter"
symbols = ["BTCUSDT"]
[venue]
use = "binance"
simulate = [{json.dumps(str(RECORDING))}]
[coordinator]
use = "redis"
url = "{server.url}"
[[sink]]
use = "redis"
url = "{server.url}"
[[sink]]
use = "http"
bind = "127.0.0.1:{http_port}"
[metrics]
bind = "127.0.0.1:{metrics_port}"
""")
    process = subprocess.Popen([*MARKETCORE, "run", str(profile), "--json"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    text = ""
    try:
        deadline = time.monotonic() + 120  # liveness bound for a loaded machine
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                            timeout=5) as answer:
                    text = answer.read().decode()
            except OSError:
                text = ""
            # wait until the venue delivered data and a report went out
            if re.search(r"^marketcore_venue_events_total\{.*\} [1-9]", text, re.M) and \
                    re.search(r"^marketcore_reports_published_total\{.*\} [1-9]", text, re.M):
                break
            time.sleep(0.5)
        else:
            _out, err = process.communicate(timeout=30) if process.poll() is not None else ("", "")
            pytest.fail(f"the node never published: {err[-2000:]}")
    finally:
        stop_processes(process, timeout_s=30)
        server.close()
    yield series_names(text)


def test_the_node_exports_every_documented_family(exported):
    families_documented = set(METRIC.findall((REPO / "docs" / "operations.md").read_text()))
    exported_bases = {re.sub(r"_(bucket|count|sum)$", "", name) for name in exported}
    documented_bases = {re.sub(r"_(bucket|count|sum)$", "", name)
                        for name in families_documented}
    assert documented_bases - exported_bases == set(), "documented but not exported"
    assert exported_bases - documented_bases == set(), "exported but not documented"


def test_dashboard_queries_use_only_exported_metrics(dashboard, exported):
    queries = [target["expr"] for panel in dashboard["panels"]
               for target in panel.get("targets", [])]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    used = {name for query in queries for name in METRIC.findall(query)}
    assert len(used) >= 20
    assert used - exported == set()


def test_alert_rules_use_only_exported_metrics(alerts, exported):
    used = {name for rule in alerts for name in METRIC.findall(rule["expr"])}
    assert used - exported == set()
    assert "marketcore_report_data_age_seconds_bucket" in used


# -- compose --------------------------------------------------------------------------------


def test_compose_has_redis_without_eviction_three_nodes_and_prometheus(compose):
    services = compose["services"]
    assert {"redis", "prometheus", "grafana"} <= set(services)
    redis_command = " ".join(services["redis"]["command"])
    assert "--maxmemory-policy noeviction" in redis_command
    assert "requirepass" in redis_command and "healthcheck" in services["redis"]
    nodes = node_services(compose)
    assert len(nodes) == 3
    ids = {s["environment"]["MARKETCORE_NODE__ID"] for s in nodes.values()}
    assert ids == set(nodes)
    for service in nodes.values():
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["grafana"]["profiles"] == ["grafana"]  # optional


def test_compose_never_holds_a_secret(compose):
    for service in node_services(compose).values():
        password = service["environment"]["MARKETCORE_COORDINATOR__PASSWORD"]
        assert password.startswith("${REDIS_PASSWORD:?")
        for key, value in service["environment"].items():
            assert "@" not in str(value), key  # no credentials inside a URL
    assert compose["services"]["redis"]["environment"]["REDIS_PASSWORD"].startswith("${")


def test_compose_references_files_that_exist(compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = (EXAMPLES / build["context"]).resolve()
            assert context == REPO, name
            assert (context / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (EXAMPLES / source).is_file(), f"{name}: {source}"


def test_nodes_publish_their_metrics_and_read_api_ports(compose):
    fleet = (EXAMPLES / "fleet.toml").read_text()
    assert 'bind = "0.0.0.0:9101"' in fleet and 'bind = "0.0.0.0:8080"' in fleet
    host_ports = []
    for service in node_services(compose).values():
        container_ports = {mapping.rsplit(":", 1)[1] for mapping in service["ports"]}
        assert container_ports == {"9101", "8080"}
        host_ports += [mapping.rsplit(":", 2)[1] for mapping in service["ports"]]
        assert service["command"][-1] == "/etc/marketcore/fleet.toml"
    assert len(host_ports) == len(set(host_ports))  # no two nodes on one host port


def test_the_fleet_profile_validates(capsys):
    assert main(["validate", str(EXAMPLES / "fleet.toml")]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "venue binance, coordinator redis, sinks redis, http" in out


# -- Dockerfile -------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (EXAMPLES / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_dockerfile_copies_files_that_exist_and_runs_the_fleet_profile():
    instructions = dockerfile_instructions()
    copied = []
    for keyword, arguments in instructions:
        if keyword == "COPY" and "--from=" not in arguments:
            *sources, target = shlex.split(arguments)
            copied.append((sources, target))
            for source in sources:
                assert (REPO / source).exists(), source
    assert (["examples/fleet.toml"], "/etc/marketcore/fleet.toml") in copied
    assert any("uv.lock" in sources for sources, _ in copied)  # installs the locked versions
    runs = " ".join(arguments for keyword, arguments in instructions if keyword == "RUN")
    assert "uv sync --locked --all-packages --no-dev" in runs
    cmd = dict(instructions)["CMD"]
    assert json.loads(cmd) == ["run", "/etc/marketcore/fleet.toml"]
    assert json.loads(dict(instructions)["ENTRYPOINT"]) == ["marketcore"]
    assert dict(instructions)["USER"] != "root"


def test_every_workspace_member_is_in_the_image():
    copied = " ".join(arguments for keyword, arguments in dockerfile_instructions()
                      if keyword == "COPY")
    for member in ("core/", "plugins/", "examples/plugins/", "lua/"):
        assert f" {member} " in f" {copied} ", member


# -- Prometheus -----------------------------------------------------------------------------


def test_prometheus_scrapes_every_node_and_loads_the_rules(compose):
    config = load_yaml(EXAMPLES / "prometheus" / "prometheus.yml")
    for rule_file in config["rule_files"]:
        assert (EXAMPLES / "prometheus" / rule_file).is_file()
    (job,) = config["scrape_configs"]
    targets = {t for static in job["static_configs"] for t in static["targets"]}
    assert targets == {f"{name}:9101" for name in node_services(compose)}
    mounts = {v.split(":")[1] for v in compose["services"]["prometheus"]["volumes"]}
    assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/alerts.yml"} <= mounts


def slug(heading: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", heading.lower()).strip().replace(" ", "-")


def test_alert_rules_are_complete_and_documented(alerts):
    operations = (REPO / "docs" / "operations.md").read_text()
    anchors = {slug(line.lstrip("#")) for line in operations.splitlines() if line.startswith("#")}
    names = {rule["alert"] for rule in alerts}
    assert names >= REQUIRED_ALERTS
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert f"`{rule['alert']}`" in operations, f"{rule['alert']} is not explained"
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor}"
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("[") == expr.count("]")


# -- Grafana ----------------------------------------------------------------------------------


def test_dashboard_is_well_formed_and_provisioned(compose, dashboard):
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
    datasource = load_yaml(EXAMPLES / "grafana" / "provisioning" / "datasources" /
                           "prometheus.yml")["datasources"][0]
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["current"]["value"] == datasource["uid"]
    assert datasource["url"] == "http://prometheus:9090"
    provider = load_yaml(EXAMPLES / "grafana" / "provisioning" / "dashboards" /
                         "marketcore.yml")["providers"][0]
    mounts = {v.split(":")[1] for v in compose["services"]["grafana"]["volumes"]}
    assert f"{provider['options']['path']}/marketcore-dashboard.json" in mounts
