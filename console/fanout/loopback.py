"""The loopback transport: each host served by an agent's own ``serve`` in this process.

No SSH, no sockets, no processes: the console's frames go into the agent's reader and the
agent's writes come back through the same ``Conversation`` the SSH transport uses. It is for
tests of the console (dispatch, store, outputs, hostile rows) that are not about SSH; the agent
is passed in (console never imports ``agentd``), as its ``serve(reader, write, peer, closed)``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from console.fanout.transport import (
    CANCEL_FRAME,
    ActionFrames,
    Conversation,
    Handle,
    HostFailure,
)
from inventory.model import Host
from protocol.frames import ByteReader

#: An agent's ``serve``: one channel, from its first frame to its end.
Serve = Callable[
    [ByteReader, Callable[[bytes], Awaitable[None]], str, "asyncio.Future[Any] | None"],
    Coroutine[Any, Any, None],
]


class LoopbackTransport:
    """Actions to in-process agents, one ``Serve`` per host name; a fresh channel per action."""

    def __init__(self, agents: Mapping[str, Serve], peer: str = "loopback") -> None:
        self.agents = agents
        self.peer = peer

    async def converse(
        self, host: Host, frames: ActionFrames, handle: Handle, running: Callable[[], None]
    ) -> None:
        serve = self.agents.get(host.name)
        if serve is None:
            raise HostFailure("unreachable", "no agent on the loopback for this host")
        reader = asyncio.StreamReader()
        closed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def close() -> None:
            if not closed.done():
                closed.set_result(None)
                reader.feed_eof()

        conversation = Conversation(close)

        async def write(data: bytes) -> None:
            if not closed.done():
                conversation.feed(data)

        over = conversation.begin(handle)
        server = asyncio.create_task(serve(reader, write, self.peer, closed))
        server.add_done_callback(lambda _task: conversation.lost(None))
        running()
        reader.feed_data(frames.hello + frames.run)
        try:
            await over
        except asyncio.CancelledError:
            reader.feed_data(CANCEL_FRAME)  # read before the end of input that close() feeds
            close()
            await asyncio.wait({server}, timeout=1)
            raise
        finally:
            close()
            if not server.done():
                server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
