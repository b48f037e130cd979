"""The SSH transport: an action over a pooled connection's ``spyglass`` subsystem channel.

On the host's parked channel (see ``Pool.park``) the action is one ``run`` frame; otherwise the
pool's connection (or a new one) opens a channel and gets ``hello`` + ``run`` at once. Frames are
decoded as data arrives (asyncssh callbacks, no stream reads to await: the cheapest way through
asyncssh). ``ssh_failure`` is the one table from SSH and OS errors to host statuses, used by the
fan-out and by ``inventory check``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import asyncssh

from console.fanout.ssh import Connector, HandshakeTimeout, Pool
from console.fanout.transport import (
    CANCEL_FRAME,
    ActionFrames,
    Conversation,
    Handle,
    HostFailure,
)
from console.results.records import HostStatus
from inventory.model import Host
from protocol.errors import FrameError, SpyglassError
from protocol.transport import SUBSYSTEM

#: What each failure means for the host, first match wins: (error class, status, detail).
_FAILURES: tuple[tuple[type[BaseException], HostStatus, Callable[[BaseException], str]], ...] = (
    (asyncssh.HostKeyNotVerifiable, "hostkey-mismatch", lambda e: _reason(e)),
    (asyncssh.PermissionDenied, "auth-failed", lambda e: _reason(e)),
    (asyncssh.ConnectionLost, "error", lambda e: str(e) or type(e).__name__),
    (FrameError, "error", lambda e: str(e) or type(e).__name__),
    (asyncssh.DisconnectError, "error", lambda e: _reason(e)),
    (asyncssh.ChannelOpenError, "error", lambda e: _reason(e)),
    (asyncssh.Error, "error", lambda e: str(e) or type(e).__name__),
    (SpyglassError, "error", lambda e: str(e) or type(e).__name__),
    (socket.gaierror, "unreachable", lambda e: f"cannot resolve: {_strerror(e)}"),
    (HandshakeTimeout, "unreachable", lambda e: str(e)),
    (TimeoutError, "unreachable", lambda _e: "connect timed out"),
    (OSError, "unreachable", lambda e: _strerror(e) or str(e)),
)

#: Errors that mean the connection went away, not that the agent said or sent something wrong.
_LOST = (asyncssh.ConnectionLost, asyncssh.DisconnectError, asyncssh.ChannelOpenError, OSError)


def ssh_failure(err: BaseException, connector: Connector, host: Host) -> HostFailure:
    """The host status an error of the SSH path means (DESIGN §5)."""
    if isinstance(err, HostFailure):
        return err
    if isinstance(err, asyncssh.HostKeyNotVerifiable) and not connector.pinned_keys(host):
        return HostFailure("hostkey-mismatch", "no pinned host key: `inventory trust` it")
    for kind, status, detail in _FAILURES:
        if isinstance(err, kind):
            return HostFailure(status, detail(err), lost=isinstance(err, _LOST))
    return HostFailure("error", str(err))


def _reason(err: BaseException) -> str:
    return str(getattr(err, "reason", "") or err)


def _strerror(err: BaseException) -> str:
    return str(getattr(err, "strerror", "") or "")


class SshTransport:
    """Actions over SSH, on the connections (and parked channels) of ``pool``."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def converse(
        self, host: Host, frames: ActionFrames, handle: Handle, running: Callable[[], None]
    ) -> None:
        try:
            with self.pool.using(host):
                if (parked := self.pool.unpark(host)) is not None:
                    channel, conversation = parked
                    if conversation.hello is not None:  # said on this channel, not again
                        handle(conversation.hello)
                    if await self._exchange(
                        host, channel, conversation, frames.run, handle, running, may_retry=True
                    ):
                        return
                channel, conversation = await self._open(host)
                payload = frames.hello + frames.run
                await self._exchange(
                    host, channel, conversation, payload, handle, running, may_retry=False
                )
        except (asyncssh.Error, OSError, SpyglassError) as err:
            self.pool.discard(host)
            raise ssh_failure(err, self.pool.connector, host) from err

    async def _open(self, host: Host) -> tuple[asyncssh.SSHClientChannel[bytes], Conversation]:
        warm = self.pool.is_warm(host)
        conn = await self.pool.get(host)
        try:
            return await _session(conn)
        except (asyncssh.ChannelOpenError, asyncssh.ConnectionLost):
            if not warm:
                raise
            conn = await self.pool.get(host, fresh=True)  # a pooled connection had died
            return await _session(conn)

    async def _exchange(
        self,
        host: Host,
        channel: asyncssh.SSHClientChannel[bytes],
        conversation: Conversation,
        payload: bytes,
        handle: Handle,
        running: Callable[[], None],
        *,
        may_retry: bool,
    ) -> bool:
        """Send this action on ``channel`` and follow it to its end, then park the channel if
        that end was clean. False (``may_retry`` only) when the channel went away before any
        answer to this action: it can be sent again elsewhere."""
        over = conversation.begin(handle)
        running()
        clean = False
        try:
            channel.write(payload)
            try:
                await over
            except asyncio.CancelledError:
                if not channel.is_closing():
                    channel.write(CANCEL_FRAME)  # flushed before the close below
                raise
            except (HostFailure, asyncssh.Error, OSError):
                if may_retry and not conversation.answered:
                    return False
                raise
            clean = True
            return True
        finally:
            if clean:
                self.pool.park(host, channel, conversation)
            else:
                channel.close()


async def _session(
    conn: asyncssh.SSHClientConnection,
) -> tuple[asyncssh.SSHClientChannel[bytes], Conversation]:
    session = _Session()
    channel, _ = await conn.create_session(lambda: session, subsystem=SUBSYSTEM, encoding=None)
    return channel, session.conversation


class _Session(asyncssh.SSHClientSession[bytes]):
    """asyncssh's callbacks for one channel, handed to its ``Conversation``."""

    def __init__(self) -> None:
        self._channel: asyncssh.SSHClientChannel[bytes] | None = None
        self.conversation = Conversation(self._close)

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self._channel = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.conversation.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conversation.lost(exc)

    def _close(self) -> None:
        if self._channel is not None:
            self._channel.close()
