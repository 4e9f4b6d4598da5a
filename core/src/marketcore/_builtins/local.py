"""Coordinator ``local``: this node owns every symbol, token 1, no external service."""

from __future__ import annotations

import asyncio

from marketcore import hookimpl
from marketcore.components import Ownership, RegisterCoordinator, WriterToken

LOCAL_TOKEN = WriterToken(epoch=0, counter=1)


class LocalCoordinator:
    """Grants the whole universe at start and releases it at shutdown."""

    name = "local"

    async def run(self, ownership: Ownership) -> None:
        for symbol in ownership.universe:
            ownership.acquired(symbol, LOCAL_TOKEN)
        try:
            await asyncio.Event().wait()  # until cancelled: nothing changes hands locally
        finally:
            for symbol in ownership.universe:
                ownership.released(symbol, "shutdown")

    def refused(self, symbol: str) -> None:
        """No other writer exists locally; a refusal cannot happen."""


@hookimpl
def marketcore_register_coordinators(register: RegisterCoordinator) -> None:
    register("local", lambda _options: LocalCoordinator())
