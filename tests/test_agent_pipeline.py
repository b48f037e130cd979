"""Every rejection reason of DESIGN §2, each from a crafted envelope or frame sent to a real agent.

After each rejection the same agent must still run a valid action.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from protocol.action import Action, Operation, make_action
from protocol.envelope import Envelope
from protocol.signing import Signer, generate_key
from tests.support import agents
from tests.support.paths import kill_gpg_agent, short_tmp
from tests.support.waiting import until

SLOW_LINE = b"a" * 40 + b"!\n"  # `(a+)+$` backtracks for ages on this line


class Keys:
    def __init__(self) -> None:
        self.homes = [short_tmp("g") for _ in range(3)]
        for home, name in zip(self.homes, ("alice", "bob", "mallory"), strict=True):
            generate_key(home, name=name, email=f"{name}@spyglass.invalid")
        self.alice, self.bob, self.mallory = (Signer(h) for h in self.homes)


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    made = Keys()
    yield made
    for home in made.homes:
        kill_gpg_agent(home)


def _agent(keys: Keys, acl: dict[str, Any], **limits: int) -> agents.AgentProc:
    directory = short_tmp("ag")
    agents.write_agent(
        directory,
        investigators={"alice": keys.alice.export_public(), "bob": keys.bob.export_public()},
        acl=acl,
        limits=limits,
    )
    (directory / "root" / "srv").mkdir(parents=True)
    (directory / "root" / "srv" / "hello.txt").write_text("hello\n")
    (directory / "root" / "srv" / "slow.txt").write_bytes(SLOW_LINE)
    return agents.start_agent(directory)


@pytest.fixture(scope="module")
def agent(keys: Keys) -> Iterator[agents.AgentProc]:
    acl = {
        "default": {
            "minimum_weight": 1,
            "investigators": {keys.alice.fingerprint: 1, keys.bob.fingerprint: 1},
        }
    }
    started = _agent(keys, acl, module_timeout=3, max_concurrent=1)
    yield started
    agents.stop_agent(started)


def action(**params: Any) -> Action:
    return make_action("test", "all", [Operation("file", {"paths": ["/srv"], **params})])


def spin() -> Action:
    return make_action("test", "all", [Operation("yara", agents.SPIN_YARA)])


def signed(act: Action, *signers: Signer) -> dict[str, Any]:
    envelope = Envelope(act)
    for signer in signers:
        envelope = signer.sign(envelope)
    return envelope.to_dict()


async def rejection(agent: agents.AgentProc, envelope: dict[str, Any]) -> dict[str, Any]:
    frames = await agents.converse(agent, agents.run_frames(envelope))
    assert frames[-1]["type"] == "rejected", frames
    return frames[-1]


async def assert_still_serves(agent: agents.AgentProc, keys: Keys) -> None:
    frames = await agents.converse(
        agent, agents.run_frames(signed(action(name=["^hello"]), keys.alice))
    )
    assert [f["type"] for f in frames] == ["accepted", "match", "done", "finished"], frames
    assert frames[1]["data"]["path"] == "/srv/hello.txt"


async def test_valid_action_runs_and_is_audited(agent: agents.AgentProc, keys: Keys) -> None:
    await assert_still_serves(agent, keys)
    accepted = [r for r in agent.audit if r["verdict"] == "accepted"]
    assert accepted and accepted[-1]["signers"] == [keys.alice.fingerprint]
    assert accepted[-1]["modules"] == ["file"] and accepted[-1]["params_digest"]


def _tamper(envelope: dict[str, Any]) -> dict[str, Any]:
    envelope["action"]["operations"][0]["params"]["paths"] = ["/etc"]
    return envelope


def _twice(keys: Keys) -> dict[str, Any]:
    envelope = signed(action(), keys.alice)
    envelope["signatures"] *= 2
    return envelope


def _timed(keys: Keys, valid_from: int, expire_after: int) -> dict[str, Any]:
    act = replace(action(), valid_from=valid_from, expire_after=expire_after)
    return signed(act, keys.alice)


CASES = {
    "malformed": lambda k: {**signed(action(), k.alice), "extra": 1},
    "unsupported-version": lambda k: signed(replace(action(), version=2), k.alice),
    "not-yet-valid": lambda k: _timed(k, int(time.time()) + 3600, int(time.time()) + 3900),
    "expired": lambda k: _timed(k, int(time.time()) - 600, int(time.time()) - 300),
    "expired-lifetime": lambda k: _timed(k, int(time.time()), int(time.time()) + 200000),
    "bad-signature": lambda k: _tamper(signed(action(), k.alice)),
    "bad-signature-twice": _twice,
    "unknown-signer": lambda k: signed(action(), k.mallory),
    "unknown-signer-none": lambda k: signed(action()),
    "unknown-module": lambda k: signed(
        make_action("t", "all", [Operation("nosuchmodule", {})]), k.alice
    ),
    "invalid-params": lambda k: signed(action(name=["(unclosed"]), k.alice),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_rejection_reason(agent: agents.AgentProc, keys: Keys, case: str) -> None:
    frame = await rejection(agent, CASES[case](keys))
    assert frame["reason"] == case.removesuffix("-lifetime").removesuffix("-twice").removesuffix(
        "-none"
    )
    assert frame["detail"]
    assert agent.audit[-1]["verdict"] == f"rejected:{frame['reason']}"
    await assert_still_serves(agent, keys)


async def test_replay_serves_stored_outcome_even_after_restart(
    agent: agents.AgentProc,
    keys: Keys,
) -> None:
    envelope = signed(action(name=["^hello"]), keys.alice)
    first = await agents.converse(agent, agents.run_frames(envelope))
    again = await agents.converse(agent, agents.run_frames(envelope))
    assert [f["type"] for f in again] == [f["type"] for f in first]
    assert all(f.get("replay") for f in again)
    accepted = [r for r in agent.audit if r["action_id"] == envelope["action"]["id"]]
    assert [r["verdict"] for r in accepted] == ["accepted", "replayed-outcome"]


async def test_an_action_cut_by_an_agent_restart_is_replayed_with_nothing(keys: Keys) -> None:
    acl = {"default": {"minimum_weight": 1, "investigators": {keys.alice.fingerprint: 1}}}
    restarted = _agent(keys, acl, module_timeout=30)
    try:
        envelope = signed(spin(), keys.alice)
        with pytest.raises(TimeoutError):  # close the channel mid-run: the action runs on
            await agents.converse(restarted, agents.run_frames(envelope), timeout=1.5)
        assert [r["verdict"] for r in restarted.audit] == ["accepted"]
        agents.stop_agent(restarted)
        restarted = agents.start_agent(restarted.dir)
        frame = await rejection(restarted, envelope)
        assert frame["reason"] == "replayed" and "no outcome is held" in frame["detail"]
        await assert_still_serves(restarted, keys)
    finally:
        agents.stop_agent(restarted)


async def test_acl_needs_a_second_approver(keys: Keys) -> None:
    both = {keys.alice.fingerprint: 1, keys.bob.fingerprint: 1}
    acl = {
        "default": {"minimum_weight": 1, "investigators": both},
        "file": {"minimum_weight": 2, "investigators": both},
    }
    strict = _agent(keys, acl)
    try:
        act = action(name=["^hello"])
        frame = await rejection(strict, signed(act, keys.alice))
        assert frame["reason"] == "acl"
        frames = await agents.converse(strict, agents.run_frames(signed(act, keys.alice, keys.bob)))
        assert frames[0]["type"] == "accepted" and frames[-1]["type"] == "finished"
    finally:
        agents.stop_agent(strict)


async def test_timeout_kills_the_operation_and_agent_lives(
    agent: agents.AgentProc, keys: Keys
) -> None:
    frames = await agents.converse(agent, agents.run_frames(signed(spin(), keys.alice)))
    done = next(f for f in frames if f["type"] == "done")
    assert done["status"] == "timeout"
    await assert_still_serves(agent, keys)


async def test_busy_beyond_max_concurrent(agent: agents.AgentProc, keys: Keys) -> None:
    spinning = spin()
    slow = asyncio.create_task(
        agents.converse(agent, agents.run_frames(signed(spinning, keys.alice)))
    )
    await until(  # it holds the one slot
        lambda: any(
            r["action_id"] == spinning.id and r["verdict"] == "accepted" for r in agent.audit
        ),
        what="the slow action accepted",
    )
    frame = await rejection(agent, signed(action(), keys.alice))
    assert frame["reason"] == "busy"
    await slow
    await assert_still_serves(agent, keys)


@pytest.mark.parametrize(
    "raw",
    [
        struct.pack(">I", 2 << 20) + b"{",  # announces 2 MiB, over the 1 MiB limit
        struct.pack(">I", 5) + b"hello",  # not JSON
        struct.pack(">I", 2) + b"[]",  # JSON but not an object with a type
        struct.pack(">I", 0),  # empty frame
    ],
    ids=["oversize", "garbage", "not-object", "empty"],
)
async def test_bad_frames_get_an_error_and_the_agent_lives(
    agent: agents.AgentProc, keys: Keys, raw: bytes
) -> None:
    frames = await agents.converse(agent, raw)
    assert frames[-1]["type"] == "error" and frames[-1]["detail"]
    await assert_still_serves(agent, keys)


async def test_other_subsystems_are_refused(agent: agents.AgentProc) -> None:
    async with await agents.connect(agent) as conn:
        result = await conn.run("id", encoding=None)
        assert result.exit_status == 127
        result = await conn.run(subsystem="bogus", encoding=None)
        assert result.exit_status == 127


def test_keys_are_distinct(keys: Keys) -> None:
    prints = {keys.alice.fingerprint, keys.bob.fingerprint, keys.mallory.fingerprint}
    assert len(prints) == 3 and all(len(p) == 40 for p in prints)
