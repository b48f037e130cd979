"""Approvals (k-of-n) through the CLI with two investigators' GNUPGHOMEs, against real agents;
and a new investigator key added to a running agent with SIGHUP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from protocol.signing import Signer, generate_key
from tests.support import cli
from tests.support.agents import AgentProc, start_agent, stop_agent, write_agent
from tests.support.paths import kill_gpg_agent, short_tmp
from tests.support.waiting import wait_for_text


class People:
    def __init__(self) -> None:
        self.homes = {name: short_tmp("g") for name in ("alice", "bob", "carol")}
        for name, home in self.homes.items():
            generate_key(home, name=name.title(), email=f"{name}@spyglass.invalid")
        self.signers = {name: Signer(home) for name, home in self.homes.items()}

    def fpr(self, name: str) -> str:
        return self.signers[name].fingerprint

    def public(self, name: str) -> str:
        return self.signers[name].export_public()


@pytest.fixture(scope="module")
def people() -> Iterator[People]:
    made = People()
    yield made
    for home in made.homes.values():
        kill_gpg_agent(home)


def agent_with(people: People, names: list[str], acl: dict[str, Any]) -> AgentProc:
    directory = short_tmp("ag")
    write_agent(directory, investigators={n: people.public(n) for n in names}, acl=acl)
    (directory / "root" / "srv").mkdir(parents=True)
    (directory / "root" / "srv" / "hello.txt").write_text("hello\n")
    return start_agent(directory)


def inventory_for(agent: AgentProc) -> Path:
    public = agent.host_key.export_public_key().decode().strip()
    (agent.dir / "known_hosts").write_text(f"[{agent.host}]:{agent.port} {public}\n")
    inventory = {
        "defaults": {
            "known_hosts": "known_hosts",
            "client_keys": ["console_key"],
            "connect_timeout": 5,
        },
        "hosts": [{"name": "approver", "address": agent.host, "port": agent.port}],
    }
    path = agent.dir / "inventory.toml"
    path.write_bytes(tomli_w.dumps(inventory).encode())
    return path


def spyglass(
    env: dict[str, str], home: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return cli.spyglass({**env, "GNUPGHOME": str(home)}, *args, timeout=timeout)


def host_event(stdout: str) -> dict[str, Any]:
    (event,) = [e for e in map(json.loads, stdout.splitlines()) if e["event"] == "host"]
    return event


@pytest.fixture
def two_of_two(people: People) -> Iterator[AgentProc]:
    both = {people.fpr("alice"): 1, people.fpr("bob"): 1}
    acl = {
        "default": {"minimum_weight": 1, "investigators": both},
        "file": {"minimum_weight": 2, "investigators": both},
    }
    agent = agent_with(people, ["alice", "bob"], acl)
    yield agent
    stop_agent(agent)


def test_two_of_two_acl_accepts_after_a_second_signature(
    people: People, two_of_two: AgentProc, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "SPYGLASS_INVENTORY": str(inventory_for(two_of_two)),
        "SPYGLASS_STORE": str(tmp_path / "results.db"),
    }
    alice, bob = people.homes["alice"], people.homes["bob"]
    config = str(two_of_two.dir / "agentd.toml")
    envelope = tmp_path / "envelope.json"
    signed = spyglass(
        env, alice, "run", "file", "--paths", "/srv", "--name", "^hello", "-t", "all",
        "--sign-only", str(envelope),
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert len(json.loads(envelope.read_text())["signatures"]) == 1

    shown = spyglass(env, bob, "action", "show", str(envelope), "--config", config)
    assert shown.returncode == 1, shown.stderr
    assert f"{people.fpr('alice')} Alice <alice@spyglass.invalid>: valid" in shown.stdout
    assert "file: acl.file needs weight 2, signers weigh 1" in shown.stdout
    assert "would be rejected: acl" in shown.stdout

    launched = spyglass(env, alice, "action", "launch", str(envelope), "--json")
    assert launched.returncode == 3, launched.stderr
    event = host_event(launched.stdout)
    assert (event["status"], event["reason"]) == ("rejected", "acl")

    again = spyglass(env, alice, "action", "sign", str(envelope))
    assert again.returncode == 2 and "already signed" in again.stderr
    cosigned = spyglass(env, bob, "action", "sign", str(envelope))
    assert cosigned.returncode == 0, cosigned.stderr
    assert "now 2 signatures" in cosigned.stderr

    shown = spyglass(env, alice, "action", "show", str(envelope), "--config", config, "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert [s["fingerprint"] for s in doc["signatures"]] == [people.fpr("alice"), people.fpr("bob")]
    assert doc["signatures"][1]["uid"] == "Bob <bob@spyglass.invalid>"  # from the agent's keys
    assert doc["agent"]["accepted"] is True
    assert doc["agent"]["modules"] == [
        {
            "module": "file",
            "rule": "acl.file",
            "weight": 2,
            "minimum_weight": 2,
            "signers": [people.fpr("alice"), people.fpr("bob")],
        }
    ]

    launched = spyglass(env, bob, "action", "launch", str(envelope), "--json")
    assert launched.returncode == 0, launched.stderr
    assert host_event(launched.stdout)["status"] == "matched"
    assert [r["verdict"] for r in two_of_two.audit] == ["rejected:acl", "accepted"]


def test_show_without_config_lists_signers(people: People, tmp_path: Path) -> None:
    envelope = tmp_path / "e.json"
    env = {**os.environ, "SPYGLASS_INVENTORY": "", "SPYGLASS_STORE": str(tmp_path / "r.db")}
    made = spyglass(
        env, people.homes["carol"], "run", "file", "--paths", "/srv", "-t", "role=web",
        "--sign-only", str(envelope),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    shown = spyglass(env, people.homes["carol"], "action", "show", str(envelope))
    assert shown.returncode == 0, shown.stderr
    assert "target: role=web" in shown.stdout
    assert f"1. {people.fpr('carol')} Carol <carol@spyglass.invalid>: valid" in shown.stdout
    # Alice's keyring does not know Carol: the signer is reported as unknown, not trusted
    shown = spyglass(env, people.homes["alice"], "action", "show", str(envelope))
    assert "unknown-key (nobody)" in shown.stdout


def test_sighup_adds_an_investigator_without_restart(people: People, tmp_path: Path) -> None:
    acl = {"default": {"minimum_weight": 1, "investigators": {people.fpr("alice"): 1}}}
    agent = agent_with(people, ["alice"], acl)
    try:
        env = {
            **os.environ,
            "SPYGLASS_INVENTORY": str(inventory_for(agent)),
            "SPYGLASS_STORE": str(tmp_path / "results.db"),
        }
        run = ("run", "file", "--paths", "/srv", "--name", "^hello", "-t", "all", "--json")
        before = spyglass(env, people.homes["carol"], *run)
        assert before.returncode == 3
        assert host_event(before.stdout)["reason"] == "unknown-signer"

        (agent.dir / "investigators" / "carol.asc").write_text(people.public("carol"))
        config = agent.dir / "agentd.toml"
        import tomllib

        document = tomllib.loads(config.read_text())
        document["acl"]["default"]["investigators"][people.fpr("carol")] = 1
        config.write_bytes(tomli_w.dumps(document).encode())
        os.kill(agent.proc.pid, signal.SIGHUP)
        wait_for_text(agent.dir / "agentd.log", f"reloaded {agent.dir.name}")

        after = spyglass(env, people.homes["carol"], *run)
        assert after.returncode == 0, after.stdout + after.stderr
        assert host_event(after.stdout)["status"] == "matched"
        assert agent.proc.poll() is None  # the same process: no restart
        accepted = [r for r in agent.audit if r["verdict"] == "accepted"]
        assert accepted[-1]["signers"] == [people.fpr("carol")]
    finally:
        stop_agent(agent)
