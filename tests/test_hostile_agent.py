"""A hostile client against a real agent: slowloris, stalled frames, huge headers, channel floods,
action floods and a stranger's SSH key. The agent must stay up, keep its memory bounded, answer
``busy`` beyond ``max_concurrent``, drop idle channels, and keep serving a normal client.

The agent under test runs alone, with small limits (idle_timeout 2 s, login_timeout 2 s,
max_concurrent 2), and trusts the lab's investigator key.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Iterator
from typing import Any

import asyncssh
import psutil
import pytest

from console.lab.local import Lab
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.frames import encode_frame, read_frame
from protocol.signing import Signer
from tests.support import agents
from tests.support.solo_agent import (
    IDLE,
    MAX_CONCURRENT,
    assert_alive,
    assert_still_serves,
    hostile_agent_dir,
    signed,
)

RSS_GROWTH_LIMIT = 64 << 20  # what the agent may grow by while under attack


@pytest.fixture(scope="module")
def agent(lab: Lab) -> Iterator[agents.AgentProc]:
    started = agents.start_agent(hostile_agent_dir(lab))
    yield started
    agents.stop_agent(started)


@pytest.fixture(scope="module")
def signer(lab: Lab) -> Signer:
    return Signer(lab.gnupghome)


def rss(agent: agents.AgentProc) -> int:
    """Resident memory of the agent process (not its zygote or operation children)."""
    return int(psutil.Process(agent.proc.pid).memory_info().rss)


async def read_all(process: Any, timeout: float = 30) -> list[dict[str, Any]]:
    """Every frame until the agent closes the channel (bounded by ``timeout``)."""
    frames = []
    async with asyncio.timeout(timeout):
        while (frame := await read_frame(process.stdout)) is not None:
            frames.append(frame)
    return frames


async def test_slowloris_channels_are_closed_after_idle_timeout_while_others_are_served(
    agent: agents.AgentProc, signer: Signer
) -> None:
    conns = [await agents.connect(agent) for _ in range(3)]
    try:
        silent = [
            await conn.create_process(subsystem="spyglass", encoding=None)
            for conn in conns
            for _ in range(20)
        ]
        await assert_still_serves(agent, signer)  # served while 60 channels sit silent
        endings = await asyncio.gather(*(read_all(p, timeout=IDLE * 10) for p in silent))
        for frames in endings:  # each one told why, then closed (read_all saw the end)
            assert [f["type"] for f in frames] == ["error"]
            assert "idle" in frames[0]["detail"]
    finally:
        for conn in conns:
            conn.close()
    assert_alive(agent)
    await assert_still_serves(agent, signer)


async def test_silent_tcp_connections_are_dropped_after_login_timeout(
    agent: agents.AgentProc, signer: Signer
) -> None:
    """Connections that never finish the SSH handshake hold nothing for long."""
    socks = [
        socket.create_connection((agent.host, agent.port), timeout=IDLE * 10) for _ in range(30)
    ]
    try:
        await assert_still_serves(agent, signer)
        for sock in socks:
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(4096):  # the version banner, then nothing until it hangs up
                    pass
    finally:
        for sock in socks:
            sock.close()
    assert_alive(agent)


@pytest.mark.parametrize(
    "raw",
    [
        struct.pack(">I", 100)[:2],  # half a header
        struct.pack(">I", 100) + b'{"type": "hel',  # a header, then half the body
    ],
    ids=["half-header", "half-body"],
)
async def test_half_a_frame_then_stall_is_closed(
    agent: agents.AgentProc, signer: Signer, raw: bytes
) -> None:
    async with await agents.connect(agent) as conn:
        process = await conn.create_process(subsystem="spyglass", encoding=None)
        process.stdin.write(raw)
        frames = await read_all(process, timeout=IDLE * 10)
    assert [f["type"] for f in frames] == ["error"] and "idle" in frames[0]["detail"]
    await assert_still_serves(agent, signer)


async def test_a_4_gib_header_gets_an_error_and_no_allocation(
    agent: agents.AgentProc, signer: Signer
) -> None:
    before = rss(agent)
    async with await agents.connect(agent) as conn:
        processes = [
            await conn.create_process(subsystem="spyglass", encoding=None) for _ in range(20)
        ]
        for process in processes:
            process.stdin.write(struct.pack(">I", 0xFFFFFFFF) + b"{" * 1024)
        endings = await asyncio.gather(*(read_all(p) for p in processes))
    for frames in endings:
        assert [f["type"] for f in frames] == ["error"]
        assert "exceeds" in frames[0]["detail"]
    assert rss(agent) - before < RSS_GROWTH_LIMIT
    await assert_still_serves(agent, signer)


async def test_400_channels_at_once_on_four_connections(
    agent: agents.AgentProc, signer: Signer
) -> None:
    before = rss(agent)
    hello = encode_frame({"type": "hello", "versions": [1]})
    conns = [await agents.connect(agent) for _ in range(4)]

    async def one(conn: Any) -> dict[str, Any]:
        process = await conn.create_process(subsystem="spyglass", encoding=None)
        process.stdin.write(hello)
        async with asyncio.timeout(60):
            frame = await read_frame(process.stdout)
        process.stdin.write_eof()
        await read_all(process)  # clean end of stream: the agent closes too
        return frame or {}

    try:
        answers = await asyncio.gather(*(one(c) for c in conns for _ in range(100)))
    finally:
        for conn in conns:
            conn.close()
    assert len(answers) == 400
    assert all(a.get("type") == "hello" and a["version"] == 1 for a in answers)
    assert_alive(agent)
    assert rss(agent) - before < RSS_GROWTH_LIMIT
    await assert_still_serves(agent, signer)


async def test_action_flood_gets_busy_beyond_max_concurrent_also_for_copies(
    agent: agents.AgentProc, signer: Signer
) -> None:
    # Fill both slots with actions that spin until their channel closes.
    spin = [Operation("yara", agents.SPIN_YARA)]
    slow = [
        signer.sign(Envelope(make_action("hostile", "all", spin))).to_dict()
        for _ in range(MAX_CONCURRENT)
    ]
    async with await agents.connect(agent) as hold:
        holders = []
        for envelope in slow:
            process = await hold.create_process(subsystem="spyglass", encoding=None)
            process.stdin.write(agents.run_frames(envelope))
            async with asyncio.timeout(30):
                first = await read_frame(process.stdout)
            assert first is not None and first["type"] == "accepted", first
            holders.append(process)
        # Then flood: fresh signed actions, and copies of a running one, as fast as we can,
        # on separate channels and pipelined on one channel.
        fresh = [signed(signer, name=["^hello"]) for _ in range(8)]
        copies = [slow[0]] * 8
        async with await agents.connect(agent) as flood:
            answers = await asyncio.gather(
                *(agents.converse(agent, agents.run_frames(e)) for e in fresh + copies)
            )
            pipelined = await flood.create_process(subsystem="spyglass", encoding=None)
            pipelined.stdin.write(b"".join(agents.run_frames(e) for e in fresh))
            pipelined.stdin.write_eof()
            piped = await read_all(pipelined)
        for process in holders:  # a closed channel would not stop them: cancel them
            process.stdin.write(encode_frame({"type": "cancel"}))
            kinds = []
            async with asyncio.timeout(30):
                while kinds[-1:] != ["finished"]:
                    kinds.append((await read_frame(process.stdout) or {}).get("type"))
            assert kinds[-2:] == ["done", "finished"]
            process.close()
    reasons = [a[-1].get("reason") for a in answers]
    # a copy of a running action would follow it, in a slot of its own: none is free
    assert reasons == ["busy"] * 16, answers
    assert [f.get("reason") for f in piped] == ["busy"] * 8, piped
    assert_alive(agent)
    await assert_still_serves(agent, signer)  # the slots were freed


async def test_unknown_ssh_key_is_refused_and_reaches_nothing(
    agent: agents.AgentProc, signer: Signer
) -> None:
    audit_before = len(agent.audit)
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        await agents.connect(agent, stranger)
    assert len(agent.audit) == audit_before  # no channel, no frame, no decision logged
    await assert_still_serves(agent, signer)


async def test_authorized_keys_changes_hold_from_the_next_connection(
    agent: agents.AgentProc, signer: Signer
) -> None:
    """The agent parses authorized_keys once per change, not per connection: a key added is
    accepted, a key removed or a file made unreadable refuses, each without a restart."""
    path = agent.dir / "authorized_keys"
    kept = path.read_text()
    newcomer = asyncssh.generate_private_key("ssh-ed25519")
    try:
        path.write_text(kept + newcomer.export_public_key().decode())
        async with await agents.connect(agent, newcomer):
            pass
        path.write_text(kept)
        with pytest.raises(asyncssh.PermissionDenied):
            await agents.connect(agent, newcomer)
        path.write_text("ssh-ed25519 not-base64!\n")
        with pytest.raises(asyncssh.PermissionDenied):
            await agents.connect(agent)
    finally:
        path.write_text(kept)
    async with await agents.connect(agent):
        pass
    await assert_still_serves(agent, signer)
