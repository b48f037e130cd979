"""Privacy mode: a real agent masks path and address columns before rows leave the endpoint."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agentd.privacy import MASK, row_masker
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.signing import Signer
from tests.support import agents
from tests.support.paths import short_tmp


def _agent(signer: Signer, privacy: bool) -> agents.AgentProc:
    directory = short_tmp("ap")
    agents.write_trusting_agent(directory, signer, limits={"privacy": privacy})
    (directory / "root" / "srv").mkdir(parents=True)
    (directory / "root" / "srv" / "secret-customer-list.csv").write_text("x\n")
    return agents.start_agent(directory)


@pytest.mark.parametrize("privacy", [True, False])
async def test_privacy_masks_paths(signer: Signer, privacy: bool) -> None:
    agent = _agent(signer, privacy)
    try:
        action = make_action(
            "t", "all", [Operation("file", {"paths": ["/srv"], "name": ["customer"]})]
        )
        frames = await agents.converse(
            agent, agents.run_frames(signer.sign(Envelope(action)).to_dict())
        )
    finally:
        agents.stop_agent(agent)
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
        await agents.converse(agent, agents.run_frames(envelope))
        await agents.converse(agent, agents.run_frames(envelope))  # the same id: served, not run
    finally:
        agents.stop_agent(agent)
    log = (agent.dir / "agentd.log").read_text().splitlines()
    decided = [line for line in log if action.id in line]
    assert len(decided) == 2 and decided[0].split()[1] == "accepted", log
    assert all(signer.fingerprint[-16:] in line and "(file)" in line for line in decided)
    assert log[-1].startswith("stopping: "), log
    shown = subprocess.run(
        [sys.executable, "-m", "agentd.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "spyglass-agentd init --dir DIR" in shown.stdout
