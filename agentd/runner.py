"""Runs each operation in a child forked from a preloaded forkserver, under the agent's limits.

The forkserver imports the modules once, so a child starts in milliseconds instead of paying a
Python start-up. The parent enforces what a child cannot be trusted to: the wall-clock timeout,
the per-action match and byte caps, and cancellation (closing the channel kills the child).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentd.config import LimitsSection
from protocol.errors import FrameError
from protocol.frames import read_frame

# The forkserver imports these once; "agentd.cli" is there because multiprocessing re-runs the
# main module in each child, which then costs nothing but cached imports.
PRELOAD = ["agentd.cli", "agentd.child"]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD)


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
    status: str
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
    reader_conn, writer_conn = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(
        target=_child_entry,
        args=(
            writer_conn,
            module,
            params,
            root,
            limits.privacy,
            limits.cpu_seconds,
            limits.memory_mb,
            limits.nice,
        ),
        daemon=True,
    )
    child.start()
    writer_conn.close()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    pipe = os.fdopen(os.dup(reader_conn.fileno()), "rb", 0)
    reader_conn.close()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        async with asyncio.timeout(timeout):
            outcome = await _pump(reader, budget, sink)
    except TimeoutError:
        outcome = OpOutcome("timeout", errors=[f"operation ran past its {timeout:.0f} s timeout"])
    finally:
        transport.close()
        if child.exitcode is None:
            child.kill()
        await _reap(child)
        exitcode = child.exitcode
        child.close()
    if outcome is _DIED:
        return _death(exitcode, limits)
    return outcome


_DIED = OpOutcome("error", errors=["the module's process died before finishing"])


def _death(exitcode: int | None, limits: LimitsSection) -> OpOutcome:
    """Name why a child ended without reporting: the CPU rlimit, the memory rlimit, or a crash."""
    if exitcode == -signal.SIGXCPU:
        return OpOutcome("timeout", errors=[f"CPU limit of {limits.cpu_seconds} s reached"])
    if exitcode == -signal.SIGKILL:
        return OpOutcome("error", errors=[f"killed (memory limit {limits.memory_mb} MiB?)"])
    return OpOutcome("error", errors=[f"the module's process died (exit code {exitcode})"])


async def _pump(reader: asyncio.StreamReader, budget: Budget, sink: Sink) -> OpOutcome:
    while True:
        try:
            frame = await read_frame(reader, max_frame=1 << 30)
        except FrameError as err:
            return OpOutcome("error", errors=[f"child sent garbage: {err}"])
        if frame is None:
            return _DIED
        kind = frame.pop("type")
        if kind == "match":
            if not budget.take(len(str(frame["data"]))):
                return OpOutcome(
                    "limit", errors=["the agent's match or result-size cap was reached"]
                )
            sink("match", frame["data"])
        elif kind == "progress":
            sink("progress", frame["stats"])
        elif kind == "end":
            return OpOutcome(frame["status"], frame["stats"], frame["errors"])


def _child_entry(*args: Any) -> None:
    from agentd.child import run_operation as child_main

    child_main(*args)


async def _reap(child: Any) -> None:
    """Wait for the child's exit without blocking the loop (its sentinel turns readable)."""
    if child.exitcode is not None:
        return
    loop = asyncio.get_running_loop()
    exited = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(child.sentinel, on_exit)
    try:
        await asyncio.wait_for(exited, 5)
    except TimeoutError:
        child.kill()
    finally:
        loop.remove_reader(child.sentinel)
    child.join(0.1)
