"""One agent: its configuration, keyring, ACL, replay cache, audit log, and the channels it serves.

Several agents may share a process (the lab runs hundreds per process); each keeps its own state,
while the keyring is shared between agents whose investigator keys are identical (see
``protocol.signing``), and signature and ACL verdicts between those whose ACL is the same too
(``_verdicts``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentd.audit import AuditLog
from agentd.privacy import row_masker
from agentd.replay import ReplayCache
from agentd.runner import Budget, run_operation
from modules.registry import all_modules, get_module
from protocol import __version__
from protocol.acl import Acl
from protocol.action import Action
from protocol.agent_config import AgentConfig, load_config
from protocol.envelope import Envelope
from protocol.errors import FrameError, ParamError, Rejected, RejectReason, SelectorError
from protocol.frames import ByteReader, encode_frame, read_frame
from protocol.messages import (
    TO_AGENT,
    Accepted,
    AgentHello,
    Done,
    ErrorMsg,
    Finished,
    Match,
    Message,
    Progress,
    RejectedMsg,
    decode_message,
)
from protocol.signing import Keyring
from protocol.verify import Policy, Verified, check_signers, check_time, parse_checked

if TYPE_CHECKING:
    from inventory.selector import Selector


@dataclass(frozen=True, slots=True)
class _Self:
    """This agent as a target selector sees a host."""

    name: str
    address: str
    tags: dict[str, str]


@functools.lru_cache(maxsize=256)
def _selector(target: str) -> Selector:
    # Imported here: only agents with ``enforce_target`` need the selector language, and an
    # idle single-agent process should not carry the inventory package (see bench/fanout.py).
    from inventory.selector import compile_selector

    return compile_selector(target)


@dataclass(frozen=True, slots=True)
class _Verdict:
    """The part of an envelope's verification that time does not change: signatures, signers,
    ACL; either ``verified`` or the ``rejection`` (reason, detail)."""

    action: Action
    verified: Verified | None
    rejection: tuple[RejectReason, str] | None = None

    def result(self) -> Verified:
        if self.verified is not None:
            return self.verified
        assert self.rejection is not None
        raise Rejected(*self.rejection)


def _judge(envelope: Envelope, keyring: Keyring, acl: Acl) -> _Verdict:
    try:
        return _Verdict(envelope.action, check_signers(envelope, keyring, acl))
    except Rejected as err:
        return _Verdict(envelope.action, None, (err.reason, err.detail))


#: Verdicts by (verification scope, envelope digest), shared by every agent of this process with
#: the same keyring and ACL: a fleet-wide action reaches each of the lab's 250 agents per process,
#: and one gpg check, one parse and one canonical form serve them all. The time steps are not
#: kept: they run again at every use, before the kept verdict, as DESIGN §2 orders them.
_verdicts: collections.OrderedDict[tuple[str, str], _Verdict] = collections.OrderedDict()
MAX_VERDICTS = 1024
_inflight: dict[tuple[str, str], asyncio.Future[_Verdict]] = {}


def _settle(key: tuple[str, str], done: asyncio.Future[_Verdict]) -> None:
    del _inflight[key]
    if not done.cancelled() and done.exception() is None:
        _verdicts[key] = done.result()
        if len(_verdicts) > MAX_VERDICTS:
            _verdicts.popitem(last=False)


class Agent:
    """Serves the ``spyglass`` subsystem for one configuration."""

    def __init__(self, config: AgentConfig) -> None:
        state = config.state_dir
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._apply(config)
        self.replay = ReplayCache(state)
        self.audit = AuditLog(config.resolve(config.agent.audit_log))
        self.running = 0
        self.modules = [m.name for m in all_modules()]

    def _apply(self, config: AgentConfig) -> None:
        """Adopt a configuration, deriving once what every action would otherwise recompute."""
        self.keyring = Keyring.from_folder(
            config.resolve(config.agent.investigators), config.state_dir / "gnupg"
        )
        self.root = str(config.root)
        # Agents of one process that trust the same keys with the same ACL verify an envelope once.
        self.verify_scope = self.keyring.digest + repr(sorted(config.acl.rules.items()))
        self.policy = Policy(config.agent.skew, config.agent.max_lifetime)
        self.config = config

    @property
    def name(self) -> str:
        return self.config.agent.name

    def reload(self) -> None:
        """Re-read the configuration and investigator keys; running actions keep their state."""
        self._apply(load_config(self.config.path))

    def check_targeted(self, target: str) -> None:
        """With ``enforce_target``, the signed target selector must select this agent (by its
        name and its configured tags): a captured envelope cannot be re-aimed at other hosts."""
        section = self.config.agent
        if not section.enforce_target:
            return
        me = _Self(section.name, "", {**section.tags, "name": section.name})
        try:
            selected = _selector(target).matches(me)
        except SelectorError as err:
            raise Rejected("acl", f"the signed target does not parse: {err.message}") from None
        if not selected:
            raise Rejected("acl", f"the signed target {target!r} does not select {section.name}")

    def hello(self) -> AgentHello:
        info = {
            "name": self.name,
            "version": __version__,
            "platform": f"{os.uname().sysname.lower()}-{os.uname().machine}",
            "modules": self.modules,
            "time_ms": int(time.time() * 1000),  # lets `inventory check` measure clock skew
        }
        return AgentHello(version=1, agent=info)

    async def verify(self, raw: Any) -> Verified:
        """DESIGN §2 up to the ACL; the signature and ACL verdict is shared by the agents of
        this process holding the same keyring and ACL, and checked once (gpg runs in a thread)."""
        key = (
            self.verify_scope,
            hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest(),
        )
        if (verdict := _verdicts.get(key)) is not None:
            _verdicts.move_to_end(key)
            check_time(verdict.action, int(time.time()), self.policy)
            return verdict.result()
        envelope = parse_checked(raw)
        check_time(envelope.action, int(time.time()), self.policy)
        if (pending := _inflight.get(key)) is None:
            pending = asyncio.ensure_future(
                asyncio.to_thread(_judge, envelope, self.keyring, self.config.acl)
            )
            _inflight[key] = pending
            pending.add_done_callback(lambda done: _settle(key, done))
        return (await asyncio.shield(pending)).result()

    async def serve(
        self,
        reader: ByteReader,
        write: Callable[[bytes], Awaitable[None]],
        peer: str,
        closed: asyncio.Future[Any] | None = None,
    ) -> None:
        """Serve one channel; ``closed`` resolves when the peer closes it (not on half-close)."""
        await Channel(self, write, peer).serve(reader, closed)

    def close(self) -> None:
        self.replay.close()
        self.audit.close()


class Channel:
    """One SSH channel: reads frames, dispatches them by type, runs accepted actions."""

    def __init__(self, agent: Agent, write: Callable[[bytes], Awaitable[None]], peer: str) -> None:
        self.agent = agent
        self._write = write
        self.peer = peer
        self.tasks: set[asyncio.Task[None]] = set()
        self._handlers: dict[str, Callable[[Any], Awaitable[None]]] = {
            "hello": self._on_hello,
            "run": self._on_run,
            "cancel": self._on_cancel,
        }

    async def send(self, message: Message) -> None:
        await self._write(encode_frame(message.to_frame(), self.agent.config.agent.max_frame))

    async def serve(self, reader: ByteReader, closed: asyncio.Future[Any] | None = None) -> None:
        config = self.agent.config.agent
        try:
            while True:
                idle = None if self.tasks else config.idle_timeout
                try:
                    async with asyncio.timeout(idle):
                        frame = await read_frame(reader, config.max_frame)
                    if frame is None:
                        await self._drain(closed)
                        return
                    message = decode_message(frame, TO_AGENT)
                except FrameError as err:
                    await self.send(ErrorMsg(detail=err.message))
                    return
                except TimeoutError:
                    await self.send(ErrorMsg(detail=f"idle for {idle} s, closing"))
                    return
                await self._handlers[message.TYPE](message)
        finally:
            for task in self.tasks:
                task.cancel()
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _drain(self, closed: asyncio.Future[Any] | None) -> None:
        """End of input. A half-close (``ssh -s ... < request``, or ``write_eof``) still gets
        its answers: wait for the running actions, unless the peer closes the channel, which
        cancels them (``serve``'s finally). Without a ``closed`` signal, cancel at once."""
        if closed is None:
            return
        while self.tasks and not closed.done():
            await asyncio.wait({*self.tasks, closed}, return_when=asyncio.FIRST_COMPLETED)

    async def _on_hello(self, _message: Any) -> None:
        await self.send(self.agent.hello())

    async def _on_cancel(self, _message: Any) -> None:
        for task in self.tasks:
            task.cancel()

    async def _on_run(self, message: Any) -> None:
        task = asyncio.create_task(self._run(message.envelope))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, raw: Any) -> None:
        agent = self.agent
        action_id = _action_id(raw)
        verified: Verified | None = None
        try:
            verified = await agent.verify(raw)
            agent.check_targeted(verified.action.target)
            params = _validate_operations(verified)
            if verified.action.id in agent.replay:
                if (stored := agent.replay.outcome(verified.action.id)) is not None:
                    self._audit(verified, "replayed-outcome")
                    for frame in stored:
                        await self._write(encode_frame({**frame, "replay": True}))
                    return
                raise Rejected("replayed", f"action {verified.action.id} was already run")
            if agent.running >= agent.config.limits.max_concurrent:
                raise Rejected("busy", f"{agent.running} actions running already")
        except Rejected as err:
            self._audit(verified, f"rejected:{err.reason}", action_id, err.detail)
            await self.send(RejectedMsg(reason=err.reason, detail=err.detail, action_id=action_id))
            return
        action = verified.action
        agent.replay.add(action.id, action.expire_after)
        self._audit(verified, "accepted")
        agent.running += 1
        try:
            await self._execute(verified, params)
        except Exception as err:  # an agent bug must end the conversation, not hang it
            await self.send(ErrorMsg(detail=f"agent failure: {type(err).__name__}: {err}"))
            raise
        finally:
            agent.running -= 1

    async def _execute(self, verified: Verified, params: list[dict[str, Any]]) -> None:
        action = verified.action
        limits = self.agent.config.limits
        budget = Budget(limits.match_limit, limits.result_bytes)
        recorded: list[bytes] = []
        last = len(action.operations) - 1
        for index, op in enumerate(action.operations):
            await self._operation(
                index,
                op.module,
                params[index],
                action.expire_after,
                budget,
                recorded,
                before=[Accepted(action_id=action.id)] if index == 0 else [],
                after=[Finished(action_id=action.id)] if index == last else [],
            )
        self.agent.replay.record(action.id, recorded)

    async def _operation(
        self,
        index: int,
        module: str,
        params: dict[str, Any],
        expire_after: int,
        budget: Budget,
        recorded: list[bytes],
        *,
        before: list[Message],
        after: list[Message],
    ) -> None:
        """Run one operation in its child while its events stream out, then send ``done``;
        ``before`` and ``after`` travel in the same writes as its first and last events (``before``
        waits up to HOLD_BEFORE for the first: a quick operation answers in one SSH packet)."""
        config = self.agent.config
        queue: asyncio.Queue[Message] = asyncio.Queue()
        for message in before:
            queue.put_nowait(message)
        mask = row_masker(module) if config.limits.privacy else None

        def sink(kind: str, payload: dict[str, Any]) -> None:
            if kind == "match":
                queue.put_nowait(Match(index, mask(payload) if mask else payload))
            else:
                queue.put_nowait(Progress(index, payload))

        timeout = max(0, min(config.limits.module_timeout, expire_after - time.time()))
        forward = asyncio.create_task(self._forward(queue, recorded, len(before)))
        try:
            outcome = await run_operation(
                module,
                params,
                root=self.agent.root,
                limits=config.limits,
                timeout=timeout,
                budget=budget,
                sink=sink,
            )
        except BaseException:  # cancelled, or the runner failed: stop forwarding too
            forward.cancel()
            raise
        for message in (Done(index, outcome.status, outcome.stats, outcome.errors), *after, _END):
            queue.put_nowait(message)
        await forward

    async def _forward(
        self, queue: asyncio.Queue[Message], recorded: list[bytes], held: int
    ) -> None:
        """Send events in order while the child runs: everything waiting goes in one write (one
        SSH packet instead of one per frame), and flow control applies per write. The first
        ``held`` messages wait up to HOLD_BEFORE for company."""
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
            while not queue.empty():
                batch.append(queue.get_nowait())
            messages = [m for m in batch if m is not _END]
            frames = [encode_frame(m.to_frame(), max_frame) for m in messages]
            kept = zip(frames, messages, strict=True)
            recorded.extend(frame for frame, m in kept if not isinstance(m, Progress))
            if frames:
                await self._write(b"".join(frames))
            if batch[-1] is _END:
                return

    def _audit(
        self,
        verified: Verified | None,
        verdict: str,
        action_id: str | None = None,
        detail: str = "",
    ) -> None:
        self.agent.audit.decision(
            action=verified.action if verified else None,
            action_id=verified.action.id if verified else action_id,
            signers=verified.signers if verified else (),
            peer=self.peer,
            verdict=verdict,
            detail=detail,
        )


_END = ErrorMsg(detail="end of operation")
#: How long ``accepted`` waits for the first event of the action's first operation, to share its
#: write: most operations end well within it (even on a loaded host), and then the whole answer
#: is one SSH packet. A console learns nothing from ``accepted`` alone that cannot wait that long.
HOLD_BEFORE = 0.5


def _validate_operations(verified: Verified) -> list[dict[str, Any]]:
    validated = []
    for op in verified.action.operations:
        module = get_module(op.module)
        if module is None:
            raise Rejected("unknown-module", f"this agent has no module {op.module!r}")
        try:
            validated.append(module.validate(op.params))
        except ParamError as err:
            raise Rejected("invalid-params", err.message) from None
    return validated


def _action_id(raw: Any) -> str | None:
    if isinstance(raw, dict) and isinstance(raw.get("action"), dict):
        action_id = raw["action"].get("id")
        return action_id if isinstance(action_id, str) and len(action_id) <= 64 else None
    return None
