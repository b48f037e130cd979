"""An agent's watchers: the ``fswatch*`` operations, answered in the agent process.

The watchers share the process's inotify descriptor, read by the agent's event loop
(``modules.fswatch`` says why they live here); each turns kernel events into changed paths below
the agent's root, and has them matched, a batch at a time, by the file module's filters and the
watcher's YARA rules (compiled once, when it is armed) in a confined operation child
(``agentd.runner.run_operation`` of ``fswatch``): the agent process never opens what it watches.
Matches become alerts in the agent's ``AlertStore``, each naming the watcher's action id, digest
and signers.

A watcher is its accepted envelope, kept in ``state_dir/watch/armed/`` until it expires or is
cancelled. At start the agent verifies each kept envelope again, as a new request (signatures
against today's keyring and ACL, its validity window, its target) and re-arms those that pass:
revoking a key ends the watchers it signed at the next restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inotify_simple import INotify, flags

from agentd.audit import Known
from agentd.runner import Budget, OpOutcome, Sink, run_operation
from agentd.watch_alerts import AlertStore
from modules.fswatch import COMPILED, LIMITS, compiled_rules
from modules.registry import all_modules, get_module
from protocol.acl import Acl, AclRule
from protocol.errors import ParamError, Rejected

if TYPE_CHECKING:
    from agentd.agent import Agent
    from agentd.execution import Execution

#: What makes a path worth matching again: written and closed, or moved in.
CHANGED = flags.CLOSE_WRITE | flags.MOVED_TO
#: Directories' own events, for recursive watchers.
DIR_EVENTS = flags.CREATE | flags.MOVED_TO
WATCH_FLAGS = flags.DONT_FOLLOW | flags.EXCL_UNLINK


def with_default_weights(acl: Acl) -> Acl:
    """The ACL with each module's ``default_weight`` applied where it has no rule of its own:
    such a module takes ``[acl.default]``'s investigators, with at least that minimum weight."""
    default = acl.rules.get("default")
    if default is None:
        return acl
    extra = {
        module: AclRule(max(weight, default.minimum_weight), default.investigators)
        for module, weight in ((m.name, m.default_weight) for m in all_modules())
        if weight > 1 and module not in acl.rules
    }
    return Acl({**acl.rules, **extra}) if extra else acl


class Kernel:
    """The one inotify instance of this agent process, shared by every watcher of its agents:
    instances are few (``fs.inotify.max_user_instances``, 128 by default, per user), watches
    plenty. A directory watched by several watchers has one watch descriptor, its events
    handed to each of them."""

    _current: Kernel | None = None

    @classmethod
    def current(cls) -> Kernel:
        loop = asyncio.get_running_loop()
        if cls._current is None or cls._current.loop is not loop:
            cls._current = cls(loop)
        return cls._current

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.inotify = INotify(nonblocking=True)
        self.subscribers: dict[int, dict[Watcher, str]] = {}  # wd -> watcher -> shown path
        loop.add_reader(self.inotify.fileno(), self._on_readable)

    def add(self, watcher: Watcher, real: str, shown: str) -> int:
        wd = int(self.inotify.add_watch(real, CHANGED | DIR_EVENTS | WATCH_FLAGS))
        self.subscribers.setdefault(wd, {})[watcher] = shown
        return wd

    def remove(self, watcher: Watcher, wd: int) -> None:
        subscribed = self.subscribers.get(wd, {})
        subscribed.pop(watcher, None)
        if not subscribed and self.subscribers.pop(wd, None) is not None:
            with contextlib.suppress(OSError):  # gone with its directory already
                self.inotify.rm_watch(wd)

    def _on_readable(self) -> None:
        try:
            events = self.inotify.read(timeout=0)
        except BlockingIOError:
            return
        for event in events:
            if event.mask & flags.Q_OVERFLOW:  # the kernel's queue was full: events were lost
                for watcher in {w for subs in self.subscribers.values() for w in subs}:
                    watcher.counters.dropped += 1
                continue
            subscribed = self.subscribers.get(event.wd, {})
            if event.mask & flags.IGNORED:
                self.subscribers.pop(event.wd, None)
            for watcher, base in list(subscribed.items()):
                watcher.on_event(event, base)


@dataclass
class Armed:
    """What arms a watcher, and what is kept on disk to re-arm it."""

    envelope: dict[str, Any]
    action_id: str
    digest: str
    signers: list[str]
    expire_after: int
    params: dict[str, Any]


@dataclass
class Counters:
    events: int = 0
    alerts: int = 0
    dropped: int = 0
    unwatched: int = 0  # directories left unwatched at the watch bound


@dataclass(eq=False)
class Watcher:
    """One armed watcher: inotify in, batches of changed paths out to confined children."""

    hub: Watchers
    armed: Armed
    status: str
    counters: Counters = field(default_factory=Counters)
    dirs: set[int] = field(default_factory=set)  # its watch descriptors
    pending: dict[str, None] = field(default_factory=dict)  # changed paths, in arrival order

    def start(self) -> None:
        params = self.armed.params
        self.recursive: bool = params["recursive"]
        self.max_pending: int = params["max_pending"]
        self.rate = LIMITS["events_per_second"]
        self.tokens, self.refilled = float(self.max_pending), time.monotonic()
        self.batch_params = {
            **params,
            COMPILED: compiled_rules(params["rules"]) if params["rules"] else None,
        }
        self.kernel = Kernel.current()
        for path in params["paths"]:
            self._watch(path, top=True)
        loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self.task = loop.create_task(self._match())
        delay = max(0.0, self.armed.expire_after - time.time())
        self.timer = loop.call_later(delay, self.hub.stop, self.armed.action_id, "expired")

    def _real(self, shown: str) -> str:
        return os.path.join(self.hub.agent.root, shown.lstrip("/"))

    def _watch(self, shown: str, *, top: bool = False) -> None:
        """Watch a path (and with ``recursive`` the directories below it, never through a
        symlink); at the agent's watch bound further directories are counted, not watched."""
        stack = [shown]
        while stack:
            path = stack.pop()
            if self.hub.watch_count >= LIMITS["watches"]:
                self.counters.unwatched += 1 + len(stack)
                return
            try:
                wd = self.kernel.add(self, self._real(path), path)
            except OSError:
                if top:
                    self.counters.unwatched += 1
                continue
            if wd not in self.dirs:
                self.hub.watch_count += 1
            self.dirs.add(wd)
            if not self.recursive:
                continue
            try:
                with os.scandir(self._real(path)) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(os.path.join(path, entry.name))
            except OSError:
                continue

    def on_event(self, event: Any, base: str) -> None:
        if event.mask & flags.IGNORED:
            if event.wd in self.dirs:
                self.dirs.discard(event.wd)
                self.hub.watch_count -= 1
            return
        path = os.path.join(base, event.name) if event.name else base
        if event.mask & flags.ISDIR:
            if self.recursive and event.mask & DIR_EVENTS:
                self._watch(path)
                self._changed(path)  # what it already holds is matched by a walk
            return
        if event.mask & CHANGED:
            self._changed(path)

    def _changed(self, path: str) -> None:
        """Queue a changed path unless it waits already; above the bounds, count it dropped."""
        self.counters.events += 1
        if path in self.pending:
            return
        now = time.monotonic()
        self.tokens = min(self.max_pending, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if len(self.pending) >= self.max_pending or self.tokens < 1:
            self.counters.dropped += 1
            return
        self.tokens -= 1
        self.pending[path] = None
        self.wake.set()

    async def _match(self) -> None:
        """Match waiting paths, a batch per confined child, one child at a time."""
        agent = self.hub.agent
        limits = agent.config.limits
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                batch = list(self.pending)[: LIMITS["batch"]]
                for path in batch:
                    del self.pending[path]
                await run_operation(
                    "fswatch",
                    {**self.batch_params, "paths": batch},
                    root=agent.root,
                    limits=limits,
                    timeout=limits.module_timeout,
                    budget=Budget(LIMITS["batch"], limits.result_bytes),
                    sink=self._alert,
                )

    def _alert(self, kind: str, row: dict[str, Any]) -> None:
        if kind != "match":
            return
        self.counters.alerts += 1
        armed = self.armed
        alert = {
            "time": int(time.time()),
            "watcher": armed.action_id,
            "digest": armed.digest,
            "signers": armed.signers,
        }
        self.hub.alerts.add({**alert, **row})

    def stop(self) -> None:
        self.timer.cancel()
        self.task.cancel()
        self.hub.watch_count -= len(self.dirs)
        for wd in self.dirs:
            self.kernel.remove(self, wd)
        self.dirs.clear()

    def row(self) -> dict[str, Any]:
        armed, counters = self.armed, self.counters
        status = self.status
        if counters.unwatched:
            status += f" ({counters.unwatched} paths unwatched: missing, or the watch bound)"
        return {
            "watcher": armed.action_id,
            "digest": armed.digest,
            "status": status,
            "paths": armed.params["paths"],
            "recursive": armed.params["recursive"],
            "expires": armed.expire_after,
            "watches": len(self.dirs),
            "events": counters.events,
            "alerts": counters.alerts,
            "dropped": counters.dropped,
            "signers": armed.signers,
        }


class Watchers:
    """The watchers of one agent, its alert store, and the ``fswatch*`` operations."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        directory = agent.config.state_dir / "watch"
        self.armed_dir = directory / "armed"
        self.armed_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.alerts = AlertStore(directory / "alerts", LIMITS["alerts"])
        self.watchers: dict[str, Watcher] = {}
        self.watch_count = 0
        self.operations = {
            "fswatch": self._arm_op,
            "fswatch_cancel": self._cancel_op,
            "fswatch_list": self._list_op,
            "fswatch_alerts": self._alerts_op,
        }

    async def rearm(self) -> None:
        """Verify each kept envelope again and re-arm the watchers it still allows."""
        for kept in sorted(self.armed_dir.glob("*.json")):
            armed = Armed(**json.loads(kept.read_text()))
            known = Known(armed.action_id)
            try:
                verified = await self.agent.verify(armed.envelope, known)
                self.agent.check_targeted(verified.action.target)
                params = _fswatch_params(verified.action.operations)
            except (Rejected, ParamError) as err:
                kept.unlink()
                detail = err.detail if isinstance(err, Rejected) else err.message
                self._audit(known, "watcher-not-rearmed", detail)
                continue
            armed.params, armed.signers = params, list(verified.signers)
            try:
                self._start(armed, "re-armed")
            except OSError as err:  # kept: the next start may have an inotify instance
                self._audit(known, "watcher-not-rearmed", f"inotify: {err}")
                continue
            self._audit(known, "watcher-rearmed")

    def _audit(self, known: Known, verdict: str, detail: str = "") -> None:
        self.agent.audit.decision(known, peer="(restart)", verdict=verdict, detail=detail)

    def _start(self, armed: Armed, status: str) -> Watcher:
        watcher = Watcher(self, armed, status)
        watcher.start()
        self.watchers[armed.action_id] = watcher
        return watcher

    def stop(self, watcher_id: str, status: str) -> Watcher | None:
        """Stop a watcher for good (expired, cancelled): it is not re-armed at the next start."""
        watcher = self.watchers.pop(watcher_id, None)
        if watcher is not None:
            watcher.stop()
            watcher.status = status
            (self.armed_dir / f"{watcher.armed.digest}.json").unlink(missing_ok=True)
        return watcher

    def close(self) -> None:
        """The agent stops: the watchers stop with it, to be re-armed at its next start."""
        for watcher in self.watchers.values():
            watcher.stop()
        self.watchers.clear()
        self.alerts.close()

    async def _arm_op(
        self, execution: Execution, params: dict[str, Any], _t: float, _b: Budget, sink: Sink
    ) -> OpOutcome:
        action = execution.action
        if action.id in self.watchers:
            return OpOutcome("error", errors=["an action arms one watcher at most"])
        if len(self.watchers) >= LIMITS["watchers"]:
            return OpOutcome("error", errors=[f"{LIMITS['watchers']} watchers are armed already"])
        armed = Armed(
            execution.envelope,
            action.id,
            execution.digest,
            list(execution.signers),
            action.expire_after,
            params,
        )
        try:
            watcher = self._start(armed, "armed")
        except OSError as err:  # no inotify instance left (fs.inotify.max_user_instances)
            return OpOutcome("error", errors=[f"inotify: {err}"])
        kept = self.armed_dir / f"{armed.digest}.json"
        kept.write_text(json.dumps(armed.__dict__))
        sink("match", watcher.row())
        return OpOutcome("ok", {"watches": len(watcher.dirs)})

    async def _cancel_op(
        self, _e: Execution, params: dict[str, Any], _t: float, _b: Budget, sink: Sink
    ) -> OpOutcome:
        watcher = self.stop(params["watcher"], "cancelled")
        if watcher is None:
            return OpOutcome("ok", {"cancelled": 0}, [f"no watcher {params['watcher']!r}"])
        sink("match", watcher.row())
        return OpOutcome("ok", {"cancelled": 1})

    async def _list_op(
        self, _e: Execution, _p: dict[str, Any], _t: float, _b: Budget, sink: Sink
    ) -> OpOutcome:
        for watcher in self.watchers.values():
            sink("match", watcher.row())
        return OpOutcome("ok", {"watchers": len(self.watchers)})

    async def _alerts_op(
        self, _e: Execution, params: dict[str, Any], timeout: float, budget: Budget, sink: Sink
    ) -> OpOutcome:
        """The stored alerts above ``since``; with ``follow``, new ones as they come, until the
        operation's timeout (the action's expiry, or ``module_timeout``)."""
        seq, sent = params["since"], 0
        try:
            async with asyncio.timeout(timeout if params["follow"] else None):
                while True:
                    changed = self.alerts.changed()
                    for alert in self.alerts.since(seq):
                        seq = alert["seq"]
                        if params["watcher"] not in (None, alert["watcher"]):
                            continue
                        row = {**alert, "dropped": self.alerts.dropped}
                        if not budget.take(len(str(row))):
                            return OpOutcome(
                                "limit", {"alerts": sent}, ["the match cap was reached"]
                            )
                        sink("match", row)
                        sent += 1
                    if not params["follow"]:
                        break
                    await changed.wait()
        except TimeoutError:
            pass
        return OpOutcome("ok", {"alerts": sent, "dropped": self.alerts.dropped})


def _fswatch_params(operations: Any) -> dict[str, Any]:
    """The validated params of an action's ``fswatch`` operation."""
    module = get_module("fswatch")
    assert module is not None
    for op in operations:
        if op.module == "fswatch":
            return module.validate(op.params)
    raise ParamError("the kept action has no fswatch operation")
