"""Plugins, tests and docs use only marketcore's public API."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import marketcore

PUBLIC_MODULES = {
    "events", "book", "state", "components", "report", "pipeline", "profile", "clock", "node",
    "cli", "synthetic", "hookspecs", "testing", "strategies",
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
    for doc in [repo / "README.md", *repo.glob("docs/*.md"), *repo.glob("plugins/*/README.md"),
                *repo.glob("examples/plugins/*/README.md")]:
        text = doc.read_text()
        assert not re.search(r"marketcore\._[a-z]", text), doc


def test_plugins_do_not_import_each_other(repo: Path):
    offenders = []
    for plugin_dir in sorted([*repo.glob("plugins/*/"), *repo.glob("examples/plugins/*/")]):
        own = {p.name for p in (plugin_dir / "src").glob("marketcore_*")}
        for path in plugin_dir.rglob("*.py"):
            offenders.extend(f"{path}: {module}" for module, _ in imports_of(path)
                             if module.split(".")[0].startswith("marketcore_")
                             and module.split(".")[0] not in own)
    assert offenders == []


def undocumented_uses(path: Path) -> list[str]:
    """Every marketcore name ``path`` uses that is not in the public API.

    Public: ``marketcore.__all__``, the public modules, and in a public module the
    names of its ``__all__``. Checks ``from marketcore[.module] import name``,
    ``import marketcore.module`` and ``marketcore.name`` attribute access.
    """
    found = []
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "marketcore" or node.module.startswith("marketcore.")):
            parts = node.module.split(".")
            if len(parts) > 2 or (len(parts) == 2 and parts[1] not in PUBLIC_MODULES):
                found.append(node.module)
                continue
            if len(parts) == 1:
                found.extend(f"marketcore.{a.name}" for a in node.names
                             if a.name not in marketcore.__all__ and a.name not in PUBLIC_MODULES)
                continue
            exported = getattr(importlib.import_module(node.module), "__all__", None)
            if exported is None:
                found.append(f"{node.module} (has no __all__)")
            else:
                found.extend(f"{node.module}.{a.name}" for a in node.names
                             if a.name not in exported)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "marketcore" and len(parts) > 1 and (
                        len(parts) > 2 or parts[1] not in PUBLIC_MODULES):
                    found.append(alias.name)
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "marketcore" and node.attr not in marketcore.__all__
              and node.attr not in PUBLIC_MODULES and not node.attr.startswith("__")):
            found.append(f"marketcore.{node.attr}")
    return found


def plugin_sources(repo: Path) -> list[Path]:
    return [p for root in ("plugins", "examples") for p in (repo / root).rglob("*.py")
            if ".venv" not in p.parts]


def test_plugins_and_examples_use_only_documented_public_names(repo: Path):
    offenders = [f"{path.relative_to(repo)}: {use}" for path in plugin_sources(repo)
                 for use in undocumented_uses(path)]
    assert offenders == []


def test_generated_plugins_use_only_documented_public_names(tmp_path: Path):
    from marketcore.cli import main

    for kind in ("calculator", "sink", "venue", "coordinator"):
        folder = tmp_path / kind
        assert main(["new-plugin", "api_check", "--kind", kind, "--dir", str(folder)]) == 0
        offenders = [f"{kind}: {path.relative_to(folder)}: {use}"
                     for path in folder.rglob("*.py") for use in undocumented_uses(path)]
        assert offenders == []


def test_the_checker_catches_each_kind_of_undocumented_use(tmp_path: Path):
    source = tmp_path / "bad.py"
    source.write_text(
        "import marketcore\n"
        "import marketcore.state\n"
        "from marketcore import Book, get_plugin_manager, PUBLIC_THING\n"
        "from marketcore.state import SymbolState, _SIGN\n"
        "from marketcore.report import BASE_FIELDS\n"
        "from marketcore.book import Book as B, _Side\n"
        "from marketcore.nothing import x\n"
        "marketcore.hookimpl\n"
        "marketcore.PluginManager\n"
        "marketcore.secret_helper\n")
    assert sorted(undocumented_uses(source)) == sorted([
        "marketcore.PUBLIC_THING", "marketcore.state._SIGN", "marketcore.report.BASE_FIELDS",
        "marketcore.book._Side", "marketcore.nothing", "marketcore.secret_helper"])


def test_every_public_name_and_module_is_in_the_plugin_guide(repo: Path):
    guide = (repo / "docs" / "writing-plugins.md").read_text()
    missing = [name for name in marketcore.__all__ if f"`{name}" not in guide]
    missing += [f"marketcore.{m}" for m in sorted(PUBLIC_MODULES)
                if f"marketcore.{m}" not in guide]
    assert missing == [], f"docs/writing-plugins.md does not mention {missing}"


def test_every_testing_and_strategies_helper_is_in_the_plugin_guide(repo: Path):
    import marketcore.strategies
    import marketcore.testing

    guide = (repo / "docs" / "writing-plugins.md").read_text()
    missing = [name for module in (marketcore.testing, marketcore.strategies)
               for name in module.__all__ if f"`{name}" not in guide]
    assert missing == [], f"docs/writing-plugins.md does not document {missing}"
