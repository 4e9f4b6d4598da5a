"""``marketcore new-plugin``: a complete plugin folder from the templates in ``_templates/``.

A template file is ``<path>.tmpl``; ``{{key}}`` markers in its text and in its path
are replaced by the plugin's names (:class:`PluginNames`). The templates are
plain files shipped inside the wheel, so a researcher with only ``pip install
marketcore`` gets the same starting point as a developer in the repository.
"""

from __future__ import annotations

import fnmatch
import keyword
import re
import tomllib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import attrs

from marketcore.report import BASE_FIELDS, STANDARD_SECTIONS

__all__ = ["KINDS", "PluginNames", "ScaffoldError", "new_plugin", "plugin_names", "render"]

KINDS = ("calculator", "sink", "venue", "coordinator")

_DEPENDENCIES = {
    "calculator": ("marketcore>=0.1", "attrs>=23.2", "numpy>=1.26"),
    "sink": ("marketcore>=0.1", "attrs>=23.2"),
    "venue": ("marketcore>=0.1", "attrs>=23.2"),
    "coordinator": ("marketcore>=0.1", "attrs>=23.2"),
}
"""What each kind's example implementation imports (numpy: the trade window's arrays)."""

_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
_MAX_NAME = 40
_RESERVED = frozenset({*STANDARD_SECTIONS, *BASE_FIELDS, "ext", "omitted", "trimmed",
                       "synthetic", "local", "stdout", "jsonl", "http", "redis", "binance",
                       "test", "tests", "testing", "marketcore"})
"""Names a new plugin may not take: report keys (its section would clash with the
standard report) and components that marketcore or its own plugins register."""


class ScaffoldError(ValueError):
    """A name, kind or folder ``new-plugin`` cannot use; the message says why and what to do."""


@attrs.frozen
class PluginNames:
    """Every spelling of one plugin's name, derived from what the user typed."""

    name: str
    """The component's registered name and its report section: ``book_slope``."""
    dashed: str
    """``book-slope``: the entry point name."""
    package: str
    """``marketcore_book_slope``: the import package."""
    distribution: str
    """``marketcore-book-slope``: what ``pip install`` takes."""
    class_prefix: str
    """``BookSlope``: the prefix of the generated classes."""

    def markers(self, kind: str, uv_sources: str) -> dict[str, str]:
        return {"name": self.name, "dashed": self.dashed, "package": self.package,
                "distribution": self.distribution, "class": self.class_prefix, "kind": kind,
                "uv_sources": uv_sources}


def plugin_names(raw: str) -> PluginNames:
    """Check a plugin name and derive its spellings; raise :class:`ScaffoldError` if unusable."""
    name = raw.strip().lower().replace("-", "_")
    if name.startswith("marketcore_"):
        name = name.removeprefix("marketcore_")
    if not _NAME.fullmatch(name) or len(name) > _MAX_NAME:
        raise ScaffoldError(
            f"invalid plugin name {raw!r}: use 1 to {_MAX_NAME} lower-case letters, digits and "
            f"single '_' or '-' between words, starting with a letter (e.g. book_slope)")
    if name in _RESERVED or keyword.iskeyword(name):
        raise ScaffoldError(f"the plugin name {name!r} is taken by marketcore's report or its "
                            f"own components; choose a name that says what your plugin does")
    return PluginNames(
        name=name, dashed=name.replace("_", "-"), package=f"marketcore_{name}",
        distribution=f"marketcore-{name.replace('_', '-')}",
        class_prefix="".join(part.capitalize() for part in name.split("_")),
    )


def _templates(kind: str) -> list[tuple[str, Traversable]]:
    """``(relative path, file)`` of the common templates and the kind's own, kind's last."""
    root = resources.files("marketcore") / "_templates"
    found: dict[str, Traversable] = {}
    for folder in ("common", kind):
        stack: list[tuple[str, Traversable]] = [("", root / folder)]
        while stack:
            prefix, node = stack.pop()
            for child in node.iterdir():
                path = f"{prefix}{child.name}"
                if child.is_dir():
                    stack.append((path + "/", child))
                elif path.endswith(".tmpl"):
                    found[path.removesuffix(".tmpl")] = child
    return sorted(found.items())


def _fill(text: str, markers: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in markers:
            raise KeyError(f"template marker {{{{{key}}}}} has no value")
        return markers[key]

    return re.sub(r"\{\{(\w+)\}\}", replace, text)


def render(kind: str, names: PluginNames, *, workspace_member: bool = False) -> dict[str, str]:
    """The generated files, ``{relative path: text}``, without touching the disk."""
    if kind not in KINDS:
        raise ScaffoldError(f"unknown kind {kind!r}: choose one of {', '.join(KINDS)}")
    uv_sources = ("\n[tool.uv.sources]\nmarketcore = { workspace = true }\n"
                  if workspace_member else "")
    markers = names.markers(kind, uv_sources)
    markers["dependencies"] = ", ".join(f'"{dependency}"' for dependency in _DEPENDENCIES[kind])
    return {_fill(path, markers): _fill(template.read_text(encoding="utf-8"), markers)
            for path, template in _templates(kind)}


def workspace_of(folder: Path) -> Path | None:
    """The uv workspace root whose ``members`` globs match ``folder``, if any.

    A plugin created inside the marketcore repository (``plugins/…``) must get
    marketcore from the workspace, not from an index.
    """
    folder = folder.resolve()
    for parent in folder.parents:
        pyproject = parent / "pyproject.toml"
        if not pyproject.is_file():
            continue
        try:
            workspace = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["uv"][
                "workspace"]
        except (KeyError, TypeError, tomllib.TOMLDecodeError):
            continue
        relative = folder.relative_to(parent).as_posix()
        members = workspace.get("members", [])
        excluded = workspace.get("exclude", [])
        if (any(fnmatch.fnmatchcase(relative, glob) for glob in members)
                and not any(fnmatch.fnmatchcase(relative, glob) for glob in excluded)):
            return parent
    return None


def new_plugin(name: str, *, kind: str = "calculator", folder: str | Path | None = None) -> Path:
    """Write a new plugin's folder and return it.

    ``folder`` defaults to ``./marketcore-<name>``; it must not exist, or be empty.
    Nothing is written when anything is wrong.
    """
    names = plugin_names(name)
    target = Path(folder) if folder is not None else Path(names.distribution)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} exists and is not an empty folder; choose another "
                            f"--dir, or remove it")
    files = render(kind, names, workspace_member=workspace_of(target) is not None)
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return target
