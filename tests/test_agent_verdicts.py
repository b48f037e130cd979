"""Agents of one process share signature and ACL verdicts (agentd.agent._verdicts), and the
sharing changes no answer: each agent still applies its own time rules first, a forged or
re-aimed envelope is refused by every agent, and a different ACL is a different verdict."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.signing import Signer, generate_key
from tests.support import agents
from tests.support.paths import kill_gpg_agent, short_tmp


@pytest.fixture(scope="module")
def homes() -> list[Path]:
    return [short_tmp("g"), short_tmp("g")]


@pytest.fixture(scope="module")
def signers(homes: list[Path]) -> Iterator[tuple[Signer, Signer]]:
    for home, name in zip(homes, ("alice", "bob"), strict=True):
        generate_key(home, name=name, email=f"{name}@spyglass.invalid")
    yield Signer(homes[0]), Signer(homes[1])
    for home in homes:
        kill_gpg_agent(home)


@pytest.fixture(scope="module")
def trio(signers: tuple[Signer, Signer]) -> Iterator[list[agents.AgentProc]]:
    """Three agents in one process trusting alice and bob: ``long`` and ``short`` differ only in
    the longest action lifetime they accept; ``strict`` needs both signatures."""
    alice, bob = signers
    one = {alice.fingerprint: 1, bob.fingerprint: 1}
    settings: dict[str, tuple[dict[str, Any], int]] = {
        "long": ({"minimum_weight": 1, "investigators": one}, 86400),
        "short": ({"minimum_weight": 1, "investigators": one}, 60),
        "strict": ({"minimum_weight": 2, "investigators": one}, 86400),
    }
    directories = []
    for name, (acl, max_lifetime) in settings.items():
        directory = short_tmp("vd") / name
        agents.write_agent(
            directory,
            investigators={"alice": alice.export_public(), "bob": bob.export_public()},
            acl={"default": acl},
            agent={"max_lifetime": max_lifetime},
        )
        (directory / "root" / "srv").mkdir(parents=True)
        (directory / "root" / "srv" / "hello.txt").write_text("hello\n")
        directories.append(directory)
    started = agents.start_agents(directories)
    yield started
    agents.stop_agent(started[0])


def envelope(*signers: Signer, expire_seconds: int = 50) -> dict[str, Any]:
    act = make_action(
        "verdicts",
        "all",
        [Operation("file", {"paths": ["/srv"], "name": ["^hello"]})],
        expire_seconds=expire_seconds,
    )
    env = Envelope(act)
    for signer in signers:
        env = signer.sign(env)
    return env.to_dict()


async def last_frame(agent: agents.AgentProc, env: dict[str, Any]) -> dict[str, Any]:
    return (await agents.converse(agent, agents.run_frames(env)))[-1]


async def test_each_agent_applies_its_own_time_rules_to_a_shared_verdict(
    trio: list[agents.AgentProc], signers: tuple[Signer, Signer]
) -> None:
    long, short, _ = trio
    env = envelope(signers[0], expire_seconds=3600)
    assert (await last_frame(long, env))["type"] == "finished"
    refused = await last_frame(short, env)  # same scope: the verdict is kept, the lifetime is not
    assert (refused["type"], refused["reason"]) == ("rejected", "expired"), refused
    assert refused["detail"] == "lifetime 1 h exceeds this agent's maximum of 60 s"


async def test_a_forged_envelope_is_refused_by_every_agent(
    trio: list[agents.AgentProc], signers: tuple[Signer, Signer]
) -> None:
    env = envelope(signers[0])
    env["action"]["description"] = "changed after signing"
    for agent in trio:
        refused = await last_frame(agent, env)
        assert (refused["type"], refused["reason"]) == ("rejected", "bad-signature"), refused
        assert refused["action_id"] == env["action"]["id"]
    assert all(a.audit[-1]["verdict"] == "rejected:bad-signature" for a in trio)


async def test_a_different_acl_is_a_different_verdict(
    trio: list[agents.AgentProc], signers: tuple[Signer, Signer]
) -> None:
    long, _, strict = trio
    alice, bob = signers
    env = envelope(alice)
    assert (await last_frame(long, env))["type"] == "finished"
    refused = await last_frame(strict, env)
    assert (refused["type"], refused["reason"]) == ("rejected", "acl"), refused
    both = envelope(alice, bob)
    assert (await last_frame(strict, both))["type"] == "finished"
    digests = {a.audit[-1]["params_digest"] for a in (long, strict)}
    assert len(digests) == 1 and None not in digests  # the same operations, the same digest


async def test_a_signature_only_gpg_reads_is_judged_by_gpg(
    trio: list[agents.AgentProc], signers: tuple[Signer, Signer], homes: list[Path]
) -> None:
    """alice's usual signature is checked in the agent's process; bob's carries a notation, a
    shape only gpg reads, so the verdict waits for gpg: ``strict`` runs the action only if gpg
    found bob's signature valid, and refuses it when bob's covers other bytes."""
    _, _, strict = trio
    for signed_by_bob, expected in ((b"", "finished"), (b" ", "rejected")):
        env = Envelope(make_action("notation", "all", [Operation("file", {"paths": ["/srv"]})]))
        env = signers[0].sign(env)
        command = ["gpg", "--homedir", str(homes[1]), "--batch", "--detach-sign", "--armor"]
        command += ["--sig-notation", "case@spyglass.invalid=unusual"]
        data = env.action.canonical + signed_by_bob
        signature = subprocess.run(command, input=data, capture_output=True, check=True).stdout
        answer = await last_frame(strict, env.with_signature(signature.decode()).to_dict())
        assert answer["type"] == expected, answer
        if expected == "rejected":
            assert answer["reason"] == "bad-signature", answer
