"""Fan-out: push one signed envelope to many hosts and account for every one of them.

Each host ends in exactly one status of DESIGN §5. Events (state changes, matches, progress, the
final result) go to a sink as they arrive; the CLI, runbooks and the TUI are all such sinks. How
an action reaches a host is the ``Transport``'s business (SSH, or the loopback in tests); what
the agent's messages mean for the host is a table here, keyed by message type. Every value an
agent sends is checked (console/fanout/boundary.py) before it becomes an event: a row that
fails is dropped and counted, and its host ends ``error`` with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from console.fanout import DEFAULT_CONCURRENCY
from console.fanout.boundary import row_problem, value_problem
from console.fanout.retry import RetryPolicy
from console.fanout.transport import ActionFrames, HostFailure, Transport
from console.results.records import (
    HostEvent,
    HostResult,
    HostStatus,
    MatchEvent,
    ProgressEvent,
    RetryEvent,
    Sink,
    StateEvent,
    Summary,
)
from inventory.model import Host
from protocol import messages as msg
from protocol.envelope import Envelope
from protocol.frames import encode_frame

_DONE_TO_HOST: dict[str, HostStatus] = {
    "timeout": "timeout",
    "error": "error",
    "cancelled": "cancelled",
}


class FanOut(Protocol):
    """What runs an envelope on hosts: a ``Dispatcher``, or a ``ShardedDispatcher`` of several."""

    async def run(self, envelope: Envelope, hosts: list[Host], sink: Sink) -> Summary: ...

    def cancel(self) -> None: ...


class Dispatcher:
    """Runs one envelope on a set of hosts with bounded concurrency and a per-host deadline."""

    def __init__(
        self,
        transport: Transport,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        grace: float = 5.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.transport = transport
        self.concurrency = concurrency
        self.grace = grace
        self.retry = retry
        """With a policy (``--until-expiry``), hosts that could not be reached or lost their
        connection before an answer are tried again until the action expires."""
        self._tasks: list[asyncio.Task[HostResult]] = []

    async def run(self, envelope: Envelope, hosts: list[Host], sink: Sink) -> Summary:
        start = time.monotonic()
        action = envelope.action
        deadline = start + max(1.0, action.expire_after - time.time()) + self.grace
        frames = ActionFrames(
            encode_frame(msg.ClientHello(versions=[1]).to_frame()),
            encode_frame(msg.Run(envelope=envelope.to_dict()).to_frame()),
        )
        modules = action.modules
        gate = asyncio.Semaphore(self.concurrency)
        summary = Summary(action.id)

        async def one(host: Host) -> HostResult:
            host_start = time.monotonic()
            attempt = 0
            waiting: HostResult | None = None  # the failed attempt a retry waits after
            try:
                while True:
                    attempt += 1
                    async with gate:
                        run = _HostRun(host, modules, sink)
                        result = await run.run(self.transport, frames, deadline)
                    if (wait := self._retry_after(run, attempt, action.expire_after)) is None:
                        break
                    sink(RetryEvent(host.name, attempt, *run.failure, int(wait * 1000)))
                    waiting = result
                    await asyncio.sleep(wait)
                    waiting = None
            except asyncio.CancelledError:
                if waiting is not None:  # stopped between attempts: the last one stands
                    result = waiting
                    result.detail = f"{result.detail}; retries stopped by the investigator"
                else:
                    result = HostResult(
                        host.name, "cancelled", detail="cancelled by the investigator"
                    )
            result.attempts = attempt
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

    def _retry_after(self, run: _HostRun, attempt: int, expire_after: int) -> float | None:
        """Seconds before this host's next attempt, or None when its result stands."""
        if self.retry is None or not run.retryable:
            return None
        return self.retry.delay(attempt, expire_after)


class _HostRun:
    """One host's action: its result, built from the agent's messages as they arrive."""

    _ON: ClassVar[dict[type[msg.Message], Callable[[_HostRun, Any], bool]]]

    def __init__(self, host: Host, modules: list[str], sink: Sink) -> None:
        self.host, self.modules, self.sink = host, modules, sink
        self.result = HostResult(host.name, "nomatch")
        self.statuses: list[str] = []
        self.dropped = 0  # rows refused at the boundary
        self.dropped_why = ""
        self.accepted = False  # the agent accepted the action (or replayed its outcome)
        self.lost = False  # the connection went away before the agent's last word

    @property
    def retryable(self) -> bool:
        """Whether another attempt may get an answer (``--until-expiry``): the host could not
        be reached, timed out before accepting, was busy, or the connection was lost."""
        r = self.result
        return (
            r.status == "unreachable"
            or (r.status == "timeout" and not self.accepted)
            or (r.status == "rejected" and r.reason == "busy")
            or (r.status == "error" and self.lost)
        )

    @property
    def failure(self) -> tuple[HostStatus, str | None, str]:
        return self.result.status, self.result.reason, self.result.detail

    async def run(self, transport: Transport, frames: ActionFrames, deadline: float) -> HostResult:
        self.sink(StateEvent(self.host.name, "connecting"))
        deadline_guard = asyncio.timeout_at(_loop_time(deadline))
        try:
            async with deadline_guard:
                await transport.converse(self.host, frames, self.handle, self._running)
        except TimeoutError:
            if deadline_guard.expired():
                return self._fail("timeout", "no answer before the action expired")
            return self._fail("unreachable", "connect timed out")
        except HostFailure as failure:
            self.lost = failure.lost
            return self._fail(failure.status, failure.detail)
        return self.result

    def handle(self, message: msg.Message) -> bool:
        """Apply one agent message; True once the action is over on this host."""
        on = self._ON.get(type(message))
        return on(self, message) if on is not None else False

    def _running(self) -> None:
        self.sink(StateEvent(self.host.name, "running"))

    def _on_match(self, message: msg.Match) -> bool:
        if not 0 <= message.op < len(self.modules):
            return self._drop(f"operation {message.op} is not in the action")
        module = self.modules[message.op]
        if (problem := row_problem(module, message.data)) is not None:
            return self._drop(problem)
        self.result.matches += 1
        self.sink(MatchEvent(self.host.name, message.op, module, message.data))
        return False

    def _drop(self, why: str) -> bool:
        self.dropped += 1
        self.dropped_why = self.dropped_why or why
        return False

    def _on_progress(self, message: msg.Progress) -> bool:
        if value_problem(message.stats) is None and 0 <= message.op < len(self.modules):
            self.sink(ProgressEvent(self.host.name, message.op, message.stats))
        return False

    def _on_done(self, message: msg.Done) -> bool:
        self.statuses.append(message.status)
        if message.errors:
            self.result.detail = "; ".join(message.errors[:3])
        return False

    def _on_accepted(self, message: msg.Accepted) -> bool:
        self.accepted = True
        if message.replay:
            self.result.replay, self.result.ran_at = True, message.ran_at
        return False

    def _on_hello(self, message: msg.AgentHello) -> bool:
        if value_problem(message.agent) is None:
            self.result.agent = message.agent
        return False

    def _on_rejected(self, message: msg.RejectedMsg) -> bool:
        self.result.status, self.result.reason = "rejected", message.reason
        self.result.detail = message.detail
        return True

    def _on_error(self, message: msg.ErrorMsg) -> bool:
        raise HostFailure("error", f"agent error: {message.detail}")

    def _on_finished(self, _message: msg.Finished) -> bool:
        self.result.status = self._final_status()
        if self.dropped:
            note = f"{self.dropped} row(s) refused by the console: {self.dropped_why}"
            self.result.status = "error"
            self.result.detail = f"{note}; {self.result.detail}" if self.result.detail else note
        return True

    def _final_status(self) -> HostStatus:
        for status in self.statuses:
            if status in _DONE_TO_HOST:
                return _DONE_TO_HOST[status]
        return "matched" if self.result.matches else "nomatch"

    def _fail(self, status: HostStatus, detail: str) -> HostResult:
        self.result.status, self.result.detail = status, detail
        return self.result


_HostRun._ON = {
    msg.Match: _HostRun._on_match,
    msg.Accepted: _HostRun._on_accepted,
    msg.Progress: _HostRun._on_progress,
    msg.Done: _HostRun._on_done,
    msg.AgentHello: _HostRun._on_hello,
    msg.RejectedMsg: _HostRun._on_rejected,
    msg.ErrorMsg: _HostRun._on_error,
    msg.Finished: _HostRun._on_finished,
}


def _loop_time(deadline_monotonic: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline_monotonic - time.monotonic())
