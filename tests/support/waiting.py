"""Waiting for something to happen, up to a deadline, instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: How often a condition is looked at again.
POLL = 0.02


def wait_until(done: Callable[[], object], timeout: float = 60, what: str = "condition") -> None:
    """Return as soon as ``done()`` is true; fail the test if it is not within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(POLL)


def wait_for_text(path: Path, text: str, timeout: float = 30) -> None:
    """Return once ``text`` is in the file at ``path`` (a log the process under test writes)."""
    wait_until(lambda: text in path.read_text(), timeout, f"{text!r} in {path}")


async def until(done: Callable[[], object], timeout: float = 60, what: str = "condition") -> None:
    """``wait_until`` inside an event loop: the loop runs on while ``done()`` is false; ``done``
    may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while not await _value(done()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(POLL)


async def wait_for(pilot: Any, predicate: Callable[[], object], timeout: float = 60.0) -> None:
    """``until`` for a Textual app under ``pilot``: the app handles its messages between looks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await pilot.pause(0.05)


async def _value(result: object) -> object:
    return await result if inspect.isawaitable(result) else result
