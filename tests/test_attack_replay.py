"""Attacks on the replay cache and the stored outcomes (issue 11, points 1, 6, 8 and 10).

Keys of different weights, as an approval flow has them: alice and bob together may run ``file``
(two approvers), mallory alone may run only ``agent``. Mallory knows the ids of approved actions
(they travel in the files of the approval flow) and holds a console SSH key. Everything goes
through a real agent over real SSH, as raw frames.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from protocol.action import Action, Operation, make_action
from protocol.envelope import Envelope
from protocol.signing import Signer, generate_key
from tests.support import agents
from tests.support.paths import kill_gpg_agent, short_tmp
from tests.support.waiting import until

BIG_FILES = 60  # rows of the action whose outcome outgrows outcome_bytes
OUTCOME_BYTES = 4096
OUTCOME_DISK_BYTES = 1500


@dataclass
class Keys:
    alice: Signer
    bob: Signer
    mallory: Signer


@pytest.fixture(scope="module")
def keys() -> Iterator[Keys]:
    homes = [short_tmp("g") for _ in range(3)]
    for home, name in zip(homes, ("alice", "bob", "mallory"), strict=True):
        generate_key(home, name=name, email=f"{name}@spyglass.invalid")
    yield Keys(*(Signer(h) for h in homes))
    for home in homes:
        kill_gpg_agent(home)


def weighted_agent(keys: Keys, **limits: int) -> Path:
    directory = short_tmp("ar")
    pair = {keys.alice.fingerprint: 1, keys.bob.fingerprint: 1}
    agents.write_agent(
        directory,
        investigators={n: getattr(keys, n).export_public() for n in ("alice", "bob", "mallory")},
        acl={
            "default": {"minimum_weight": 2, "investigators": pair},
            "agent": {"minimum_weight": 1, "investigators": {keys.mallory.fingerprint: 1}},
        },
        limits=limits,
    )
    srv = directory / "root" / "srv"
    (srv / "big").mkdir(parents=True)
    (srv / "hello.txt").write_text("hello\n")
    for i in range(BIG_FILES):
        (srv / "big" / f"{i:03d}-{'x' * 120}").write_text("big\n")
    return directory


@pytest.fixture(scope="module")
def agent(keys: Keys) -> Iterator[agents.AgentProc]:
    started = agents.start_agent(
        weighted_agent(keys, outcome_bytes=OUTCOME_BYTES, outcome_disk_bytes=OUTCOME_DISK_BYTES)
    )
    yield started
    agents.stop_agent(started)


def file_action(expire_seconds: int = 300, **params: Any) -> Action:
    op = Operation("file", {"paths": ["/srv"], "name": ["^hello"], **params})
    return make_action("approved sweep", "all", [op], expire_seconds=expire_seconds)


def agent_action_with_id(action_id: str) -> Action:
    """Mallory's own action (a module her key may run), under someone else's action id."""
    return replace(make_action("probe", "all", [Operation("agent", {})]), id=action_id)


def signed(action: Action, *signers: Signer) -> dict[str, Any]:
    envelope = Envelope(action)
    for signer in signers:
        envelope = signer.sign(envelope)
    return envelope.to_dict()


def digest(action: Action) -> str:
    return hashlib.sha256(action.canonical).hexdigest()


def kinds(frames: list[dict[str, Any]]) -> list[str]:
    return [f["type"] for f in frames]


def audit_of(agent: agents.AgentProc, action: Action) -> list[dict[str, Any]]:
    return [r for r in agent.audit if r["action_id"] == action.id]


async def test_an_id_taken_first_by_a_weaker_signer_serves_nothing_to_the_approved_action(
    agent: agents.AgentProc, keys: Keys
) -> None:
    approved = file_action()
    probe = agent_action_with_id(approved.id)
    first = await agents.converse(agent, agents.run_frames(signed(probe, keys.mallory)))
    assert kinds(first)[0] == "accepted" and kinds(first)[-1] == "finished"  # her own action
    answer = await agents.converse(agent, agents.run_frames(signed(approved, keys.alice, keys.bob)))
    assert kinds(answer) == ["rejected"], answer  # never the probe's rows under `file`
    assert answer[0]["reason"] == "replayed" and "another action" in answer[0]["detail"]
    line = audit_of(agent, approved)[-1]
    assert line["verdict"] == "rejected:replayed"
    assert sorted(line["signers"]) == sorted([keys.alice.fingerprint, keys.bob.fingerprint])
    assert line["action_digest"] == digest(approved) != digest(probe)
    assert line["modules"] == ["file"] and line["params_digest"] == approved.operations_digest


async def test_a_stored_outcome_is_served_only_to_the_identical_action(
    agent: agents.AgentProc, keys: Keys
) -> None:
    approved = file_action()
    ran = await agents.converse(agent, agents.run_frames(signed(approved, keys.alice, keys.bob)))
    assert kinds(ran) == ["accepted", "match", "done", "finished"], ran
    probe = await agents.converse(
        agent, agents.run_frames(signed(agent_action_with_id(approved.id), keys.mallory))
    )
    assert kinds(probe) == ["rejected"] and probe[0]["reason"] == "replayed", probe
    # the identical action, its signatures in another order, is served the stored outcome
    again = await agents.converse(agent, agents.run_frames(signed(approved, keys.bob, keys.alice)))
    assert kinds(again) == kinds(ran) and all(f["replay"] is True for f in again)
    assert again[1]["data"] == ran[1]["data"]
    accepted, served = (
        next(r for r in audit_of(agent, approved) if r["verdict"] == verdict)
        for verdict in ("accepted", "replayed-outcome")
    )
    assert abs(again[0]["ran_at"] - accepted["time"]) <= 1  # the time of the original run
    assert sorted(served["signers"]) == sorted([keys.alice.fingerprint, keys.bob.fingerprint])
    assert served["action_digest"] == digest(approved)


async def test_expired_outcomes_are_pruned_while_the_agent_runs_and_never_served(
    agent: agents.AgentProc, keys: Keys
) -> None:
    short = file_action(expire_seconds=3)
    ran = await agents.converse(agent, agents.run_frames(signed(short, keys.alice, keys.bob)))
    assert kinds(ran)[-1] == "finished"
    stored = agent.dir / "state" / "outcomes" / f"{digest(short)}.frames"
    log = agent.dir / "state" / "replay.log"
    assert stored.exists() and short.id in log.read_text()
    await until(  # pruned at run time, no restart
        lambda: not stored.exists() and short.id not in log.read_text(),
        what="the expired outcome pruned",
    )
    expired = await agents.converse(agent, agents.run_frames(signed(short, keys.alice, keys.bob)))
    assert kinds(expired) == ["rejected"] and expired[0]["reason"] == "expired"
    # the id is free again, but only for an action of its own: none of the old rows come back
    probe = await agents.converse(
        agent, agents.run_frames(signed(agent_action_with_id(short.id), keys.mallory))
    )
    assert kinds(probe)[-1] == "finished" and not any(f.get("replay") for f in probe)
    assert all("path" not in f.get("data", {}) for f in probe)


async def test_acl_refusals_name_their_verified_signers(
    agent: agents.AgentProc, keys: Keys
) -> None:
    action = file_action()
    answer = await agents.converse(agent, agents.run_frames(signed(action, keys.mallory)))
    assert answer[-1]["reason"] == "acl", answer
    (line,) = audit_of(agent, action)
    assert line["verdict"] == "rejected:acl"
    assert line["signers"] == [keys.mallory.fingerprint]
    assert line["modules"] == ["file"] and line["params_digest"] == action.operations_digest
    assert line["action_digest"] == digest(action)


async def test_an_outcome_over_outcome_bytes_keeps_only_its_summary(
    agent: agents.AgentProc, keys: Keys
) -> None:
    big = make_action("big", "all", [Operation("file", {"paths": ["/srv/big"]})])
    ran = await agents.converse(agent, agents.run_frames(signed(big, keys.alice, keys.bob)))
    assert kinds(ran).count("match") == BIG_FILES  # the live answer is whole
    again = await agents.converse(agent, agents.run_frames(signed(big, keys.alice, keys.bob)))
    assert kinds(again) == ["accepted", "done", "finished"], again
    assert any("rows not kept" in e for e in again[1]["errors"])
    stored = agent.dir / "state" / "outcomes" / f"{digest(big)}.frames"
    assert stored.stat().st_size <= OUTCOME_BYTES


async def test_stored_outcomes_stay_under_outcome_disk_bytes(
    agent: agents.AgentProc, keys: Keys
) -> None:
    actions = [file_action() for _ in range(6)]
    for action in actions:
        ran = await agents.converse(agent, agents.run_frames(signed(action, keys.alice, keys.bob)))
        assert kinds(ran)[-1] == "finished"
        held = sum(p.stat().st_size for p in (agent.dir / "state" / "outcomes").iterdir())
        assert held <= OUTCOME_DISK_BYTES
    oldest = await agents.converse(
        agent, agents.run_frames(signed(actions[0], keys.alice, keys.bob))
    )
    assert kinds(oldest) == ["rejected"] and "no outcome is held" in oldest[0]["detail"]
    newest = await agents.converse(
        agent, agents.run_frames(signed(actions[-1], keys.alice, keys.bob))
    )
    assert kinds(newest)[-1] == "finished" and newest[0]["replay"] is True
