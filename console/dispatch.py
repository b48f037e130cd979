"""Fan-out: push one signed envelope to many hosts and account for every one of them.

Each host ends in exactly one status of DESIGN §5. Events (state changes, matches, progress, the
final result) go to a sink as they arrive; the CLI, runbooks and the TUI are all such sinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import asyncssh

from console.ssh import Pool
from inventory.model import Host
from protocol.envelope import Envelope
from protocol.errors import FrameError, SpyglassError
from protocol.frames import FrameDecoder, encode_frame
from protocol.messages import (
    TO_CONSOLE,
    AgentHello,
    Cancel,
    ClientHello,
    Done,
    ErrorMsg,
    Finished,
    Match,
    Progress,
    RejectedMsg,
    Run,
    decode_message,
)
from protocol.transport import SUBSYSTEM

HostStatus = Literal[
    "matched",
    "nomatch",
    "unreachable",
    "auth-failed",
    "hostkey-mismatch",
    "rejected",
    "timeout",
    "error",
    "cancelled",
]
ANSWERED: tuple[HostStatus, ...] = ("matched", "nomatch")
#: Every other status: the host did not answer the action (in HostStatus order).
FAILED_STATUSES: tuple[HostStatus, ...] = tuple(
    s for s in get_args(HostStatus) if s not in ANSWERED
)
#: Hosts in flight at once; SSH handshakes are paced separately by console.ssh.
DEFAULT_CONCURRENCY = 512
HostState = Literal["queued", "connecting", "running"]
_DONE_TO_HOST: dict[str, HostStatus] = {
    "timeout": "timeout",
    "error": "error",
    "cancelled": "cancelled",
}


@dataclass(slots=True)
class HostResult:
    host: str
    status: HostStatus
    reason: str | None = None
    detail: str = ""
    matches: int = 0
    elapsed_ms: int = 0
    agent: dict[str, Any] | None = None

    def to_event(self) -> dict[str, Any]:
        return {
            "event": "host",
            "host": self.host,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "matches": self.matches,
            "elapsed_ms": self.elapsed_ms,
        }


@dataclass(frozen=True, slots=True)
class StateEvent:
    host: str
    state: HostState


@dataclass(frozen=True, slots=True)
class MatchEvent:
    host: str
    op: int
    module: str
    data: dict[str, Any]

    def to_event(self) -> dict[str, Any]:
        return {
            "event": "match",
            "host": self.host,
            "op": self.op,
            "module": self.module,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    host: str
    op: int
    stats: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HostEvent:
    result: HostResult


Event = StateEvent | MatchEvent | ProgressEvent | HostEvent
Sink = Callable[[Event], None]


@dataclass
class Summary:
    action_id: str
    results: dict[str, HostResult] = field(default_factory=dict)
    elapsed_ms: int = 0

    def count(self, *statuses: str) -> int:
        return sum(1 for r in self.results.values() if r.status in statuses)

    @property
    def failed(self) -> int:
        return len(self.results) - self.count(*ANSWERED)

    def to_event(self) -> dict[str, Any]:
        return {
            "event": "summary",
            "action_id": self.action_id,
            "hosts": len(self.results),
            "matched": self.count("matched"),
            "nomatch": self.count("nomatch"),
            "failed": self.failed,
            "elapsed_ms": self.elapsed_ms,
        }

    def exit_status(self) -> int:
        """0 all answered and something matched; 1 all answered, nothing matched; 3 some failed."""
        if self.failed:
            return 3
        return 0 if self.count("matched") else 1


class Dispatcher:
    """Runs one envelope on a set of hosts with bounded concurrency and a per-host deadline."""

    def __init__(
        self, pool: Pool, *, concurrency: int = DEFAULT_CONCURRENCY, grace: float = 5.0
    ) -> None:
        self.pool = pool
        self.concurrency = concurrency
        self.grace = grace
        self._tasks: list[asyncio.Task[HostResult]] = []

    async def run(self, envelope: Envelope, hosts: list[Host], sink: Sink) -> Summary:
        start = time.monotonic()
        action = envelope.action
        deadline = start + max(1.0, action.expire_after - time.time()) + self.grace
        payload = _Payload(
            encode_frame(ClientHello(versions=[1]).to_frame()),
            encode_frame(Run(envelope=envelope.to_dict()).to_frame()),
        )
        modules = action.modules
        gate = asyncio.Semaphore(self.concurrency)
        summary = Summary(action.id)

        async def one(host: Host) -> HostResult:
            host_start = time.monotonic()
            try:
                async with gate:
                    result = await _HostRun(self.pool, host, payload, modules, sink).run(deadline)
            except asyncio.CancelledError:
                result = HostResult(host.name, "cancelled", detail="cancelled by the investigator")
            result.elapsed_ms = int((time.monotonic() - host_start) * 1000)
            summary.results[host.name] = result
            sink(HostEvent(result))
            return result

        for host in hosts:
            sink(StateEvent(host.name, "queued"))
        self._tasks = [asyncio.create_task(one(h)) for h in hosts]
        await asyncio.gather(*self._tasks)
        summary.elapsed_ms = int((time.monotonic() - start) * 1000)
        return summary

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()


@dataclass(frozen=True, slots=True)
class _Payload:
    hello: bytes
    run: bytes


class _HostRun:
    """One host's conversation: on the host's parked channel, the run frame alone; else connect
    (or reuse the connection), open a channel, send hello + run at once; read until finished."""

    def __init__(
        self, pool: Pool, host: Host, payload: _Payload, modules: list[str], sink: Sink
    ) -> None:
        self.pool, self.host, self.payload, self.modules, self.sink = (
            pool,
            host,
            payload,
            modules,
            sink,
        )
        self.result = HostResult(host.name, "nomatch")
        self.statuses: list[str] = []

    async def run(self, deadline: float) -> HostResult:
        self.sink(StateEvent(self.host.name, "connecting"))
        deadline_guard = asyncio.timeout_at(_loop_time(deadline))
        try:
            async with deadline_guard:
                with self.pool.using(self.host):
                    await self._converse()
        except TimeoutError:
            if deadline_guard.expired():
                return self._fail("timeout", "no answer before the action expired")
            return self._fail("unreachable", "connect timed out")
        except asyncssh.HostKeyNotVerifiable as err:
            self.pool.discard(self.host)
            if not self.pool.connector.pinned_keys(self.host):
                return self._fail("hostkey-mismatch", "no pinned host key: `inventory trust` it")
            return self._fail("hostkey-mismatch", err.reason)
        except asyncssh.PermissionDenied as err:
            return self._fail("auth-failed", err.reason)
        except (asyncssh.Error, OSError, socket.gaierror, FrameError, SpyglassError) as err:
            self.pool.discard(self.host)
            return self._fail(*_classify(err))
        return self.result

    async def _converse(self) -> None:
        if (parked := self.pool.unpark(self.host)) is not None:
            channel, conversation = parked
            self.result.agent = conversation.agent
            if await self._exchange(channel, conversation, self.payload.run, may_retry=True):
                return
            self.result = HostResult(self.host.name, "nomatch")  # went before any answer
        warm = self.pool.is_warm(self.host)
        conn = await self.pool.get(self.host)
        conversation = _Conversation()
        try:
            channel, _ = await conn.create_session(
                lambda: conversation, subsystem=SUBSYSTEM, encoding=None
            )
        except (asyncssh.ChannelOpenError, asyncssh.ConnectionLost):
            if not warm:
                raise
            conn = await self.pool.get(self.host, fresh=True)  # a pooled connection had died
            conversation = _Conversation()
            channel, _ = await conn.create_session(
                lambda: conversation, subsystem=SUBSYSTEM, encoding=None
            )
        payload = self.payload.hello + self.payload.run
        await self._exchange(channel, conversation, payload, may_retry=False)

    async def _exchange(
        self,
        channel: asyncssh.SSHClientChannel[bytes],
        conversation: _Conversation,
        payload: bytes,
        *,
        may_retry: bool,
    ) -> bool:
        """Send this action on ``channel`` and follow it to its end, then park the channel if
        that end was clean. False (``may_retry`` only) when the channel went away before any
        answer to this action: it can be sent again elsewhere."""
        over = conversation.begin(self._handle)
        self.sink(StateEvent(self.host.name, "running"))
        clean = False
        try:
            channel.write(payload)
            try:
                await over
            except (_Unfinished, asyncssh.Error, OSError):
                if may_retry and not conversation.answered:
                    return False
                raise
            except asyncio.CancelledError:  # closing the channel would not stop the agent's run
                with contextlib.suppress(asyncssh.Error, OSError):
                    channel.write(_CANCEL)
                raise
            clean = True
            return True
        finally:
            if clean:
                self.pool.park(self.host, channel, conversation)
            else:
                channel.close()

    def _handle(self, message: Any) -> bool:
        """Apply one agent message; True once the conversation is over."""
        if isinstance(message, Match):
            self.result.matches += 1
            self.sink(
                MatchEvent(self.host.name, message.op, self._module(message.op), message.data)
            )
        elif isinstance(message, Progress):
            self.sink(ProgressEvent(self.host.name, message.op, message.stats))
        elif isinstance(message, Done):
            self.statuses.append(message.status)
            if message.errors:
                self.result.detail = "; ".join(message.errors[:3])
        elif isinstance(message, AgentHello):
            self.result.agent = message.agent
        elif isinstance(message, RejectedMsg):
            self.result.status, self.result.reason = "rejected", message.reason
            self.result.detail = message.detail
            return True
        elif isinstance(message, ErrorMsg):
            raise _Unfinished(f"agent error: {message.detail}")
        elif isinstance(message, Finished):
            self.result.status = self._final_status()
            return True
        return False

    def _final_status(self) -> HostStatus:
        for status in self.statuses:
            if status in _DONE_TO_HOST:
                return _DONE_TO_HOST[status]
        return "matched" if self.result.matches else "nomatch"

    def _module(self, op: int) -> str:
        return self.modules[op] if 0 <= op < len(self.modules) else "?"

    def _fail(self, status: HostStatus, detail: str) -> HostResult:
        self.result.status, self.result.detail = status, detail
        return self.result


_CANCEL = encode_frame(Cancel().to_frame())


class _Unfinished(SpyglassError):
    """The channel ended without a ``finished`` frame."""


class _Conversation(asyncssh.SSHClientSession[bytes]):
    """A channel's callbacks: frames are decoded as data arrives (no stream reads to await, the
    cheapest way through asyncssh) and handed to the current action's ``handle``, which says
    when it is over. The channel may carry one action after another (see ``Pool.park``); a
    protocol fault closes it, so it is never reused."""

    def __init__(self) -> None:
        self._decoder = FrameDecoder()
        self._handle: Callable[[Any], bool] = lambda _message: False
        self._channel: asyncssh.SSHClientChannel[bytes] | None = None
        self.over: asyncio.Future[None] | None = None
        self.answered = False  # a frame arrived for the current action
        self.agent: dict[str, Any] = {}  # from the agent's hello, for later actions

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self._channel = chan

    def begin(self, handle: Callable[[Any], bool]) -> asyncio.Future[None]:
        self._handle, self.answered = handle, False
        self.over = asyncio.get_running_loop().create_future()
        return self.over

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        try:
            for frame in self._decoder.feed(data):
                message = decode_message(frame, TO_CONSOLE)
                if self.over is None or self.over.done():
                    raise _Unfinished(f"a {frame['type']!r} frame arrived between actions")
                self.answered = True
                if isinstance(message, AgentHello):
                    self.agent = message.agent
                if self._handle(message):
                    self.over.set_result(None)
        except Exception as err:  # raised again in _exchange, classified by run()
            if self.over is not None and not self.over.done():
                self.over.set_exception(err)
            if self._channel is not None:
                self._channel.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.over is not None and not self.over.done():
            self.over.set_exception(
                exc or _Unfinished("the agent closed the channel before finishing")
            )


def _classify(err: BaseException) -> tuple[HostStatus, str]:
    if isinstance(err, _Unfinished | FrameError | asyncssh.ConnectionLost):
        return "error", str(err) or type(err).__name__
    if isinstance(err, asyncssh.DisconnectError | asyncssh.ChannelOpenError):
        return "error", err.reason
    if isinstance(err, socket.gaierror):
        return "unreachable", f"cannot resolve: {err.strerror}"
    if isinstance(err, TimeoutError):
        return "unreachable", "connect timed out"
    if isinstance(err, OSError):
        return "unreachable", err.strerror or str(err)
    return "error", str(err)


def _loop_time(deadline_monotonic: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline_monotonic - time.monotonic())
