"""Agent settings that bound what a console-key holder can do: channels per connection, and the
signed target bound to the agent's own name and tags (``enforce_target``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.frames import encode_frame, read_frame
from protocol.signing import Signer
from tests.support import agents
from tests.support.paths import short_tmp
from tests.support.waiting import until


@pytest.fixture(scope="module")
def agent(signer: Signer) -> Iterator[agents.AgentProc]:
    directory = short_tmp("al")
    agents.write_trusting_agent(
        directory,
        signer,
        agent={
            "name": "web-7",
            "tags": {"role": "web", "env": "prod"},
            "enforce_target": True,
            "max_channels": 3,
        },
    )
    started = agents.start_agent(directory)
    yield started
    agents.stop_agent(started)


def envelope(signer: Signer, target: str) -> dict:
    action = make_action("t", target, [Operation("agent", {})])
    return signer.sign(Envelope(action)).to_dict()


@pytest.mark.parametrize("target", ["all", "name=web-7", "role=web and env=prod", "name~'^web'"])
async def test_targets_that_select_this_agent_run(
    agent: agents.AgentProc, signer: Signer, target: str
) -> None:
    frames = await agents.converse(agent, agents.run_frames(envelope(signer, target)))
    assert [f["type"] for f in frames][-1] == "finished", frames


@pytest.mark.parametrize(
    "target", ["name=db-1", "role=db", "env=prod and not role=web", "datacenter=eu"]
)
async def test_a_signed_target_that_skips_this_agent_is_refused(
    agent: agents.AgentProc, signer: Signer, target: str
) -> None:
    frames = await agents.converse(agent, agents.run_frames(envelope(signer, target)))
    assert frames[-1]["type"] == "rejected" and frames[-1]["reason"] == "acl"
    assert "does not select web-7" in frames[-1]["detail"]


async def test_channels_per_connection_are_bounded(agent: agents.AgentProc) -> None:
    hello = encode_frame({"type": "hello", "versions": [1]})
    async with await agents.connect(agent) as conn:
        processes = [
            await conn.create_process(subsystem="spyglass", encoding=None) for _ in range(3)
        ]
        for process in processes:  # three open channels, each answered
            process.stdin.write(hello)
            assert (await read_frame(process.stdout))["type"] == "hello"
        extra = await conn.create_process(subsystem="spyglass", encoding=None)
        await asyncio.wait_for(extra.wait(), 10)
        assert extra.exit_status == 1  # the fourth is refused while three stay open
        processes[0].close()
        await processes[0].wait_closed()
        opened: list[Any] = []

        async def let_in() -> bool:
            """Refused channels end at once, before any frame; one let in answers hello."""
            process = await conn.create_process(subsystem="spyglass", encoding=None)
            process.stdin.write(hello)
            opened[:] = [process, await read_frame(process.stdout)]
            return opened[1] is not None

        await until(let_in, what="a channel let in once one closed")
        again, frame = opened
        assert frame["type"] == "hello"  # a slot was freed
        for process in (*processes[1:], again):
            process.close()
