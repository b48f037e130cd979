"""An accepted action's life, apart from the channels that follow it (DESIGN §2, §3 ``cancel``).

An ``Execution`` runs its operations to their end whatever happens to the channel that sent it:
only a ``cancel`` frame, its expiry or the agent's limits stop it. Its frames are appended to an
outcome file as they are produced (a ``Log``). Each channel that follows it, the one that sent
it and any that re-sends the identical envelope, reads that file from its start at its own pace,
in bounded chunks (``follow``): no row is sent twice or missed, and a reader that stalls costs
the agent a descriptor, not memory. The same reader serves a stored outcome once the action ended.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import struct
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from agentd.privacy import row_masker
from agentd.runner import Budget, OpOutcome, run_operation
from protocol.frames import encode_frame
from protocol.messages import Accepted, Done, Finished, Match, Message, Progress
from protocol.verify import Verified

if TYPE_CHECKING:
    from agentd.agent import Agent

#: What one follower reads from disk and writes to its channel at a time (a frame larger than
#: this, up to ``max_frame``, is read alone).
CHUNK = 64 << 10
#: How long ``accepted`` waits for the first event of the action's first operation, to share its
#: write: most operations end well within it (even on a loaded host), and then the whole answer
#: is one SSH packet. A console learns nothing from ``accepted`` alone that cannot wait that long.
HOLD_BEFORE = 0.5
#: A follower still sending when its action expires gets this long for the last frames (the
#: operation itself is killed at the expiry), then its channel is closed.
EXPIRY_GRACE = 1.0
#: Most events appended at once: a follower that keeps up sends them in one write.
BATCH = 256
_HEADER = struct.Struct(">I")


class Slot:
    """One of the agent's ``max_concurrent`` places, freed when its last holder lets it go."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._holders = 1
        agent.running += 1

    def hold(self) -> None:
        self._holders += 1

    def release(self) -> None:
        self._holders -= 1
        if self._holders == 0:
            self.agent.running -= 1


class Log:
    """An outcome file: whole frames appended by one writer, read by any number of followers;
    the descriptor closes when the last of them lets it go."""

    def __init__(self, fd: int, size: int = 0, *, ended: bool = False) -> None:
        self.fd = fd
        self.size = size  # what followers may read
        self.written = size  # what is on disk (the last frames wait for ``end``)
        self.ended = ended
        self._grown = asyncio.Event()
        self._users = 1
        self._tail = (-1, b"")  # the last append, which a follower that kept up needs not re-read

    def append(self, data: bytes, *, publish: bool = True) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]
        self._tail = (self.written, data)
        self.written += len(data)
        if publish:
            self.size = self.written
            self.wake()

    def wake(self) -> None:
        grown, self._grown = self._grown, asyncio.Event()
        grown.set()

    def waiter(self) -> asyncio.Event:
        """Set at the next change; take it before looking, so no change is missed."""
        return self._grown

    def end(self) -> None:
        self.size, self.ended = self.written, True
        self.wake()

    def read(self, offset: int) -> bytes:
        """Whole frames from ``offset``: up to CHUNK bytes, or one larger frame."""
        start, data = self._tail
        if start == offset:
            chunk = data[:CHUNK]
        else:
            chunk = os.pread(self.fd, min(CHUNK, self.size - offset), offset)
        end = 0
        while end + 4 <= len(chunk):
            (length,) = _HEADER.unpack_from(chunk, end)
            if end + 4 + length > len(chunk):
                break
            end += 4 + length
        if end:
            return chunk[:end]
        (length,) = _HEADER.unpack_from(chunk)
        return os.pread(self.fd, 4 + length, offset)

    def hold(self) -> None:
        self._users += 1

    def release(self) -> None:
        self._users -= 1
        if self._users == 0:
            os.close(self.fd)


class Execution:
    """One accepted action, running (or ended) in its own task, its frames going to a Log."""

    def __init__(
        self,
        slot: Slot,
        verified: Verified,
        params: list[dict[str, Any]],
        digest: str,
        envelope: Any = None,
    ) -> None:
        self.agent = agent = slot.agent
        self.slot = slot
        self.action = verified.action
        self.signers = verified.signers
        self.digest = digest
        self.envelope = envelope  # as received: what a watcher keeps to re-arm (agentd.watch)
        self.ran_at = int(time.time())
        try:
            self.log = Log(agent.replay.running(digest))
        except OSError:
            slot.release()
            raise
        agent.executions[digest] = self
        self.slot_stream_free = False  # the sender's follower carries the slot until it leaves
        self.progress: Progress | None = None
        self.progress_seq = 0
        self.failure: str | None = None
        self._summary: list[Message] = []
        self._complete = False
        self._stop: str | None = None
        self._op: asyncio.Task[OpOutcome] | None = None
        self.task = asyncio.create_task(self._run(params))

    def cancel(self, reason: str) -> None:
        """Stop at the console's request: the running operation ends ``cancelled``."""
        if self._stop is None:
            self._stop = reason
            if self._op is not None:
                self._op.cancel()

    async def _run(self, params: list[dict[str, Any]]) -> None:
        action, agent = self.action, self.agent
        limits = agent.config.limits
        budget = Budget(limits.match_limit, limits.result_bytes)
        last = len(action.operations) - 1
        try:
            for index, op in enumerate(action.operations):
                await self._operation(
                    index,
                    op.module,
                    params[index],
                    budget,
                    before=[Accepted(action_id=action.id)] if index == 0 else [],
                    after=[Finished(action_id=action.id)] if index == last else [],
                )
            self._complete = True
        except Exception as err:  # an agent bug must end the conversations, not hang them
            self.failure = f"agent failure: {type(err).__name__}: {err}"
            raise
        finally:
            # Stored first, then the last frames shown: whoever saw ``finished`` and sends the
            # envelope again finds the stored outcome.
            del agent.executions[self.digest]
            if self._complete:
                agent.replay.keep(action.id, self.digest, self.log.written, self._summary_bytes())
            else:  # cut short by the agent's own end or failure: nothing to serve again
                agent.replay.discard(self.digest)
            self.log.end()
            self.slot.release()
            self.log.release()

    def _summary_bytes(self) -> bytes | None:
        """None when the whole outcome fits ``outcome_bytes``, else its frames without rows."""
        cap = self.agent.config.limits.outcome_bytes
        if self.log.written <= cap:
            return None
        note = f"rows not kept: the stored outcome exceeded outcome_bytes ({cap})"
        kept = [
            dataclasses.replace(m, errors=[*m.errors, note]) if isinstance(m, Done) else m
            for m in self._summary
        ]
        return b"".join(encode_frame(m.to_frame()) for m in kept)

    async def _operation(
        self,
        index: int,
        module: str,
        params: dict[str, Any],
        budget: Budget,
        *,
        before: list[Message],
        after: list[Message],
    ) -> None:
        """Run one operation in its child while its events go to the log, then ``done``;
        ``before`` and ``after`` share the appends of its first and last events (``before``
        waits up to HOLD_BEFORE for the first: a quick operation answers in one SSH packet)."""
        config = self.agent.config
        queue: asyncio.Queue[Message | None] = asyncio.Queue()
        for message in before:
            queue.put_nowait(message)
        mask = row_masker(module) if config.limits.privacy else None

        def sink(kind: str, payload: dict[str, Any]) -> None:
            if kind == "match":
                queue.put_nowait(Match(index, mask(payload) if mask else payload))
            else:
                self.progress = Progress(index, payload)
                self.progress_seq += 1
                self.log.wake()

        remaining = self.action.expire_after - time.time()
        timeout = max(0, min(config.limits.module_timeout, remaining))
        forward = asyncio.create_task(self._forward(queue, len(before)))
        try:
            if self._stop is not None:
                outcome = OpOutcome("cancelled", errors=[self._stop])
            else:
                outcome = await self._run_op(module, params, timeout, budget, sink)
        except BaseException:  # the agent stops, or the runner failed: stop forwarding too
            forward.cancel()
            raise
        ending: list[Message | None] = [Done(index, outcome.status, outcome.stats, outcome.errors)]
        for event in [*ending, *after, None]:
            queue.put_nowait(event)
        await forward

    async def _run_op(
        self,
        module: str,
        params: dict[str, Any],
        timeout: float,
        budget: Budget,
        sink: Callable[[str, dict[str, Any]], None],
    ) -> OpOutcome:
        # The watchers' operations are answered by the agent itself (agentd.watch).
        local = self.agent.watchers.operations.get(module)
        self._op = asyncio.create_task(
            local(self, params, timeout, budget, sink)
            if local is not None
            else run_operation(
                module,
                params,
                root=self.agent.root,
                limits=self.agent.config.limits,
                timeout=timeout,
                budget=budget,
                sink=sink,
            )
        )
        try:
            return await self._op
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._stop is None or (current is not None and current.cancelling()):
                self._op.cancel()
                raise
            return OpOutcome("cancelled", errors=[self._stop])
        finally:
            self._op = None

    async def _forward(self, queue: asyncio.Queue[Message | None], held: int) -> None:
        """Append events in order while the child runs: everything waiting goes in one append
        (and so, to a follower that keeps up, in one write). The first ``held`` messages wait up
        to HOLD_BEFORE for company."""
        max_frame = self.agent.config.agent.max_frame
        while True:
            batch = [await queue.get()]
            while len(batch) <= held:
                try:
                    async with asyncio.timeout(HOLD_BEFORE):
                        batch.append(await queue.get())
                except TimeoutError:
                    break
            held = 0
            while not queue.empty() and len(batch) < BATCH:
                batch.append(queue.get_nowait())
            messages = [m for m in batch if m is not None]
            self._summary.extend(m for m in messages if not isinstance(m, Match))
            if any(isinstance(m, Done) for m in messages):
                self.progress = None  # the operation it counted has ended
            last = any(isinstance(m, Finished) for m in messages)
            if messages:
                data = b"".join(encode_frame(m.to_frame(), max_frame) for m in messages)
                self.log.append(data, publish=not last)  # ``finished`` waits for the store
            if batch[-1] is None:
                return


Write = Callable[[bytes], Awaitable[None]]


async def follow(
    log: Log,
    write: Write,
    *,
    expire_after: int,
    execution: Execution | None = None,
    ran_at: int | None = None,
) -> None:
    """Send a log's frames from its start through ``write`` until it ends; with ``ran_at`` (a
    re-sent envelope) each frame is marked ``replay`` and ``accepted`` carries ``ran_at``.
    A live ``execution`` also lends its latest progress when this follower has caught up. Raises
    TimeoutError past the action's expiry (plus EXPIRY_GRACE)."""
    offset, progress_seq = 0, 0
    async with asyncio.timeout(expire_after + EXPIRY_GRACE - time.time()):
        while True:
            changed = log.waiter()
            if offset < log.size:
                data = log.read(offset)
                sent = data if ran_at is None else _replayed(data, offset == 0, ran_at)
                offset += len(data)
                await write(sent)
            elif log.ended:
                return
            elif execution and execution.progress and execution.progress_seq != progress_seq:
                progress_seq = execution.progress_seq
                await write(encode_frame(execution.progress.to_frame()))
            else:
                await changed.wait()


def _replayed(frames: bytes, first: bool, ran_at: int) -> bytes:
    """Mark each frame ``"replay": true`` (the log's first, ``accepted``, also gets ``ran_at``)
    by splicing the field into its JSON object: no decoding of rows that only pass through."""
    out = []
    pos = 0
    while pos < len(frames):
        (length,) = _HEADER.unpack_from(frames, pos)
        body = frames[pos + 4 : pos + 4 + length]
        extra = b'"replay":true,' + (b'"ran_at":%d,' % ran_at if first and pos == 0 else b"")
        marked = b"{" + extra + body[1:]
        out.append(_HEADER.pack(len(marked)) + marked)
        pos += 4 + length
    return b"".join(out)
