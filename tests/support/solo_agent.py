"""An agent run alone beside the lab: it trusts the lab's investigator key and has small limits
(idle and login timeouts of ``IDLE`` s, ``max_concurrent`` ``MAX_CONCURRENT``), so a hostile
client or a fault reaches them quickly; and the checks that it still lives and serves."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from console.lab.local import Lab
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.signing import Signer
from tests.support.agents import AgentProc, converse, run_frames, write_trusting_agent
from tests.support.paths import short_tmp

IDLE = 2
MAX_CONCURRENT = 2
SLOW_LINE = b"a" * 40 + b"!\n"  # `(a+)+$` backtracks for ages on this line


def hostile_agent_dir(lab: Lab, **limits: Any) -> Path:
    """An agent folder trusting the lab investigator, with short idle and login timeouts."""
    directory = short_tmp("ha")
    signer = Signer(lab.gnupghome)
    write_trusting_agent(
        directory,
        signer,
        "lab",
        limits={"module_timeout": 60, "max_concurrent": MAX_CONCURRENT, **limits},
    )
    config_path = directory / "agentd.toml"
    config = tomllib.loads(config_path.read_text())
    config["agent"].update(idle_timeout=IDLE, login_timeout=IDLE)
    config_path.write_bytes(tomli_w.dumps(config).encode())
    srv = directory / "root" / "srv"
    srv.mkdir(parents=True)
    (srv / "hello.txt").write_text("hello\n")
    (srv / "slow.txt").write_bytes(SLOW_LINE)
    return directory


def signed(signer: Signer, **params: Any) -> dict[str, Any]:
    action = make_action("hostile", "all", [Operation("file", {"paths": ["/srv"], **params})])
    return signer.sign(Envelope(action)).to_dict()


async def assert_still_serves(agent: AgentProc, signer: Signer) -> None:
    frames = await converse(agent, run_frames(signed(signer, name=["^hello"])))
    assert [f["type"] for f in frames] == ["accepted", "match", "done", "finished"], frames
    assert frames[1]["data"]["path"] == "/srv/hello.txt"


def assert_alive(agent: AgentProc) -> None:
    assert agent.proc.poll() is None, (agent.dir / "agentd.log").read_text()[-2000:]
