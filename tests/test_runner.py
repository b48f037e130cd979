"""The runner and its zygote, in process: operations start, stream, end, and are killed by the
timeout, the CPU rlimit, the caps and cancellation; a dead zygote fails its operations with a
clear error and is replaced.

Real modules are driven into the cases (no test module in the product): a YARA condition looping
for ever makes a spinning child.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest

from agentd.runner import Budget, OpOutcome, Zygote, run_operation
from modules.registry import get_module
from protocol.agent_config import LimitsSection
from tests.support.agents import SPIN_YARA
from tests.support.waiting import until

SPIN = {"module": "yara", **SPIN_YARA, "name": ["^spin$"]}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    srv = tmp_path / "srv"
    srv.mkdir()
    (srv / "spin").write_bytes(b"a" * 40 + b"!\n")
    for i in range(20):
        (srv / f"f{i:02d}.txt").write_text("x")
    return tmp_path


async def run(
    root: Path,
    params: dict[str, Any],
    *,
    timeout: float = 30,
    budget: Budget | None = None,
    events: list[tuple[str, dict[str, Any]]] | None = None,
    **limits: Any,
) -> OpOutcome:
    params = dict(params)
    module = params.pop("module", "file")

    def sink(kind: str, payload: dict[str, Any]) -> None:
        if events is not None:
            events.append((kind, payload))

    return await run_operation(
        module,
        get_module(module).validate(params),  # type: ignore[union-attr]
        root=str(root),
        limits=LimitsSection(**limits),
        timeout=timeout,
        budget=budget or Budget(1000, 1 << 20),
        sink=sink,
    )


def operation_children() -> list[psutil.Process]:
    zygote = Zygote.current()
    return psutil.Process(zygote.process.pid).children()


async def gone(pids: list[int]) -> bool:
    """True once none of ``pids`` is running (zombies count as gone)."""
    for _ in range(250):
        alive = [p for p in pids if psutil.pid_exists(p) and not _zombie(p)]
        if not alive:
            return True
        await asyncio.sleep(0.02)
    return False


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_operation_streams_matches_and_ends_ok(root: Path) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    outcome = await run(root, {"paths": ["/srv"], "name": [r"\.txt$"]}, events=events)
    assert outcome.status == "ok", outcome
    paths = sorted(p["path"] for kind, p in events if kind == "match")
    assert paths == [f"/srv/f{i:02d}.txt" for i in range(20)]


async def test_many_concurrent_operations_share_one_zygote(root: Path) -> None:
    zygote = Zygote.current()
    outcomes = await asyncio.gather(
        *(run(root, {"paths": ["/srv"], "name": ["f0"]}) for _ in range(60))
    )
    assert {o.status for o in outcomes} == {"ok"}
    assert Zygote.current() is zygote and not zygote.dead


async def test_a_request_larger_than_a_pipe_buffer_reaches_the_child(root: Path) -> None:
    names = [f"^never-{i:06d}-{'x' * 80}$" for i in range(3000)] + [r"^f07\.txt$"]
    events: list[tuple[str, dict[str, Any]]] = []
    outcome = await run(root, {"paths": ["/srv"], "name": names, "match_any": True}, events=events)
    assert outcome.status == "ok", outcome
    assert [p["path"] for _, p in events] == ["/srv/f07.txt"]


async def test_timeout_kills_the_child(root: Path) -> None:
    task = asyncio.create_task(run(root, SPIN, timeout=1))
    await until(lambda: bool(operation_children()))
    pids = [p.pid for p in operation_children()]
    outcome = await task
    assert outcome.status == "timeout"
    assert "timeout" in outcome.errors[0]
    assert await gone(pids)


async def test_cpu_rlimit_is_named_as_such(root: Path) -> None:
    outcome = await run(root, SPIN, cpu_seconds=1)
    assert outcome.status == "timeout"
    assert outcome.errors == ["CPU limit of 1 s reached"]


async def test_match_cap_stops_the_child(root: Path) -> None:
    outcome = await run(root, {"paths": ["/srv"], "name": ["."]}, budget=Budget(3, 1 << 20))
    assert outcome.status == "limit"


async def test_cancel_kills_the_child(root: Path) -> None:
    task = asyncio.create_task(run(root, SPIN))
    await until(lambda: bool(operation_children()))
    pids = [p.pid for p in operation_children()]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gone(pids)


async def test_a_cancel_while_the_result_pipe_is_attached_kills_the_child(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window between the zygote's answer and the pump: a cancel landing while the runner
    attaches the child's result pipe to the loop (the SSH channel closed just then)."""
    loop = asyncio.get_running_loop()
    attach = loop.connect_read_pipe

    async def cancelled_meanwhile(*args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        return await attach(*args, **kwargs)

    monkeypatch.setattr(loop, "connect_read_pipe", cancelled_meanwhile)
    with pytest.raises(asyncio.CancelledError):
        await run(root, SPIN)
    monkeypatch.undo()
    pids = [p.pid for p in operation_children()]
    assert await gone(pids)


async def test_dead_zygote_fails_its_operations_clearly_and_is_replaced(root: Path) -> None:
    task = asyncio.create_task(run(root, SPIN))
    await until(lambda: bool(operation_children()))
    zygote = Zygote.current()
    pids = [p.pid for p in operation_children()]
    os.kill(zygote.process.pid, signal.SIGKILL)
    outcome = await task
    assert outcome.status == "error"
    assert "zygote" in outcome.errors[0]
    assert await gone(pids), "children die with their zygote"
    await until(lambda: zygote.dead)
    outcome = await run(root, {"paths": ["/srv"], "name": ["f01"]})
    assert outcome.status == "ok"
    assert Zygote.current() is not zygote


async def test_memory_rlimit_ends_an_unbounded_allocation(root: Path) -> None:
    # pkg reads dpkg's database whole: a 300 MB one (sparse, no disk spent) wants more.
    status = root / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    with status.open("wb") as f:
        f.truncate(300 << 20)
    outcome = await run(root, {"module": "pkg"}, memory_mb=256)
    assert outcome.status == "error"
    assert any("memory limit of 256 MiB" in e for e in outcome.errors), outcome


async def test_zygote_that_cannot_start_fails_operations_without_respawn_storm(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import agentd.runner

    Zygote.current().close()
    python = sys.executable
    monkeypatch.setattr(sys, "executable", "/bin/false")  # an interpreter that dies at once
    monkeypatch.setattr(agentd.runner, "RESPAWN_DELAY", 1.0)
    first = await run(root, {"paths": ["/srv"], "name": ["f01"]})
    broken = Zygote.current()
    second = await run(root, {"paths": ["/srv"], "name": ["f01"]})
    for outcome in (first, second):
        assert outcome.status == "error"
        assert "zygote" in outcome.errors[0]
    assert Zygote.current() is broken, "not respawned within RESPAWN_DELAY"
    monkeypatch.setattr(sys, "executable", python)
    await asyncio.sleep(1.0)
    outcome = await run(root, {"paths": ["/srv"], "name": ["f01"]})
    assert outcome.status == "ok"
