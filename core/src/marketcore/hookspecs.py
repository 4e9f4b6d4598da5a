"""The hook specifications: every way a plugin extends marketcore.

A plugin is a module or object with functions named like these hooks, decorated
with ``marketcore.hookimpl``. It is found through the ``marketcore`` entry-point
group (or is one of the built-ins in ``DEFAULT_PLUGINS``) and registered by
``marketcore.get_plugin_manager()``.

There are two kinds of hooks:

* **Registration hooks** (``marketcore_register_*``) are called once, when the
  plugin manager's registries are first read. Each receives a ``register``
  callback; the host owns naming, de-duplication and validation, so a plugin
  only says *what* it offers. A component registered here does nothing until a
  profile names it.
* **Lifecycle hooks** are called on every plugin, whether or not the profile
  names it. They run on the node's event loop, once per event (never per book
  level or per report), and must return quickly: start a task of your own in
  ``marketcore_startup`` for long work, and cancel it in ``marketcore_shutdown``.

All hooks take keyword arguments only (pluggy calls them that way); an
implementation may accept any subset of the arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from marketcore.cli import CommandRegistrar
    from marketcore.components import (
        RegisterCalculator,
        RegisterCoordinator,
        RegisterSink,
        RegisterVenue,
        WriterToken,
    )
    from marketcore.node import NodeInfo

PROJECT = "marketcore"

hookspec = pluggy.HookspecMarker(PROJECT)


# ---------------------------------------------------------------------------
# Registration: components a profile can name
# ---------------------------------------------------------------------------


@hookspec
def marketcore_register_venues(register: RegisterVenue) -> None:
    """Register venue adapters: sources of normalized market events.

    Called once when the registries are built (``marketcore run``, ``validate``,
    ``plugins``, …).

    :param register: ``register(name, factory, *, options=None)``. ``factory``
        is called as ``factory(options)`` when a profile selects the venue with
        ``[venue] use = "<name>"`` and must return a :class:`marketcore.Venue`.
        ``options`` is an attrs class describing the venue's keys in the
        ``[venue]`` table; the host validates the table into it (errors name the
        file and key) and passes the instance. Without it the factory gets the
        raw dict.
    :returns: nothing; results are ignored.
    """


@hookspec
def marketcore_register_calculators(register: RegisterCalculator) -> None:
    """Register calculators: the metric functions that fill report sections.

    Called once when the registries are built.

    :param register: ``register(name, factory, *, options=None)``. ``factory``
        is called as ``factory(options)`` once per node for every pipeline that
        lists ``name`` and must return a :class:`marketcore.Calculator`.
        ``options`` is an attrs class for the calculator's table
        ``[calculators.<name>]`` in the profile.
    :returns: nothing; results are ignored.
    """


@hookspec
def marketcore_register_coordinators(register: RegisterCoordinator) -> None:
    """Register coordinators: who decides which symbols this node owns.

    Called once when the registries are built.

    :param register: ``register(name, factory, *, options=None)``; the factory
        builds a :class:`marketcore.Coordinator` from the ``[coordinator]``
        table (validated into ``options`` when given).
    :returns: nothing; results are ignored.
    """


@hookspec
def marketcore_register_sinks(register: RegisterSink) -> None:
    """Register sinks: where each cycle's batch of reports goes.

    Called once when the registries are built.

    :param register: ``register(name, factory, *, options=None)``; the factory
        builds a :class:`marketcore.Sink` from one ``[[sink]]`` table (validated
        into ``options`` when given).
    :returns: nothing; results are ignored.
    """


@hookspec(firstresult=True)
def marketcore_default_profile() -> str | None:
    """Offer the embedded default profile: what ``marketcore run`` uses without a file.

    Called when a command needs the default profile (``run`` or ``replay``
    without a profile argument). The first non-``None`` result wins, so an
    installed venue can make the default show its real data path (the core's
    own default, the synthetic venue, is registered ``trylast``).

    :returns: the profile as TOML text, or ``None`` to offer nothing. It must
        need no network and no external service.
    """


@hookspec
def marketcore_register_commands(cli: CommandRegistrar) -> None:
    """Add sub-commands to the ``marketcore`` command line.

    Called once when the CLI is built, before arguments are parsed.

    :param cli: a :class:`marketcore.cli.CommandRegistrar`; call
        ``cli.add_command(name, help=..., configure=..., run=...)`` where
        ``configure(parser)`` adds arguments to an ``argparse`` sub-parser and
        ``run(args)`` does the work and returns the exit status.
    :returns: nothing; results are ignored.
    """


# ---------------------------------------------------------------------------
# Lifecycle: called on every plugin, named in the profile or not
# ---------------------------------------------------------------------------


@hookspec
def marketcore_startup(node: NodeInfo) -> None:
    """The node has built its components and is about to start streaming.

    Called once per node run (live or replay), after the profile is validated
    and every component is constructed, before the venue connects.

    :param node: read-only facts about the node (id, profile, components).
    :returns: nothing; results are ignored. An exception aborts the start.
    """


@hookspec
def marketcore_shutdown(node: NodeInfo) -> None:
    """The node is stopping.

    Called once, after the last cycle, after leases were released and sinks
    flushed, before the process exits. Also called when the run ends by
    ``--duration`` or at the end of a replay.

    :param node: the same object ``marketcore_startup`` received.
    :returns: nothing; results are ignored. Exceptions are logged, not raised.
    """


@hookspec
def marketcore_symbol_acquired(symbol: str, token: WriterToken) -> None:
    """This node became the writer of ``symbol``.

    Called when the coordinator grants the symbol (the ``local`` coordinator
    grants every symbol at start), after its SymbolState exists and before its
    first report.

    :param symbol: the venue symbol, upper case (``"BTCUSDT"``).
    :param token: the writer token (epoch, counter) reports will carry.
    :returns: nothing; results are ignored.
    """


@hookspec
def marketcore_symbol_released(symbol: str, reason: str) -> None:
    """This node stopped writing ``symbol``; its SymbolState is dropped after this.

    Called when the coordinator takes the symbol away, a fencing sink refused
    a write, the node shuts down, or a replay ends.

    :param symbol: the venue symbol.
    :param reason: why, in a few words: ``"shutdown"``, ``"reassigned"``,
        ``"lease lost"``, ``"refused by sink"``.
    :returns: nothing; results are ignored.
    """
