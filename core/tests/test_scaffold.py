"""``marketcore new-plugin``: names, folders, and what every kind's template renders to.

Installing a generated plugin and running its tests is the root end-to-end test
(tests/test_new_plugin.py); here the generated code is checked without installing:
it compiles, imports only marketcore's public API, and names itself consistently.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import marketcore
import pytest
from marketcore.cli import main

PUBLIC_MODULES = {"events", "book", "state", "components", "report", "pipeline", "profile",
                  "clock", "node", "cli", "synthetic", "hookspecs", "testing", "strategies"}
KINDS = ("calculator", "sink", "venue", "coordinator")


def generate(tmp_path: Path, *args: str) -> tuple[int, Path]:
    folder = tmp_path / "plugin"
    status = main(["new-plugin", *args, "--dir", str(folder)])
    return status, folder


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_a_complete_distribution(tmp_path, kind):
    status, folder = generate(tmp_path, "book_slope", "--kind", kind)
    assert status == 0
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert {"pyproject.toml", "README.md", "profile.toml", ".gitignore",
            "src/marketcore_book_slope/__init__.py", "tests/conftest.py",
            "tests/test_book_slope.py"} <= set(files)
    pyproject = tomllib.loads((folder / "pyproject.toml").read_text())
    assert pyproject["project"]["name"] == "marketcore-book-slope"
    assert pyproject["project"]["entry-points"]["marketcore"] == {
        "book-slope": "marketcore_book_slope"}
    assert pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "src/marketcore_book_slope"]
    assert "marketcore>=0.1" in pyproject["project"]["dependencies"]
    assert "uv" not in pyproject.get("tool", {})  # outside a workspace: marketcore from an index
    for path in folder.rglob("*"):
        text = path.read_text() if path.is_file() else ""
        assert "{{" not in text, path
    profile = tomllib.loads((folder / "profile.toml").read_text())
    assert "book_slope" in str(profile)


@pytest.mark.parametrize("kind", KINDS)
def test_generated_code_compiles_and_imports_only_the_public_api(tmp_path, kind):
    _, folder = generate(tmp_path, "book-slope", "--kind", kind)
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("marketcore"):
                parts = node.module.split(".")
                if parts[0] != "marketcore":
                    assert parts[0] == "marketcore_book_slope", (path, node.module)
                elif len(parts) == 1:
                    assert all(a.name in marketcore.__all__ for a in node.names), path
                else:
                    assert parts[1] in PUBLIC_MODULES, (path, node.module)
        compile(path.read_text(), str(path), "exec")


def test_the_registered_name_and_section_follow_the_plugin_name(tmp_path):
    _, folder = generate(tmp_path, "Book-Slope")
    source = (folder / "src/marketcore_book_slope/__init__.py").read_text()
    assert 'register("book_slope", BookSlopeCalculator, options=BookSlopeOptions)' in source
    assert 'sections = ("book_slope",)' in source
    tests = (folder / "tests/test_book_slope.py").read_text()
    assert '"ext.book_slope"' in tests


@pytest.mark.parametrize(("name", "message"), [
    ("9lives", "invalid plugin name '9lives'"),
    ("book slope", "invalid plugin name 'book slope'"),
    ("book__slope", "invalid plugin name"),
    ("x" * 41, "invalid plugin name"),
    ("health", "the plugin name 'health' is taken"),
    ("ext", "the plugin name 'ext' is taken"),
    ("spread_bps", "is taken by marketcore's report"),
    ("class", "is taken"),
])
def test_a_bad_name_is_refused_with_a_reason_and_nothing_is_written(tmp_path, capsys, name,
                                                                    message):
    status, folder = generate(tmp_path, name)
    assert status == 2
    assert message in capsys.readouterr().err
    assert not folder.exists()


def test_an_existing_non_empty_folder_is_refused_and_left_alone(tmp_path, capsys):
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    status, _ = generate(tmp_path, "book_slope")
    assert status == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_an_existing_empty_folder_is_used(tmp_path):
    (tmp_path / "plugin").mkdir()
    status, folder = generate(tmp_path, "book_slope")
    assert status == 0 and (folder / "pyproject.toml").is_file()


def test_a_name_an_installed_plugin_registers_is_refused(tmp_path, capsys, install_plugin):
    install_plugin("marketcore-calc-taken", "calc_taken", """
        from marketcore import hookimpl

        class Taken:
            name = "taken_metric"

        @hookimpl
        def marketcore_register_calculators(register):
            register("taken_metric", lambda options: Taken())
    """)
    status, folder = generate(tmp_path, "taken_metric")
    assert status == 2
    assert "calculator 'taken_metric' is already registered by marketcore-calc-taken" in (
        capsys.readouterr().err)
    assert not folder.exists()


def test_the_default_folder_is_named_after_the_distribution(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["new-plugin", "book_slope", "--kind", "sink"]) == 0
    assert (tmp_path / "marketcore-book-slope" / "src/marketcore_book_slope/__init__.py").is_file()
    out = capsys.readouterr().out
    assert "created sink plugin marketcore-book-slope" in out
    assert "pip install -e marketcore-book-slope" in out


def test_inside_a_uv_workspace_member_glob_marketcore_comes_from_the_workspace(tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.uv.workspace]\nmembers = ["core", "plugins/*"]\n')
    folder = tmp_path / "plugins" / "calc_book_slope"
    assert main(["new-plugin", "book_slope", "--dir", str(folder)]) == 0
    pyproject = tomllib.loads((folder / "pyproject.toml").read_text())
    assert pyproject["tool"]["uv"]["sources"] == {"marketcore": {"workspace": True}}
    assert "run `uv lock`" in capsys.readouterr().out


def test_the_templates_ship_inside_the_package():
    from importlib import resources

    root = resources.files("marketcore") / "_templates"
    for kind in ("common", *KINDS):
        assert (root / kind).is_dir(), kind
