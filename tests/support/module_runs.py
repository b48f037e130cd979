"""A module run in process, and the shape of the rows it gives front ends."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from modules.base import CollectingContext
from modules.registry import get_module

#: Far longer than any of these runs takes when it does not stall (a stall never ends).
DEADLINE = 60.0


def run_module(module_name: str, root: Path | str, /, **params: Any) -> CollectingContext:
    """Run a module on a worker thread; fail (rather than hang) should it not end in time."""
    module = get_module(module_name)
    assert module is not None
    ctx = CollectingContext(root=str(root), columns=[c.name for c in module.columns])
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(module.run(module.validate(params), ctx))
        except BaseException as err:  # handed to the test thread
            outcome.append(err)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(DEADLINE)
    assert not worker.is_alive(), f"{module_name} stalled"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    ctx.last_progress = outcome[0]
    return ctx


def fits(kind: str, value: Any) -> bool:
    """Does a row value have the shape its column kind promises front ends?"""
    if value is None or kind == "json":
        return True
    if kind in ("int", "time"):
        return type(value) is int
    if kind == "bool":
        return type(value) is bool
    if kind == "list":  # nested objects are for "json" columns
        return type(value) is list and all(type(v) is str for v in value)
    return type(value) is str
