"""Command ``new-plugin``: start a plugin from the templates, ready to test and install.

Registered through ``marketcore_register_commands`` like any plugin's command.
The work is in :mod:`marketcore._scaffold`; this module is the command line.
"""

from __future__ import annotations

import argparse
import sys

from marketcore import hookimpl
from marketcore._plugins import get_plugin_manager
from marketcore._scaffold import KINDS, ScaffoldError, new_plugin, plugin_names, workspace_of
from marketcore.cli import CommandRegistrar

_NEXT_STEPS = """\
next steps (the guide: docs/writing-plugins.md):
  pip install -e {folder}
  pytest {folder}/tests
  marketcore plugins
{try_it}
then make it yours: {folder}/src/{package}/__init__.py"""

_TRY = {
    "calculator": "  marketcore replay {folder}/profile.toml --out reports.jsonl",
    "sink": "  marketcore run {folder}/profile.toml --duration 5",
    "venue": "  marketcore replay {folder}/profile.toml --recording {folder}/tests/sample.jsonl "
             "--out reports.jsonl",
    "coordinator": "  marketcore run {folder}/profile.toml --duration 5",
}


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the plugin's name, e.g. book_slope: its component and "
                                     "report section (ext.<name>)")
    parser.add_argument("--kind", choices=KINDS, default="calculator",
                        help="what the plugin registers (default: calculator)")
    parser.add_argument("--dir", dest="folder", metavar="PATH",
                        help="the folder to create (default: ./marketcore-<name>); must not "
                             "exist or be empty")


def _taken_by_installed(name: str) -> str | None:
    """Who already registers ``name`` in this environment: the new plugin would clash."""
    registries = get_plugin_manager().registries
    for kind in KINDS:
        found = registries.of(kind).get(name)
        if found is not None:
            return f"{kind} {name!r} is already registered by {found.origin}"
    return None


def _run(args: argparse.Namespace) -> int:
    try:
        clash = _taken_by_installed(plugin_names(args.name).name)
        if clash:
            raise ScaffoldError(f"{clash}; choose another name")
        folder = new_plugin(args.name, kind=args.kind, folder=args.folder)
    except ScaffoldError as error:
        print(f"error: {error}", file=sys.stderr)
        print("hint: marketcore new-plugin book_slope --kind calculator --dir ../book-slope",
              file=sys.stderr)
        return 2
    names = plugin_names(args.name)
    values = {"folder": folder, "name": names.name, "package": names.package,
              "distribution": names.distribution}
    print(f"created {args.kind} plugin {names.distribution} in {folder}")
    if workspace_of(folder) is not None:
        print("it is a member of this uv workspace: run `uv lock` to add it")
    print(_NEXT_STEPS.format(try_it=_TRY[args.kind].format(**values), **values))
    return 0


@hookimpl
def marketcore_register_commands(cli: CommandRegistrar) -> None:
    cli.add_command("new-plugin", help="create a plugin folder (pyproject, package, tests, "
                                       "README) from a template",
                    configure=_configure, run=_run)
