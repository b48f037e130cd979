"""The loopback transport: the console's fan-out and store over the agent's own ``serve``, in
process, with no SSH (real agent, real gpg signature, real module child)."""

from __future__ import annotations

import gc
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator

import pytest

from agentd.agent import Agent
from console.actions.compose import compose
from console.fanout.dispatch import Dispatcher
from console.fanout.investigation import Investigation
from console.fanout.loopback import LoopbackTransport
from console.lab.local import Lab
from console.results.records import Event, HostEvent, MatchEvent
from console.results.store import Store
from inventory.model import Host
from protocol.agent_config import load_config
from protocol.envelope import Envelope
from protocol.signing import Signer
from tests.support.agents import write_agent
from tests.support.paths import kill_gpg_agent, short_tmp


@pytest.fixture
def agent(lab: Lab) -> Iterator[Agent]:
    """An agent trusting the lab's investigator, with one planted file under its root."""
    directory = short_tmp("loop")
    lab_host = tomllib.loads((lab.host_dir("lab-001") / "agentd.toml").read_text())
    public = (lab.host_dir("lab-001") / "investigators" / "lab.asc").read_text()
    config = write_agent(directory / "h", investigators={"lab": public}, acl=lab_host["acl"])
    (directory / "h" / "root" / "srv").mkdir(parents=True)
    (directory / "h" / "root" / "srv" / "loop-ioc.bin").write_bytes(b"x")
    served = Agent(load_config(config))
    try:
        yield served
    finally:
        served.close()
        kill_gpg_agent(directory / "h" / "state" / "gnupg")
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_real_agent_answers_through_the_loopback(lab: Lab, agent: Agent) -> None:
    action = compose("file", {"paths": ["/srv"], "name": [r"^loop-ioc\.bin$"]}, "all")
    envelope = Signer(lab.gnupghome).sign(Envelope(action))
    hosts = [Host("h", "127.0.0.1", 22, "spyglass"), Host("gone", "127.0.0.1", 22, "spyglass")]
    transport = LoopbackTransport({"h": agent.serve})
    store = Store(short_tmp("loopdb") / "results.db")
    events: list[Event] = []
    thresholds: set[int] = set()  # generation 2's, as each event arrives

    def sink(event: Event) -> None:
        thresholds.add(gc.get_threshold()[2])
        events.append(event)

    before = gc.get_threshold()
    try:
        investigation = Investigation(envelope, hosts, Dispatcher(transport), store)
        summary = await investigation.run(sink)
        stored = [dict(m) for m in store.matches(action.id)]
    finally:
        store.close()
    h = summary.results["h"]
    assert (h.status, h.matches) == ("matched", 1), h
    assert h.agent is not None and h.agent["name"] == "h"
    assert summary.results["gone"].status == "unreachable"
    shown = [e for e in events if isinstance(e, MatchEvent)]
    assert [e.data["path"] for e in shown] == ["/srv/loop-ioc.bin"]
    assert [m["host"] for m in stored] == ["h"]
    assert {e.result.host for e in events if isinstance(e, HostEvent)} == {"h", "gone"}
    assert thresholds == {2**31 - 1} and gc.get_threshold() == before  # no full collections


def test_the_loopback_needs_no_ssh_module() -> None:
    """The transport seam: dispatch and loopback are usable without asyncssh loaded."""
    code = (
        "import sys\nimport console.fanout.dispatch, console.fanout.loopback\n"
        "print('asyncssh' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
