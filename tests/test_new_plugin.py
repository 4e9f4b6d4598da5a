"""End to end, as a researcher would: generate a plugin, install it into a fresh
environment with only marketcore, run its tests there, see it in `marketcore plugins`
and in a replay's reports under ext.<name>."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from marketcore.cli import main
from marketcore.testing import assert_valid_report

NAME = "e2e_metric"


def run(*command: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                            timeout=timeout, env=_clean_env())
    assert result.returncode == 0, (f"{' '.join(map(str, command))} failed:\n"
                                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def _clean_env() -> dict[str, str]:
    """The environment minus whatever points at the workspace's own virtualenv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "UV_PROJECT_ENVIRONMENT")}
    env["UV_NO_PROGRESS"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, repo: Path) -> tuple[Path, Path]:
    """``(plugin folder, environment)``: a generated plugin installed next to marketcore only."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (make test installs it)")
    root = tmp_path_factory.mktemp("new-plugin")
    folder = root / "marketcore-e2e-metric"
    assert main(["new-plugin", NAME.replace("_", "-"), "--dir", str(folder)]) == 0
    env = root / "env"
    run(uv, "venv", "--quiet", "--python", sys.executable, env, cwd=root)
    run(uv, "pip", "install", "--quiet", "--python", env / "bin" / "python",
        "-e", repo / "core", "-e", folder, "pytest", "hypothesis", "jsonschema", cwd=root)
    return folder, env


def test_the_generated_plugin_s_own_tests_pass_in_its_environment(installed):
    folder, env = installed
    result = run(env / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 folder / "tests", cwd=folder)
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary


def test_the_environment_has_only_marketcore_and_the_plugin(installed):
    _, env = installed
    result = run(env / "bin" / "python", "-c",
                 "from importlib import metadata; print('\\n'.join(sorted("
                 "d.metadata['Name'] for d in metadata.distributions())))", cwd=env)
    names = set(result.stdout.split())
    assert {"marketcore", "marketcore-e2e-metric"} <= names
    assert not {n for n in names if n.startswith("marketcore-")} - {"marketcore-e2e-metric"}


def test_marketcore_plugins_lists_it(installed):
    _, env = installed
    result = run(env / "bin" / "marketcore", "plugins", "--json", cwd=env)
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["e2e-metric"]["distribution"] == "marketcore-e2e-metric"
    assert plugins["e2e-metric"]["registers"] == {"calculator": [NAME]}


def test_a_replay_of_its_profile_carries_ext_section(installed, tmp_path):
    folder, env = installed
    out = tmp_path / "reports.jsonl"
    run(env / "bin" / "marketcore", "replay", folder / "profile.toml", "--out", out, cwd=folder)
    reports = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["symbol"] for r in reports} == {"BTCUSDT", "ETHUSDT"}
    with_section = [r for r in reports if NAME in r.get("ext", {})]
    assert len(with_section) > len(reports) // 2
    for report in with_section:
        assert_valid_report(report)
        section = report["ext"][NAME]
        assert section["trades"] >= 5 and section["volume"] > 0
        assert 0.0 <= section["buy_share"] <= 1.0
    for report in reports:
        if report not in with_section:
            assert "need 5" in report["health"]["omitted"][NAME]
