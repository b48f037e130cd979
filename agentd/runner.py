"""Runs each operation in a child forked by the agent process's zygote, under the agent's limits.

The zygote (``agentd.zygote``) has every module imported and forks a child per operation, so a
child starts in about a millisecond and the agent's event loop only sends a datagram. The agent
enforces what a child cannot be trusted to: the wall-clock timeout, the per-action match and byte
caps, and cancellation (closing the channel kills the child).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol.agent_config import LimitsSection
from protocol.errors import FrameError, SpyglassError
from protocol.frames import read_frame
from protocol.messages import DoneStatus

#: How long a killed child may take to be reported dead before the runner stops waiting.
REAP_TIMEOUT = 5.0
#: A zygote that died before serving anything is not restarted again within this many seconds.
RESPAWN_DELAY = 2.0


@dataclass
class Budget:
    """What one action may still send back, shared by its operations."""

    matches: int
    result_bytes: int

    def take(self, size: int) -> bool:
        if self.matches <= 0 or self.result_bytes < size:
            self.matches = 0
            return False
        self.matches -= 1
        self.result_bytes -= size
        return True


@dataclass
class OpOutcome:
    status: DoneStatus
    stats: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


Sink = Callable[[str, dict[str, Any]], None]  # (event type, payload) -> None


async def run_operation(
    module: str,
    params: dict[str, Any],
    *,
    root: str,
    limits: LimitsSection,
    timeout: float,
    budget: Budget,
    sink: Sink,
) -> OpOutcome:
    """Run one operation to its end; ``sink('match'|'progress', payload)`` receives its events."""
    request = {
        "module": module,
        "params": params,
        "root": root,
        "cpu_seconds": limits.cpu_seconds,
        "memory_mb": limits.memory_mb,
        "nice": limits.nice,
        "require_confinement": limits.require_confinement,
    }
    zygote = Zygote.current()
    read_fd, write_fd = os.pipe()
    try:
        pid, exited = await zygote.launch(request, write_fd)
    except ZygoteError as err:
        os.close(read_fd)
        return OpOutcome("error", errors=[str(err)])
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    pipe = os.fdopen(read_fd, "rb", 0)
    ended, status = False, None
    transport: asyncio.BaseTransport | None = None
    try:  # from here on, whatever happens (a cancel too), the child is killed unless it ended
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), pipe
        )
        async with asyncio.timeout(timeout):
            outcome, ended = await _pump(reader, budget, sink)
    except TimeoutError:
        outcome = OpOutcome("timeout", errors=[f"operation ran past its {timeout:.0f} s timeout"])
    finally:
        if transport is not None:
            transport.close()
        else:  # cancelled while connecting: asyncio closed its transport, the pipe is ours
            pipe.close()
        if not ended:  # the child may still run: timeout, cap reached, cancelled, or it died
            await zygote.kill(pid)
            try:
                status = await asyncio.wait_for(asyncio.shield(exited), REAP_TIMEOUT)
            except TimeoutError:
                status = None
    if outcome is _DIED:
        return _death(status, limits)
    return outcome


_DIED = OpOutcome("error", errors=["the module's process died before finishing"])


def _death(exitcode: int | None, limits: LimitsSection) -> OpOutcome:
    """Name why a child ended without reporting: the CPU rlimit, the memory rlimit, or a crash."""
    if exitcode is None:
        return OpOutcome(
            "error", errors=["the module's process was lost with the agent's zygote (it died)"]
        )
    if exitcode == -signal.SIGXCPU:
        return OpOutcome("timeout", errors=[f"CPU limit of {limits.cpu_seconds} s reached"])
    if exitcode == -signal.SIGKILL:
        return OpOutcome("error", errors=[f"killed (memory limit {limits.memory_mb} MiB?)"])
    return OpOutcome("error", errors=[f"the module's process died (exit code {exitcode})"])


async def _pump(reader: asyncio.StreamReader, budget: Budget, sink: Sink) -> tuple[OpOutcome, bool]:
    """Forward the child's events; returns its outcome, and whether the child reported its end."""
    while True:
        try:
            frame = await read_frame(reader, max_frame=1 << 30)
        except FrameError as err:
            return OpOutcome("error", errors=[f"child sent garbage: {err}"]), False
        if frame is None:
            return _DIED, False
        kind = frame.pop("type")
        if kind == "match":
            if not budget.take(len(str(frame["data"]))):
                outcome = OpOutcome(
                    "limit", errors=["the agent's match or result-size cap was reached"]
                )
                return outcome, False
            sink("match", frame["data"])
        elif kind == "progress":
            sink("progress", frame["stats"])
        elif kind == "end":
            return OpOutcome(frame["status"], frame["stats"], frame["errors"]), True


class ZygoteError(SpyglassError):
    """The zygote could not start an operation (it died, or fork failed)."""


class Zygote:
    """The agent's end of its process's zygote: launches children, kills them, learns how they
    ended. One per process and event loop, started on first use, replaced when it dies."""

    _current: Zygote | None = None
    #: The module run as the zygote: tests name one that first registers their test-only
    #: modules (``tests/support/confine_probe.py``), so those never enter the shipped registry.
    entry = "agentd.zygote"

    @classmethod
    def current(cls) -> Zygote:
        loop = asyncio.get_running_loop()
        zygote = cls._current
        if zygote is not None and zygote.loop is loop and zygote.crashed_recently():
            return zygote  # its launches fail with its reason until RESPAWN_DELAY has passed
        if zygote is None or zygote.dead or zygote.loop is not loop:
            if zygote is not None:
                zygote.close()
            zygote = cls._current = cls(loop)
        return zygote

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dead = False
        self.answered = False  # has it ever replied (so it started fine)?
        self.died_at = 0.0
        self.reason = ""
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            # A fresh interpreter, not a fork of this (threaded) process: see agentd.zygote.
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.entry, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": _import_path()},
            )
        self._sock.setblocking(False)
        self._next_id = 0
        self._launches: dict[int, asyncio.Future[tuple[int, asyncio.Future[int | None]]]] = {}
        self._exits: dict[int, asyncio.Future[int | None]] = {}
        self._writable: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        loop.add_reader(self._sock, self._on_readable)

    def crashed_recently(self) -> bool:
        """Died before serving anything (a broken install?), moments ago: respawning it for
        every operation would only multiply interpreter start-ups."""
        return self.dead and not self.answered and time.monotonic() < self.died_at + RESPAWN_DELAY

    async def launch(
        self, request: dict[str, Any], result_fd: int
    ) -> tuple[int, asyncio.Future[int | None]]:
        """Start a child that runs ``request`` and writes its frames to ``result_fd``; returns its
        pid and a future of its exit status (None if the zygote died first). The zygote learns
        the module and root too, to prepare the child's Landlock ruleset before forking it."""
        self._next_id += 1
        request_id = self._next_id
        started = self.loop.create_future()
        self._launches[request_id] = started
        request_fd = os.memfd_create("spyglass-request", os.MFD_CLOEXEC)
        try:
            os.write(request_fd, json.dumps(request).encode())  # a memfd takes it all at once
            os.lseek(request_fd, 0, os.SEEK_SET)
            message = {"op": "run", "id": request_id, "module": request["module"]}
            await self._send({**message, "root": request["root"]}, [request_fd, result_fd])
        except BaseException:
            self._launches.pop(request_id, None)
            raise
        finally:
            os.close(request_fd)
        try:
            return await asyncio.shield(started)
        except asyncio.CancelledError:
            started.add_done_callback(self._kill_unwanted)
            raise

    def _kill_unwanted(self, started: asyncio.Future[tuple[int, Any]]) -> None:
        """A launch cancelled while in flight: its child must not run unobserved."""
        if not started.cancelled() and started.exception() is None:
            pid, _ = started.result()
            task = self.loop.create_task(self.kill(pid))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def kill(self, pid: int) -> None:
        """SIGKILL a child unless it was reaped already (a dead zygote's children died with it)."""
        with contextlib.suppress(ZygoteError):
            await self._send({"op": "kill", "pid": pid})

    def close(self) -> None:
        """Let the zygote go: it kills its children and exits when its socket closes."""
        self._died()

    async def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = json.dumps(message).encode()
        while True:
            if self.dead:
                raise ZygoteError(self.reason)
            try:
                socket.send_fds(self._sock, [data], fds or [])
                return
            except BlockingIOError:
                await self._wait_writable()
            except OSError:
                self._died()

    async def _wait_writable(self) -> None:
        if self._writable is None:
            waiter: asyncio.Future[None] = self.loop.create_future()

            def ready() -> None:
                self.loop.remove_writer(self._sock)
                self._writable = None
                if not waiter.done():
                    waiter.set_result(None)

            self._writable = waiter
            self.loop.add_writer(self._sock, ready)
        await asyncio.shield(self._writable)

    def _on_readable(self) -> None:
        while True:
            try:
                data = self._sock.recv(4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._died()
                print(f"spyglass-agentd: {self.reason}", file=sys.stderr, flush=True)
                return
            message = json.loads(data)
            self.answered = True
            if "status" in message:
                if (exited := self._exits.pop(message["pid"], None)) is not None:
                    exited.set_result(message["status"])
            elif (started := self._launches.pop(message["id"], None)) is not None:
                if "error" in message:
                    started.set_exception(ZygoteError(message["error"]))
                else:
                    exited = self._exits[message["pid"]] = self.loop.create_future()
                    started.set_result((message["pid"], exited))

    def _died(self) -> None:
        if self.dead:
            return
        self.dead = True
        self.died_at = time.monotonic()
        code = self.process.poll()  # reaped now if it has exited, else by subprocess later
        self.reason = "the agent's zygote (which starts operations) died" + (
            f" with exit code {code}" if code else ""
        )
        if not self.loop.is_closed():
            self.loop.remove_reader(self._sock)
            self.loop.remove_writer(self._sock)
        self._sock.close()
        gone = ZygoteError(self.reason)
        for started in self._launches.values():
            if not started.done():
                started.set_exception(gone)
        for exited in self._exits.values():
            if not exited.done():
                exited.set_result(None)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._launches.clear()
        self._exits.clear()


def _import_path() -> str:
    """Where ``agentd`` was imported from, ahead of PYTHONPATH: the zygote runs the same code."""
    here = str(Path(__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
