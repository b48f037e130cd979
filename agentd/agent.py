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
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentd.audit import AuditLog, Known
from agentd.execution import Execution, Log, Slot, follow
from agentd.replay import ReplayCache, Seen
from agentd.watch import Watchers, with_default_weights
from modules.registry import all_modules, get_module
from modules.timedrift import now_ms
from protocol import __version__
from protocol.acl import Acl
from protocol.action import Action
from protocol.agent_config import AgentConfig, acl_strangers, load_config
from protocol.envelope import Envelope
from protocol.errors import FrameError, ParamError, Rejected, RejectReason, SelectorError
from protocol.frames import ByteReader, encode_frame, read_frame
from protocol.messages import TO_AGENT, AgentHello, ErrorMsg, Message, RejectedMsg, decode_message
from protocol.signing import GpgNeeded, Keyring
from protocol.verify import Policy, Verified, check_time, parse_checked, trusted_signers

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
    ACL; the trusted ``signers`` (also when the ACL refuses them) and the ``rejection``."""

    action: Action
    signers: tuple[str, ...]
    rejection: tuple[RejectReason, str] | None = None

    def result(self) -> Verified:
        if self.rejection is not None:
            raise Rejected(*self.rejection)
        return Verified(self.action, self.signers)


def _judge(envelope: Envelope, keyring: Keyring, acl: Acl, *, spawn: bool = True) -> _Verdict:
    try:
        signers = tuple(trusted_signers(envelope, keyring, spawn=spawn))
    except Rejected as err:
        return _Verdict(envelope.action, (), (err.reason, err.detail))
    try:
        acl.check(envelope.action.modules, signers)
    except Rejected as err:
        return _Verdict(envelope.action, signers, (err.reason, err.detail))
    return _Verdict(envelope.action, signers)


#: Verdicts by (verification scope, envelope digest), shared by every agent of this process with
#: the same keyring and ACL: a fleet-wide action reaches each of the lab's 250 agents per process,
#: and one signature check, one parse and one canonical form serve them all. The time steps are not
#: kept: they run again at every use, before the kept verdict, as DESIGN §2 orders them.
_verdicts: collections.OrderedDict[tuple[str, str], _Verdict] = collections.OrderedDict()
MAX_VERDICTS = 1024
#: How many times ``idle_timeout`` a channel that carried actions may stay silent (300 s by
#: default): consoles park such a channel for up to 240 s, so that a run over 10,000 hosts
#: still finds the channels of its last run open on every host.
PARKED = 5
_inflight: dict[tuple[str, str], asyncio.Future[_Verdict]] = {}


def _keep(key: tuple[str, str], verdict: _Verdict) -> None:
    _verdicts[key] = verdict
    if len(_verdicts) > MAX_VERDICTS:
        _verdicts.popitem(last=False)


def _settle(key: tuple[str, str], done: asyncio.Future[_Verdict]) -> None:
    del _inflight[key]
    if not done.cancelled() and done.exception() is None:
        _keep(key, done.result())


class Agent:
    """Serves the ``spyglass`` subsystem for one configuration."""

    def __init__(self, config: AgentConfig) -> None:
        state = config.state_dir
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._apply(config)
        self.replay = ReplayCache(state, config.limits.outcome_disk_bytes)
        self.audit = AuditLog(config.resolve(config.agent.audit_log), config.agent.name)
        self.running = 0  # slots of max_concurrent taken (agentd.execution.Slot)
        self.executions: dict[str, Execution] = {}  # running actions, by digest
        self.modules = [m.name for m in all_modules()]
        self.watchers = Watchers(self)

    def _apply(self, config: AgentConfig) -> None:
        """Adopt a configuration, deriving once what every action would otherwise recompute.
        The keyring is exactly the investigators folder's keys, built whole before the switch:
        there is no moment without one, and actions already running are not touched."""
        homes = config.state_dir / "keyrings"
        homes.mkdir(parents=True, exist_ok=True, mode=0o700)
        keyring = Keyring.from_folder(config.resolve(config.agent.investigators), homes)
        for line in acl_strangers(config.acl, keyring.fingerprints):
            print(f"spyglass-agentd: {config.agent.name}: {line}", file=sys.stderr, flush=True)
        # Agents of one process that trust the same keys with the same ACL verify an envelope once.
        self.acl = with_default_weights(config.acl)  # fswatch and ping want two approvers
        scope = keyring.digest + repr(sorted(self.acl.rules.items()))
        self.keyring, self.verify_scope, self.config = keyring, scope, config
        self.root = str(config.root)
        self.policy = Policy(config.agent.skew, config.agent.max_lifetime)
        _sweep_keyrings(homes, config.state_dir / "gnupg")

    @property
    def name(self) -> str:
        return self.config.agent.name

    def reload(self) -> None:
        """Re-read the configuration and investigator keys; running actions keep their state."""
        self._apply(load_config(self.config.path))

    def prune(self) -> None:
        """Forget what expired (run periodically by the server)."""
        self.replay.prune()

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
            "time_ms": now_ms(),  # `inventory check`'s skew: the clock `timedrift` reads
        }
        return AgentHello(version=1, agent=info)

    async def verify(self, raw: Any, known: Known) -> Verified:
        """DESIGN §2 up to the ACL; the signature and ACL verdict is shared by the agents of
        this process holding the same keyring and ACL, and checked once: in place when the
        investigators' own signature shape is (a fraction of a millisecond), else in a thread,
        where gpg judges it.
        ``known`` learns the action and its trusted signers as they are established."""
        key = (
            self.verify_scope,
            hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest(),
        )
        if (kept := _verdicts.get(key)) is not None:
            _verdicts.move_to_end(key)
            known.learn(kept.action)
            known.signers = kept.signers
            check_time(kept.action, int(time.time()), self.policy)
            return kept.result()
        envelope = parse_checked(raw)
        known.learn(envelope.action)
        check_time(envelope.action, int(time.time()), self.policy)
        if (pending := _inflight.get(key)) is None:
            try:
                verdict = _judge(envelope, self.keyring, self.acl, spawn=False)
            except GpgNeeded:
                pending = asyncio.ensure_future(
                    asyncio.to_thread(_judge, envelope, self.keyring, self.acl)
                )
                _inflight[key] = pending
                pending.add_done_callback(lambda done: _settle(key, done))
            else:
                _keep(key, verdict)
        if pending is not None:
            verdict = await asyncio.shield(pending)
        known.signers = verdict.signers
        return verdict.result()

    async def serve(
        self,
        reader: ByteReader,
        write: Callable[[bytes], Awaitable[None]],
        peer: str,
        closed: asyncio.Future[Any] | None = None,
        close: Callable[[], None] = lambda: None,
    ) -> None:
        """Serve one channel; ``closed`` resolves when the peer closes it (not on half-close),
        ``close`` closes it from this end."""
        await Channel(self, write, peer, close).serve(reader, closed)

    def close(self) -> None:
        self.watchers.close()
        self.replay.close()
        self.audit.close()


def _sweep_keyrings(homes: Path, legacy: Path) -> None:
    """Delete the keyrings of key sets no agent of this process uses any more, and the single
    keyring older agents kept (it holds every key ever imported, revoked ones included)."""
    in_use = Keyring.homes_in_use()
    shutil.rmtree(legacy, ignore_errors=True)
    for home in homes.iterdir():
        if home not in in_use:
            shutil.rmtree(home, ignore_errors=True)


class Channel:
    """One SSH channel: reads frames, dispatches them by type, follows the actions it sent (or
    re-sent). Closing it stops the following, never the actions: only ``cancel`` does."""

    def __init__(
        self,
        agent: Agent,
        write: Callable[[bytes], Awaitable[None]],
        peer: str,
        close: Callable[[], None],
    ) -> None:
        self.agent = agent
        self._write = write
        self._close = close
        self.peer = peer
        self.tasks: set[asyncio.Task[None]] = set()
        self.actions = 0  # run frames received
        self._idle: asyncio.Timeout | None = None  # the wait for the next frame, if one runs
        self.following: dict[asyncio.Task[None], tuple[Execution, Known]] = {}
        self._handlers: dict[str, Callable[[Any], Awaitable[None]]] = {
            "hello": self._on_hello,
            "run": self._on_run,
            "cancel": self._on_cancel,
        }

    async def write(self, data: bytes) -> None:
        """Write whole frames; a peer that reads nothing for ``write_timeout`` loses the
        channel (ConnectionResetError), so a stalled reader holds no slot and no buffer."""
        deadline = self.agent.config.agent.write_timeout
        try:
            async with asyncio.timeout(deadline):
                await self._write(data)
        except TimeoutError:
            self._close()
            raise ConnectionResetError(f"the peer read nothing for {deadline} s") from None

    async def send(self, message: Message) -> None:
        await self.write(encode_frame(message.to_frame(), self.agent.config.agent.max_frame))

    async def serve(self, reader: ByteReader, closed: asyncio.Future[Any] | None = None) -> None:
        try:
            while True:
                idle = None if self.tasks else self._idle_limit()
                try:
                    frame = await self._next_frame(reader, idle)
                    if frame is None:
                        await self._drain(closed)
                        return
                    message = decode_message(frame, TO_AGENT)
                except FrameError as err:
                    await self.send(ErrorMsg(detail=err.message))
                    return
                except TimeoutError:  # said to a peer that never sent an action; a parked
                    if not self.actions:  # channel just closes, which its console expects
                        await self.send(ErrorMsg(detail=f"idle for {idle} s, closing"))
                    return
                await self._handlers[message.TYPE](message)
        finally:
            for task in self.tasks:
                task.cancel()
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _next_frame(self, reader: ByteReader, idle: float | None) -> dict[str, Any] | None:
        """The next frame; past ``idle`` seconds without one, TimeoutError. While actions are
        followed there is no limit; it starts when the last one ends (``_task_done``)."""
        try:
            async with asyncio.timeout(idle) as self._idle:
                return await read_frame(reader, self.agent.config.agent.max_frame)
        finally:
            self._idle = None

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not self.tasks and self._idle is not None and self._idle.when() is None:
            self._idle.reschedule(asyncio.get_running_loop().time() + self._idle_limit())

    def _idle_limit(self) -> float:
        """``idle_timeout``, or, once the channel carried actions, PARKED times that: its
        console parks it for the next action (a pooled connection stays five minutes)."""
        return self.agent.config.agent.idle_timeout * (PARKED if self.actions else 1)

    async def _drain(self, closed: asyncio.Future[Any] | None) -> None:
        """End of input. A half-close (``ssh -s ... < request``, or ``write_eof``) still gets
        its answers: wait for the followed actions, unless the peer closes the channel (the
        actions run on; only the following stops). Without a ``closed`` signal, stop at once."""
        if closed is None:
            return
        while self.tasks and not closed.done():
            await asyncio.wait({*self.tasks, closed}, return_when=asyncio.FIRST_COMPLETED)

    async def _on_hello(self, _message: Any) -> None:
        await self.send(self.agent.hello())

    async def _on_cancel(self, _message: Any) -> None:
        """Stop the actions this channel follows (and drop its requests still being checked)."""
        for task in self.tasks:
            if (followed := self.following.get(task)) is None:
                task.cancel()
                continue
            execution, known = followed
            execution.cancel(f"cancelled by the console at {self.peer}")
            self._audit(known, "cancelled")

    async def _on_run(self, message: Any) -> None:
        self.actions += 1
        task = asyncio.create_task(self._run(message.envelope))
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _run(self, raw: Any) -> None:
        agent = self.agent
        known = Known(_action_id(raw))
        try:
            verified = await agent.verify(raw, known)
            agent.check_targeted(verified.action.target)
            params = _validate_operations(verified)
            action = verified.action
            if (seen := agent.replay.get(action.id)) is not None:
                log, execution, slot = self._served_again(known, seen)
                ran_at: int | None = seen.ran_at
            else:
                execution = Execution(self._slot(), verified, params, known.digest, raw)
                agent.replay.add(action.id, known.digest, action.expire_after, execution.ran_at)
                self._audit(known, "accepted")
                log, slot, ran_at = execution.log, execution.slot, None
                log.hold()
                slot.hold()
        except Rejected as err:
            self._audit(known, f"rejected:{err.reason}", err.detail)
            reply = RejectedMsg(reason=err.reason, detail=err.detail, action_id=known.action_id)
            await self.send(reply)
            return
        await self._follow(known, log, execution, slot, ran_at)

    def _served_again(self, known: Known, seen: Seen) -> tuple[Log, Execution | None, Slot]:
        """An id that was accepted before: serve the identical action (live while it runs, else
        its stored outcome) within a slot; refuse anything else, serving nothing."""
        agent = self.agent
        action_id = known.action_id
        if seen.digest != known.digest:
            raise Rejected("replayed", f"action id {action_id} was used by another action")
        if (execution := agent.executions.get(known.digest)) is not None:
            if execution.slot_stream_free:  # its sender left: this follower takes its place
                execution.slot_stream_free = False
                execution.slot.hold()
                slot = execution.slot
            else:
                slot = self._slot()
            execution.log.hold()
            self._audit(known, "attached")
            return execution.log, execution, slot
        if (fd := agent.replay.stored(seen)) is None:
            raise Rejected("replayed", f"action {action_id} was already run; no outcome is held")
        try:
            slot = self._slot()
        except Rejected:
            os.close(fd)
            raise
        self._audit(known, "replayed-outcome")
        return Log(fd, os.fstat(fd).st_size, ended=True), None, slot

    def _slot(self) -> Slot:
        agent = self.agent
        if agent.running >= agent.config.limits.max_concurrent:
            raise Rejected("busy", f"{agent.running} actions running already")
        return Slot(agent)

    async def _follow(
        self,
        known: Known,
        log: Log,
        execution: Execution | None,
        slot: Slot,
        ran_at: int | None,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None and known.action is not None
        if execution is not None:
            self.following[task] = (execution, known)
        try:
            await follow(
                log,
                self.write,
                expire_after=known.action.expire_after,
                execution=execution,
                ran_at=ran_at,
            )
            if execution is not None and execution.failure:
                await self.send(ErrorMsg(detail=execution.failure))
        except TimeoutError:  # the action expired while this channel still had frames to take
            self._close()
        except ConnectionError:  # the channel went away, or was closed for not reading
            pass
        finally:
            self.following.pop(task, None)
            log.release()
            slot.release()
            if execution is not None and slot is execution.slot:
                execution.slot_stream_free = True

    def _audit(self, known: Known, verdict: str, detail: str = "") -> None:
        self.agent.audit.decision(known, peer=self.peer, verdict=verdict, detail=detail)


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
