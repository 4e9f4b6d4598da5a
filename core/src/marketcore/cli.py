"""What ``marketcore_register_commands`` receives: a way to add sub-commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

import attrs

__all__ = ["Command", "CommandRegistrar", "main"]


@attrs.frozen
class Command:
    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    plugin: str = ""


class CommandRegistrar:
    """Collects sub-commands; the CLI adds them to its parser.

    ``cli.add_command("record", help="…", configure=add_args, run=record)``:
    ``configure(parser)`` adds the command's arguments, ``run(args)`` does the
    work and returns the exit status. Errors follow the CLI's rules: raise an
    exception with a clear message; the CLI prints one line (a traceback with
    ``--debug``).
    """

    def __init__(self, taken: set[str] | None = None) -> None:
        self.commands: dict[str, Command] = {}
        self._taken = set(taken or ())

    def add_command(self, name: str, *, help: str,
                    configure: Callable[[argparse.ArgumentParser], None],
                    run: Callable[[argparse.Namespace], int]) -> None:
        if name in self._taken or name in self.commands:
            raise ValueError(f"the command {name!r} already exists")
        self.commands[name] = Command(name, help, configure, run)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``marketcore`` command; ``main(["validate", "p.toml"])`` returns the exit status."""
    from marketcore._cli import run  # the CLI's machinery imports this module

    return run(argv)
