"""Privacy mode: a real agent masks path and address columns before rows leave the endpoint."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from agentd.privacy import MASK, row_masker
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.signing import Signer, generate_key
from tests.support.agents import (
    AgentProc,
    converse,
    run_frames,
    start_agent,
    stop_agent,
    write_agent,
)
from tests.support.paths import kill_gpg_agent, short_tmp


@pytest.fixture(scope="module")
def signer() -> Iterator[Signer]:
    home = short_tmp("g")
    generate_key(home)
    yield Signer(home)
    kill_gpg_agent(home)


def _agent(signer: Signer, privacy: bool) -> AgentProc:
    directory = short_tmp("ap")
    acl = {"default": {"minimum_weight": 1, "investigators": {signer.fingerprint: 1}}}
    write_agent(
        directory,
        investigators={"me": signer.export_public()},
        acl=acl,
        limits={"privacy": privacy},
    )
    (directory / "root" / "srv").mkdir(parents=True)
    (directory / "root" / "srv" / "secret-customer-list.csv").write_text("x\n")
    return start_agent(directory)


@pytest.mark.parametrize("privacy", [True, False])
async def test_privacy_masks_paths(signer: Signer, privacy: bool) -> None:
    agent = _agent(signer, privacy)
    try:
        action = make_action(
            "t", "all", [Operation("file", {"paths": ["/srv"], "name": ["customer"]})]
        )
        frames = await converse(agent, run_frames(signer.sign(Envelope(action)).to_dict()))
    finally:
        stop_agent(agent)
    match = next(f for f in frames if f["type"] == "match")
    expected = MASK if privacy else "/srv/secret-customer-list.csv"
    assert match["data"]["path"] == expected
    assert match["data"]["size"] == 2  # metadata that is not a path stays


def test_masker_follows_column_kinds() -> None:
    mask = row_masker("netstat")
    row = {"remote_addr": "203.0.113.9", "remote_port": 443, "local_addr": "", "process": "sshd"}
    masked = mask(row)
    assert masked["remote_addr"] == MASK and masked["remote_port"] == 443
    assert masked["process"] == "sshd"


async def test_the_agent_logs_each_decision_and_its_stop(signer: Signer) -> None:
    """The agent's log (the journal under systemd) gets one line per decision, accepted or
    rejected, and one when SIGTERM stops it; `spyglass-agentd --help` names `init`."""
    agent = _agent(signer, False)
    try:
        action = make_action("t", "all", [Operation("file", {"paths": ["/srv"], "name": ["x"]})])
        envelope = signer.sign(Envelope(action)).to_dict()
        await converse(agent, run_frames(envelope))
        await converse(agent, run_frames(envelope))  # the same id again: served, not run
    finally:
        stop_agent(agent)
    log = (agent.dir / "agentd.log").read_text().splitlines()
    decided = [line for line in log if action.id in line]
    assert len(decided) == 2 and decided[0].split()[1] == "accepted", log
    assert all(signer.fingerprint[-16:] in line and "(file)" in line for line in decided)
    assert log[-1].startswith("stopping: "), log
    shown = subprocess.run(
        [sys.executable, "-m", "agentd.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "spyglass-agentd init --dir DIR" in shown.stdout
