"""An accepted action's life apart from its channel (issue 15 point 1; issue 11 points 6 and 7).

An accepted action runs to its end when its channel closes; the identical envelope re-sent while
it runs follows it (rows so far, then the rest live, each once), and after its end gets the
stored outcome; only ``cancel``, the expiry or the limits stop it. Readers that stop reading are
cut by the write deadline or the expiry, and free their slot. Real agents, real SSH, raw frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agentd.execution import EXPIRY_GRACE
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.errors import FrameError
from protocol.frames import encode_frame, read_frame
from protocol.signing import Signer
from tests.support import agents
from tests.support.paths import short_tmp

SLOW_FILES = 24
SLOW_CONTENT = b"needle\n"
#: A YARA rule that matches every file after a bounded loop of a fraction of a second per file
#: (regexes no longer can be slow: RE2 matches in linear time).
SLOW_RULE = "rule slow { condition: for all i in (0..3000000) : (i >= 0) }"
BIG_FILES = 1500  # a few hundred KiB of rows: more than a small SSH window and the agent's chunk
SMALL_WINDOW = 8192
RSS_GROWTH_LIMIT = 48 << 20


def agent_dir(signer: Signer, *, agent: dict[str, Any] | None = None, **limits: int) -> Path:
    directory = short_tmp("lc")
    agents.write_trusting_agent(
        directory,
        signer,
        limits={"module_timeout": 120, **limits},
        agent=agent,
    )
    srv = directory / "root" / "srv"
    for sub in ("slow", "big"):
        (srv / sub).mkdir(parents=True)
    (srv / "hello.txt").write_text("hello\n")
    for i in range(SLOW_FILES):
        (srv / "slow" / f"{i:02d}.txt").write_bytes(SLOW_CONTENT)
    for i in range(BIG_FILES):
        (srv / "big" / f"{i:04d}-{'x' * 120}").write_text("big\n")
    return directory


@pytest.fixture(scope="module")
def agent(signer: Signer) -> Iterator[agents.AgentProc]:
    started = agents.start_agent(agent_dir(signer, max_concurrent=2))
    yield started
    agents.stop_agent(started)


def envelope(signer: Signer, op: Operation, expire_seconds: int = 300) -> dict[str, Any]:
    action = make_action("lifecycle", "all", [op], expire_seconds=expire_seconds)
    return signer.sign(Envelope(action)).to_dict()


SLOW = Operation("yara", {"paths": ["/srv/slow"], "rules": SLOW_RULE})
BIG = Operation("file", {"paths": ["/srv/big"], "match_limit": BIG_FILES})
#: More than a small window, less than the 64 KiB asyncssh buffers by default before drain waits.
MEDIUM = Operation("file", {"paths": ["/srv/big"], "match_limit": 100})
HELLO = Operation("file", {"paths": ["/srv"], "name": ["^hello"]})


@pytest.fixture
def slow_env(signer: Signer) -> dict[str, Any]:
    """A freshly signed envelope of ``SLOW``: each test's own action on the shared agent."""
    return envelope(signer, SLOW)


def action_id(env: dict[str, Any]) -> str:
    return str(env["action"]["id"])


def paths(frames: list[dict[str, Any]]) -> list[str]:
    return [f["data"]["path"] for f in frames if f["type"] == "match"]


def verdicts(agent: agents.AgentProc, env: dict[str, Any]) -> list[str]:
    return [r["verdict"] for r in agent.audit if r["action_id"] == action_id(env)]


async def until(process: Any, kind: str, frames: list[dict[str, Any]]) -> None:
    """Read frames into ``frames`` until one of type ``kind``."""
    async with asyncio.timeout(120):
        while not frames or frames[-1]["type"] != kind:
            frame = await read_frame(process.stdout)
            assert frame is not None, frames
            frames.append(frame)


async def first_rows(conn: Any, env: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """A new channel on ``conn`` sent ``env``, read until its first row: (channel, frames)."""
    process = await conn.create_process(subsystem="spyglass", encoding=None)
    process.stdin.write(agents.run_frames(env))
    frames: list[dict[str, Any]] = []
    await until(process, "match", frames)
    return process, frames


async def assert_serves(agent: agents.AgentProc, signer: Signer) -> None:
    frames = await agents.converse(agent, agents.run_frames(envelope(signer, HELLO)))
    assert [f["type"] for f in frames] == ["accepted", "match", "done", "finished"], frames


EVERY_SLOW_ROW = [f"/srv/slow/{i:02d}.txt" for i in range(SLOW_FILES)]


@pytest.mark.parametrize("leave", ["close", "abort"])  # a clean close, or a console killed
async def test_an_action_runs_to_its_end_after_its_channel_closes_and_a_resend_follows_it(
    agent: agents.AgentProc, slow_env: dict[str, Any], leave: str
) -> None:
    conn = await agents.connect(agent)
    await first_rows(conn, slow_env)  # the action runs: it has sent a row
    getattr(conn, leave)()  # abort: the TCP connection drops with no SSH goodbye
    # the console is gone; the same envelope again follows the action that still runs
    again = await agents.converse(agent, agents.run_frames(slow_env), timeout=120)
    assert verdicts(agent, slow_env) == ["accepted", "attached"]  # one execution, followed
    assert sorted(paths(again)) == EVERY_SLOW_ROW  # from the first row on, each once
    assert [f["type"] for f in again][-2:] == ["done", "finished"]
    assert again[-2]["status"] == "ok" and all(f["replay"] is True for f in again)
    # after its end, the stored outcome: the same rows, marked replayed, with the run's time
    stored = await agents.converse(agent, agents.run_frames(slow_env))
    assert paths(stored) == paths(again) and all(f["replay"] is True for f in stored)
    assert stored[0]["ran_at"] == again[0]["ran_at"]
    assert verdicts(agent, slow_env) == ["accepted", "attached", "replayed-outcome"]


async def test_a_follower_attached_mid_run_gets_the_rows_so_far_then_the_rest_live(
    agent: agents.AgentProc, slow_env: dict[str, Any]
) -> None:
    async with await agents.connect(agent) as conn:
        sender, sent = await first_rows(conn, slow_env)
        follower, followed = await first_rows(conn, slow_env)
        assert verdicts(agent, slow_env) == ["accepted", "attached"]
        await asyncio.gather(until(sender, "finished", sent), until(follower, "finished", followed))
    assert sorted(paths(sent)) == EVERY_SLOW_ROW
    assert paths(followed) == paths(sent)  # the same rows in the same order, none twice
    assert not any(f.get("replay") for f in sent) and all(f.get("replay") for f in followed)


async def test_cancel_stops_the_action_and_frees_its_slot(
    agent: agents.AgentProc, signer: Signer, slow_env: dict[str, Any]
) -> None:
    async with await agents.connect(agent) as conn:
        process, frames = await first_rows(conn, slow_env)
        process.stdin.write(encode_frame({"type": "cancel"}))
        await until(process, "finished", frames)
    done = next(f for f in frames if f["type"] == "done")
    assert done["status"] == "cancelled" and len(paths(frames)) < SLOW_FILES
    assert verdicts(agent, slow_env) == ["accepted", "cancelled"]
    stored = await agents.converse(
        agent, agents.run_frames(slow_env)
    )  # the cancelled outcome, as it ended
    assert [f["status"] for f in stored if f["type"] == "done"] == ["cancelled"]
    await assert_serves(agent, signer)


async def stalled(agent: agents.AgentProc, env: dict[str, Any], count: int) -> list[Any]:
    """``count`` channels that send ``env`` and then never read (a small SSH window)."""
    conn = await agents.connect(agent)
    processes = []
    for _ in range(count):
        process = await conn.create_process(
            subsystem="spyglass", encoding=None, window=SMALL_WINDOW
        )
        process.stdin.write(agents.run_frames(env))
        processes.append(process)
    return [conn, *processes]


async def wait_for_a_free_slot(agent: agents.AgentProc, signer: Signer, deadline: float) -> None:
    """Send small actions until one runs (``busy`` meanwhile), failing past ``deadline``."""
    while True:
        answer = await agents.converse(agent, agents.run_frames(envelope(signer, HELLO)))
        if answer[-1]["type"] == "finished":
            return
        assert answer[-1]["reason"] == "busy", answer
        assert time.time() < deadline, "the slots are still held"
        await asyncio.sleep(0.5)


async def assert_cut(process: Any) -> None:
    """The agent closed the channel before the end: what it had sent, then the end of the
    stream, maybe inside a frame (the SSH client delivers the close only once its buffered data
    was read)."""
    frames = []
    with contextlib.suppress(FrameError):
        async with asyncio.timeout(60):
            while (frame := await read_frame(process.stdout)) is not None:
                frames.append(frame)
    assert frames and frames[-1]["type"] != "finished"


@pytest.mark.parametrize("op", [BIG, MEDIUM], ids=["big", "buffered"])
async def test_slots_held_by_readers_that_never_read_are_freed_at_expiry(
    signer: Signer, op: Operation
) -> None:
    """Also when the whole output fits the channel's buffer: the agent once took a follow whose
    last frame was buffered for done, freed the slot early and left the channel open."""
    started = agents.start_agent(agent_dir(signer, max_concurrent=2, agent={"write_timeout": 600}))
    try:
        envs = [envelope(signer, op, expire_seconds=20 + i) for i in range(2)]
        held = [await stalled(started, env, 1) for env in envs]
        busy = await agents.converse(started, agents.run_frames(envelope(signer, HELLO)))
        assert busy[-1].get("reason") == "busy", busy  # both slots are held
        expiry = max(env["action"]["expire_after"] for env in envs)
        await wait_for_a_free_slot(started, signer, expiry + 15)
        # the expiries are a second apart (as they can be by chance): reading a channel before
        # its own expiry would let its follower finish
        await asyncio.sleep(max(0.0, expiry + EXPIRY_GRACE + 3 - time.time()))
        for conn, process in held:  # and their channels were closed
            await assert_cut(process)
            conn.close()
    finally:
        agents.stop_agent(started)


async def test_stalled_replays_are_cut_by_the_write_deadline_within_max_concurrent(
    signer: Signer,
) -> None:
    started = agents.start_agent(agent_dir(signer, max_concurrent=3, agent={"write_timeout": 2}))
    try:
        env = envelope(signer, BIG)
        ran = await agents.converse(started, agents.run_frames(env), timeout=120)
        assert len(paths(ran)) == BIG_FILES
        before = psutil.Process(started.proc.pid).memory_info().rss
        conn, *processes = await stalled(started, env, 12)
        firsts = [await read_frame(p.stdout) for p in processes]
        served = [p for p, f in zip(processes, firsts, strict=True) if f["type"] == "accepted"]
        refused = [f for f in firsts if f["type"] == "rejected"]
        assert len(served) == 3 and [f["reason"] for f in refused] == ["busy"] * 9, firsts
        growth = psutil.Process(started.proc.pid).memory_info().rss - before
        assert growth < RSS_GROWTH_LIMIT
        await wait_for_a_free_slot(started, signer, time.time() + 60)  # the deadline cut them
        for process in served:
            await assert_cut(process)
        conn.close()
        audit = [r["verdict"] for r in started.audit if r["action_id"] == action_id(env)]
        assert audit.count("replayed-outcome") == 3
    finally:
        agents.stop_agent(started)


async def test_a_channel_silent_after_its_action_is_closed_after_idle_timeout(
    agent: agents.AgentProc, signer: Signer
) -> None:
    """The idle limit starts again when a channel's last action ends: a channel its console
    parked and forgot does not hold one of the connection's channels for ever. It closes
    without an error frame, which a console sending its next action at that moment would
    take for that action's answer."""
    frames = []
    async with await agents.connect(agent) as conn:
        process = await conn.create_process(subsystem="spyglass", encoding=None)
        process.stdin.write(agents.run_frames(envelope(signer, HELLO)))
        async with asyncio.timeout(60):
            while (frame := await read_frame(process.stdout)) is not None:
                frames.append(frame)
    assert frames[-1]["type"] == "finished", frames
