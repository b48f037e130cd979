"""Privacy mode: a real agent masks path and address columns before rows leave the endpoint."""

from __future__ import annotations

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
