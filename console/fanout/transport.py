"""The seam between the fan-out and the wire: how one action reaches one host's agent.

The dispatcher (concurrency, deadlines, statuses, events) sees only ``Transport``: hand it a host,
the action's frames and a handler, and it feeds the handler every message the agent sends until
the handler says the action is over, or raises ``HostFailure`` with the host's status. The SSH
transport (console/fanout/ssh_transport.py) is the real one; the loopback transport
(console/fanout/loopback.py) serves an in-process agent, for tests that are not about SSH.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from console.results.records import HostStatus
from inventory.model import Host
from protocol.errors import SpyglassError
from protocol.frames import FrameDecoder, encode_frame
from protocol.messages import TO_CONSOLE, AgentHello, Cancel, Message, decode_message

#: Applies one agent message to a host's result; True once the action is over on that host.
Handle = Callable[[Message], bool]


class HostFailure(SpyglassError):
    """A host's run ended without an answer: its status (DESIGN §5) and a one-line detail."""

    def __init__(self, status: HostStatus, detail: str, *, lost: bool = False) -> None:
        super().__init__(detail)
        self.status: HostStatus = status
        self.detail = detail
        self.lost = lost
        """The connection or channel went away (not a protocol fault): worth another try."""


@dataclass(frozen=True, slots=True)
class ActionFrames:
    """One action's encoded frames, built once per run: a new channel gets both, a reused one
    (which said hello already) only ``run``."""

    hello: bytes
    run: bytes


#: Sent when the console gives up on a running action (Ctrl-C, the TUI's cancel): closing the
#: channel alone would not stop it, since an agent finishes what it accepted (DESIGN §3).
CANCEL_FRAME = encode_frame(Cancel().to_frame())


class Transport(Protocol):
    async def converse(
        self, host: Host, frames: ActionFrames, handle: Handle, running: Callable[[], None]
    ) -> None:
        """Deliver the action to ``host`` and feed each agent message to ``handle`` until it
        returns True; ``running`` is called when the action is sent. Raises ``HostFailure``."""
        ...


class Conversation:
    """A channel as the console hears it: bytes in, each decoded message handed to the current
    action's handler. A channel may carry one action after another; a protocol fault ends the
    action with an error and closes the channel (``close``), so it is never reused."""

    def __init__(self, close: Callable[[], None]) -> None:
        self._decoder = FrameDecoder()
        self._close = close
        self._handle: Handle = lambda _message: False
        self.over: asyncio.Future[None] | None = None
        self.answered = False  # a frame arrived for the current action
        self.hello: AgentHello | None = None  # the agent's hello, for later actions

    def begin(self, handle: Handle) -> asyncio.Future[None]:
        """Start an action on this channel; the future ends with it."""
        self._handle, self.answered = handle, False
        self.over = asyncio.get_running_loop().create_future()
        return self.over

    def feed(self, data: bytes) -> None:
        try:
            for frame in self._decoder.feed(data):
                message = decode_message(frame, TO_CONSOLE)
                if self.over is None or self.over.done():
                    raise HostFailure("error", f"a {frame['type']!r} frame arrived between actions")
                self.answered = True
                if isinstance(message, AgentHello):
                    self.hello = message
                if self._handle(message):
                    self.over.set_result(None)
        except Exception as err:  # raised again where the action awaits ``over``
            self._end(err)
            self._close()

    def lost(self, exc: BaseException | None) -> None:
        """The channel closed: an action still open ends with an error."""
        self._end(
            exc or HostFailure("error", "the agent closed the channel before finishing", lost=True)
        )

    def _end(self, err: BaseException) -> None:
        if self.over is not None and not self.over.done():
            self.over.set_exception(err)
