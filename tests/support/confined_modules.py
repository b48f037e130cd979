"""A pytest plugin that runs every ``Module.run`` of a test session in a confined child.

``tests/test_confinement.py`` runs the shipped modules' own test files with it
(``pytest -p tests.support.confined_modules``), so those tests, unchanged, prove that each
module still works under the confinement the agent applies. Each ``run`` forks twice, as the
agent does (an intermediate process stands for the zygote, so a module's "never read the agent"
rules see the same family), confines the grandchild with ``agentd.confine`` and replays what it
emitted, its soft errors, its stats or its exception into the test's own context.
"""

from __future__ import annotations

import os
import pickle
import traceback
from typing import Any

import pytest

from agentd import confine
from modules.base import Module, RunContext
from modules.context import CollectingContext
from modules.registry import all_modules


def _confined_run(
    module: Module, run: Any, params: dict[str, Any], ctx: RunContext
) -> dict[str, int]:
    read_fd, write_fd = os.pipe()
    middle = os.fork()
    if middle == 0:  # stands for the zygote: forks the child, waits, passes its status on
        os.close(read_fd)
        child = os.fork()
        if child == 0:
            _child(module, run, params, ctx, write_fd)
        os._exit(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) & 0xFF)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    status = os.waitstatus_to_exitcode(os.waitpid(middle, 0)[1])
    assert data, f"the confined child of {module.name} died (status {status})"
    rows, errors, progress, outcome = pickle.loads(data)
    for message in errors:
        ctx.error(message)
    calls, last = progress
    for _ in range(calls):
        ctx.progress(last)
    for row in rows:
        ctx.emit(row)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome  # type: ignore[no-any-return]


def _child(module: Module, run: Any, params: dict[str, Any], ctx: RunContext, fd: int) -> None:
    code = 0
    try:
        inner = CollectingContext(root=ctx.root, max_rows=getattr(ctx, "_max_rows", None))
        if module.needs.processes:  # as agentd.child does
            inner.snapshot = module.snapshot(params)
        confine.apply(module, ctx.root, module.connect_ports(params))
        assert "seccomp" in confine.in_force(), confine.in_force()
        assert confine.in_force()[0].startswith("landlock-v"), confine.in_force()
        if ctx.cancelled():
            inner.cancel()
        try:
            outcome: Any = run(module, params, inner)
        except Exception as err:  # replayed in the test, as if raised in place
            outcome = err
        progress = (inner.progress_calls, inner.last_progress)
        data = pickle.dumps((inner.rows, inner.errors, progress, outcome))
        with os.fdopen(fd, "wb") as pipe:
            pipe.write(data)
    except BaseException:
        traceback.print_exc()
        code = 70
    finally:
        os._exit(code)


@pytest.fixture(autouse=True)
def _confine_every_module(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in all_modules():
        confine.plan_for(module)  # before any fork, as the zygote does
        cls = type(module)
        run = cls.run

        def confined(
            self: Module, params: dict[str, Any], ctx: RunContext, run: Any = run
        ) -> dict[str, int]:
            return _confined_run(self, run, params, ctx)

        monkeypatch.setattr(cls, "run", confined)
