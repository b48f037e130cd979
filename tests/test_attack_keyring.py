"""Revoking an investigator key by deleting it from ``investigators/`` (issue 11, point 2).

The documented response to a stolen key is to delete its ``.asc`` and send the agents SIGHUP (or
restart them). The agent's keyring must then be exactly the folder's keys: the removed key signs
nothing any more, the remaining keys keep working, an action already running is not touched, and
an ACL entry naming the removed key is reported by the agent and by ``spyglass action show``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.frames import read_frame
from protocol.signing import Signer, generate_key
from tests.support import agents
from tests.support.cli import SPYGLASS
from tests.support.paths import kill_gpg_agent, short_tmp
from tests.support.waiting import wait_for_text

SLOW_OP = Operation("file", {"paths": ["/srv/slow"], "content": ["(a+)+$|needle"]})
HELLO_OP = Operation("file", {"paths": ["/srv"], "name": ["^hello"]})


@pytest.fixture(scope="module")
def homes() -> Iterator[dict[str, Path]]:
    made = {name: short_tmp("g") for name in ("alice", "bob")}
    for name, home in made.items():
        generate_key(home, name=name, email=f"{name}@spyglass.invalid")
    yield made
    for home in made.values():
        kill_gpg_agent(home)


def signed(home: Path, op: Operation) -> dict[str, Any]:
    return Signer(home).sign(Envelope(make_action("k", "all", [op]))).to_dict()


@pytest.fixture
def agent(homes: dict[str, Path]) -> Iterator[agents.AgentProc]:
    signers = {name: Signer(home) for name, home in homes.items()}
    directory = short_tmp("ak")
    agents.write_agent(
        directory,
        investigators={name: s.export_public() for name, s in signers.items()},
        acl={
            "default": {
                "minimum_weight": 1,
                "investigators": {s.fingerprint: 1 for s in signers.values()},
            }
        },
        limits={"module_timeout": 120},
    )
    srv = directory / "root" / "srv"
    (srv / "slow").mkdir(parents=True)
    (srv / "hello.txt").write_text("hello\n")
    for i in range(12):
        (srv / "slow" / f"{i:02d}.txt").write_bytes(b"a" * 21 + b"!\nneedle\n")
    started = agents.start_agent(directory)
    yield started
    agents.stop_agent(started)


async def outcome(agent: agents.AgentProc, home: Path) -> str:
    frames = await agents.converse(agent, agents.run_frames(signed(home, HELLO_OP)))
    return str(frames[-1].get("reason") or frames[-1]["type"])


async def test_a_key_deleted_from_the_folder_signs_nothing_after_sighup_or_restart(
    agent: agents.AgentProc, homes: dict[str, Path]
) -> None:
    alice = Signer(homes["alice"]).fingerprint
    assert await outcome(agent, homes["alice"]) == "finished"
    async with await agents.connect(
        agent
    ) as conn:  # an action of alice's runs while she is revoked
        running = await conn.create_process(subsystem="spyglass", encoding=None)
        running.stdin.write(agents.run_frames(signed(homes["alice"], SLOW_OP)))
        assert (await read_frame(running.stdout))["type"] == "accepted"
        (agent.dir / "investigators" / "alice.asc").unlink()
        os.kill(agent.proc.pid, signal.SIGHUP)
        wait_for_text(agent.dir / "agentd.log", f"reloaded {agent.dir.name}")
        assert await outcome(agent, homes["alice"]) == "unknown-signer"
        assert await outcome(agent, homes["bob"]) == "finished"  # no gap for the others
        frames = []
        async with asyncio.timeout(120):
            while not frames or frames[-1]["type"] != "finished":
                frames.append(await read_frame(running.stdout))
        assert [f["status"] for f in frames if f["type"] == "done"] == ["ok"]
    log = (agent.dir / "agentd.log").read_text()
    assert f"acl.default names {alice}, whose key is not in the investigators folder" in log
    agents.stop_agent(agent)
    restarted = agents.start_agent(agent.dir)
    agent.proc = restarted.proc  # the fixture stops this one
    assert await outcome(restarted, homes["alice"]) == "unknown-signer"
    assert await outcome(restarted, homes["bob"]) == "finished"


def test_action_show_reports_an_acl_entry_without_its_key(
    agent: agents.AgentProc, homes: dict[str, Path], tmp_path: Path
) -> None:
    alice = Signer(homes["alice"]).fingerprint
    envelope = tmp_path / "envelope.json"
    Envelope.save(
        Signer(homes["bob"]).sign(Envelope(make_action("k", "all", [HELLO_OP]))), envelope
    )
    (agent.dir / "investigators" / "alice.asc").unlink()
    config = str(agent.dir / "agentd.toml")
    shown = subprocess.run(
        [*SPYGLASS, "action", "show", str(envelope), "--config", config],
        env={**os.environ, "GNUPGHOME": str(homes["bob"])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    expected = f"acl.default names {alice}, whose key is not in the investigators folder"
    assert expected in shown.stdout + shown.stderr
