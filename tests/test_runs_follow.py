"""`results follow` (issue 15.4): the events of a run another console process is writing, read
from the store as they are committed, are the ones that process printed with `--json`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.lab.local import Lab
from tests.support import faults
from tests.support.agents import AgentProc, start_agent, stop_agent
from tests.support.cli import SPYGLASS, console_env, events, spyglass
from tests.support.lab import LAB_SIZE


@pytest.fixture
def victim(lab: Lab) -> Iterator[AgentProc]:
    """An agent whose ``SLOW_OP`` spins until its 3 s module timeout: the run stays open."""
    started = start_agent(faults.victim_dir(lab, module_timeout=3))
    yield started
    stop_agent(started)


def test_follow_prints_what_the_writing_console_printed(
    lab: Lab, victim: AgentProc, tmp_path: Path
) -> None:
    env = console_env(
        lab, faults.fleet_inventory(lab, tmp_path, {faults.VICTIM: victim}), tmp_path / "r.db"
    )
    envelope = faults.envelope_file(lab, tmp_path, faults.EVERY_FILE_OP, faults.SLOW_OP)
    writer = subprocess.Popen(
        [*SPYGLASS, "action", "launch", str(envelope), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert writer.stdout is not None
        first = writer.stdout.readline()  # the run exists: its first event is stored
        assert first, "the writing console printed nothing"
        follower = spyglass(env, "results", "follow", faults.action_id(envelope), "--json")
        written = [json.loads(first), *events(writer.communicate(timeout=120)[0])]
    finally:
        if writer.poll() is None:
            writer.kill()
    assert follower.returncode == writer.returncode == 3, follower.stderr  # the victim timed out
    followed = events(follower.stdout)
    assert followed == written
    assert followed[-1]["event"] == "summary" and followed[-1]["hosts"] == LAB_SIZE + 1
    hosts: dict[str, Any] = {e["host"]: e for e in followed if e["event"] == "host"}
    assert hosts[faults.VICTIM]["status"] == "timeout"

    text = spyglass(env, "results", "follow", faults.action_id(envelope))  # a finished run: at once
    assert text.returncode == 3
    assert f"{faults.VICTIM}\ttimeout" in text.stdout
    assert "/srv/hello.txt" in text.stdout
