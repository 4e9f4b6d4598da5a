"""Plugins, tests and docs use only marketcore's public API."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import marketcore

PUBLIC_MODULES = {
    "events", "book", "state", "components", "report", "pipeline", "profile", "clock", "node",
    "cli", "synthetic", "hookspecs", "testing",
}


def python_files(repo: Path) -> list[Path]:
    roots = ["plugins", "examples", "tests", "core/tests", "benchmarks"]
    return [p for root in roots for p in (repo / root).rglob("*.py") if ".venv" not in p.parts]


def test_every_public_name_imports():
    for name in marketcore.__all__:
        assert hasattr(marketcore, name), name
    for module in PUBLIC_MODULES:
        importlib.import_module(f"marketcore.{module}")


def imports_of(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((a.name, []) for a in node.names)
    return found


def test_nothing_outside_core_imports_private_marketcore_modules(repo: Path):
    offenders = []
    for path in python_files(repo):
        for module, names in imports_of(path):
            if not (module == "marketcore" or module.startswith("marketcore.")):
                continue
            parts = module.split(".")
            if len(parts) > 1 and (parts[1] not in PUBLIC_MODULES or parts[1].startswith("_")):
                offenders.append(f"{path.relative_to(repo)}: {module}")
            if module == "marketcore":
                offenders.extend(f"{path.relative_to(repo)}: marketcore.{n}" for n in names
                                 if n not in marketcore.__all__ and n not in PUBLIC_MODULES)
        if re.search(r"marketcore\._[a-z]", path.read_text()) and path.name != "test_public_api.py":
            offenders.append(f"{path.relative_to(repo)}: mentions a marketcore._private module")
    assert offenders == []


def test_docs_never_show_private_modules(repo: Path):
    for doc in [repo / "README.md", *repo.glob("docs/*.md"), *repo.glob("plugins/*/README.md")]:
        text = doc.read_text()
        assert not re.search(r"marketcore\._[a-z]", text), doc


def test_plugins_do_not_import_each_other(repo: Path):
    offenders = []
    for plugin_dir in sorted(repo.glob("plugins/*/")):
        own = {p.name for p in (plugin_dir / "src").glob("marketcore_*")}
        for path in plugin_dir.rglob("*.py"):
            offenders.extend(f"{path}: {module}" for module, _ in imports_of(path)
                             if module.split(".")[0].startswith("marketcore_")
                             and module.split(".")[0] not in own)
    assert offenders == []
