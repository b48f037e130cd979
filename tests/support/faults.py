"""Faults seen from the console: a dedicated agent (``victim``) joined to the lab's inventory,
which a test kills, restarts or slows down, signed envelopes of the operations it runs, and
`spyglass action launch` in the background."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from console.lab.local import Lab
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.signing import Signer
from tests.support.agents import SPIN_YARA, AgentProc, start_agent, stop_agent
from tests.support.cli import SPYGLASS, console_env, spyglass
from tests.support.solo_agent import hostile_agent_dir
from tests.support.waiting import wait_until

VICTIM = "victim"
SLOW_OP = Operation("yara", SPIN_YARA)
EVERY_FILE_OP = Operation("file", {"paths": ["/srv"], "name": ["."]})
HELLO_OP = Operation("file", {"paths": ["/srv"], "name": ["^hello"]})


def victim_dir(lab: Lab, **limits: Any) -> Path:
    """An agent folder that trusts the lab's console SSH key and investigator key."""
    directory = hostile_agent_dir(lab, **limits)
    shutil.copy(lab.dir / "console_ed25519.pub", directory / "authorized_keys")
    return directory


def fleet_inventory(lab: Lab, where: Path, extra: dict[str, AgentProc]) -> Path:
    """The lab's inventory plus ``extra`` agents (name -> agent), host keys pinned."""
    inventory = tomllib.loads(lab.inventory.read_text())
    inventory["defaults"]["known_hosts"] = str(where / "known_hosts")
    inventory["defaults"]["client_keys"] = [str(lab.dir / "console_ed25519")]
    known = (lab.dir / "known_hosts").read_text()
    for name, agent in extra.items():
        inventory["hosts"].append(
            {"name": name, "address": agent.host, "port": agent.port, "tags": {"role": "test"}}
        )
        public = agent.host_key.export_public_key().decode().strip()
        known += f"[{agent.host}]:{agent.port} {public}\n"
    (where / "known_hosts").write_text(known)
    path = where / "inventory.toml"
    path.write_bytes(tomli_w.dumps(inventory).encode())
    return path


def victim_env(lab: Lab, agent: AgentProc, where: Path, store: str = "r.db") -> dict[str, str]:
    """The console's environment for the lab's fleet plus ``agent`` as the victim, its
    inventory and store (``store``) in ``where``."""
    return console_env(lab, fleet_inventory(lab, where, {VICTIM: agent}), where / store)


def envelope_file(lab: Lab, where: Path, *ops: Operation, expire: int = 300) -> Path:
    action = make_action("faults", "all", list(ops), expire_seconds=expire)
    path = where / f"{action.id}.json"
    Signer(lab.gnupghome).sign(Envelope(action)).save(path)
    return path


def action_id(path: Path) -> str:
    return str(json.loads(path.read_text())["action"]["id"])


def wait_for_verdict(agent: AgentProc, action: str, verdict: str = "accepted") -> None:
    wait_until(
        lambda: any(r["action_id"] == action and r["verdict"] == verdict for r in agent.audit),
        what=f"{action} {verdict}",
    )


def launch(
    env: dict[str, str], envelope: Path, *, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`spyglass action launch ENVELOPE -t name=victim --json` to the end."""
    return spyglass(
        env, "action", "launch", str(envelope), "-t", f"name={VICTIM}", "--json", prefix=prefix
    )


@contextmanager
def launching(
    env: dict[str, str], envelope: Path, target: str, *, stderr: int = subprocess.PIPE
) -> Iterator[subprocess.Popen[str]]:
    """`spyglass action launch ENVELOPE --json -t TARGET` in the background, killed at the end of
    the block if it still runs."""
    console = subprocess.Popen(
        [*SPYGLASS, "action", "launch", str(envelope), "--json", "-t", target],
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    try:
        yield console
    finally:
        if console.poll() is None:
            console.kill()
            console.wait()


def read_until_shown(
    console: subprocess.Popen[str], hosts: set[str], victim_rows: int
) -> list[dict[str, Any]]:
    """The JSON lines ``console`` prints, read as it prints them, until every one of ``hosts``
    answered and the victim's rows number ``victim_rows``."""
    assert console.stdout is not None
    printed: list[dict[str, Any]] = []
    while True:
        line = console.stdout.readline()
        assert line, f"console ended early: {printed[-3:]}"
        printed.append(json.loads(line))
        answered = {e["host"] for e in printed if e["event"] == "host"}
        rows = [e for e in printed if e["event"] == "match" and e["host"] == VICTIM]
        if answered >= hosts and len(rows) == victim_rows:
            return printed


@pytest.fixture
def victim(lab: Lab) -> Iterator[AgentProc]:
    started = start_agent(victim_dir(lab))
    holder = [started]
    yield started
    for agent in holder:
        if agent.proc.poll() is None:
            stop_agent(agent)
