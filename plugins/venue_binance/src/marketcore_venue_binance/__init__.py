"""marketcore venue ``binance``: Binance spot and USDⓈ-M futures market data.

Registers the venue ``binance`` and two commands: ``marketcore record`` (capture live
frames and REST snapshots into the replay format) and ``marketcore binance-sim`` (run
the local exchange simulator). See the README for the options.
"""

from __future__ import annotations

import argparse

from marketcore import hookimpl
from marketcore.cli import CommandRegistrar
from marketcore.components import RegisterVenue

from marketcore_venue_binance.options import BinanceOptions
from marketcore_venue_binance.venue import BinanceVenue

__all__ = ["BinanceOptions", "BinanceVenue"]


@hookimpl
def marketcore_default_profile() -> str | None:
    from marketcore_venue_binance.demo import demo_profile

    return demo_profile()


@hookimpl
def marketcore_register_venues(register: RegisterVenue) -> None:
    register("binance", BinanceVenue, options=BinanceOptions)


@hookimpl
def marketcore_register_commands(cli: CommandRegistrar) -> None:
    from marketcore_venue_binance import record

    cli.add_command("record", help="record live Binance frames and snapshots for replay",
                    configure=record.configure, run=record.run)
    cli.add_command("binance-sim", help="run the local Binance exchange simulator",
                    configure=_simulator_configure, run=_simulator_run)


def _simulator_configure(parser: argparse.ArgumentParser) -> None:
    from marketcore_venue_binance.simulator import cli

    cli.configure(parser)


def _simulator_run(args: argparse.Namespace) -> int:
    from marketcore_venue_binance.simulator import cli

    return cli.run(args)
