"""Stopping child tasks without losing the caller's own cancellation.

The usual idiom ``task.cancel(); with suppress(CancelledError): await task`` cannot
tell the child's ``CancelledError`` from one aimed at the caller. When the caller is
cancelled while it waits (the host stopping the venue while a connection is being torn
down), the caller's cancellation is swallowed and it carries on as if nothing happened:
the venue task never ends and the node cannot shut down. :func:`stop_tasks` is the
replacement, used everywhere the client and the simulator stop a task of their own;
:func:`finish` waits for work that is asked to stop another way (a reading thread).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["finish", "stop_tasks"]


async def stop_tasks(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` and wait until every one has finished (see :func:`finish`).

    A cancellation of the caller that arrives meanwhile is not forwarded to the tasks:
    they are cancelled already, and a second cancellation would cut their cleanup
    short (closing a socket, a close handshake), which is bounded by its own timeouts.
    """
    for task in tasks:
        if task is not None:
            task.cancel()
    await finish(*tasks)


async def finish(*tasks: asyncio.Future[Any] | None) -> None:
    """Wait until every one of ``tasks`` has finished, without cancelling them.

    A cancellation of the caller that arrives meanwhile is raised once they have all
    finished. Their errors are retrieved and dropped: a task failing while it stops is
    not the caller's failure.
    """
    owned = [task for task in tasks if task is not None]
    interrupted: asyncio.CancelledError | None = None
    pending = {task for task in owned if not task.done()}
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError as error:
            interrupted = error
        pending = {task for task in pending if not task.done()}
    for task in owned:
        if not task.cancelled():
            task.exception()
    if interrupted is not None:
        raise interrupted
