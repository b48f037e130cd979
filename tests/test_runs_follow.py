"""`results follow` (issue 15.4): the events of a run another console process is writing, read
from the store as they are committed, are the ones that process printed with `--json`."""

from __future__ import annotations

import dataclasses
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.cli.results import EXIT_WRITER_GONE
from console.lab.local import Lab
from console.results.records import HostEvent
from console.results.store import Store
from console.results.writer import STALE, Writer, process_identity, writer_alive
from tests.support import faults, writers
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
        first = writers.until_stored(writer)
        follower = spyglass(env, "results", "follow", faults.action_id(envelope), "--json")
        written = [*first, *writers.the_rest(writer)]
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


def test_follow_of_a_run_whose_console_was_killed_ends_and_says_resume(
    lab: Lab, victim: AgentProc, tmp_path: Path
) -> None:
    env = console_env(
        lab, faults.fleet_inventory(lab, tmp_path, {faults.VICTIM: victim}), tmp_path / "r.db"
    )
    envelope = faults.envelope_file(lab, tmp_path, faults.EVERY_FILE_OP, faults.SLOW_OP)
    run_id = faults.action_id(envelope)
    with faults.launching(env, envelope, "all", stderr=subprocess.DEVNULL) as writer:
        writers.until_stored(writer)
        faults.wait_for_verdict(victim, run_id)  # the victim spins: the run stays open
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    followed = spyglass(env, "results", "follow", run_id, "--json", timeout=60)
    assert followed.returncode == EXIT_WRITER_GONE, followed.stderr
    (line,) = followed.stderr.splitlines()
    assert f"run {run_id} is unfinished" in line and f"pid {writer.pid} on " in line
    assert f"`spyglass results resume {run_id}`" in line
    listed = spyglass(env, "results", "list").stdout.splitlines()[1].split("\t")
    assert listed[:3:2] == [run_id, "unfinished"]
    printed = events(followed.stdout)
    assert printed[0]["event"] == "action" and "summary" not in {e["event"] for e in printed}
    store = Store(env["SPYGLASS_STORE"])
    try:  # every event the killed console had stored was printed
        stored = [
            e.result.to_event() if isinstance(e, HostEvent) else e.to_event()
            for _, e in store.events(run_id)
        ]
    finally:
        store.close()
    assert printed[1:] == stored and stored


def test_a_writer_is_alive_only_while_its_very_process_runs(tmp_path: Path) -> None:
    """The pid alone is not trusted: a pid given to another process later does not count."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        identity = process_identity(child.pid)
        assert identity is not None
        here = Writer(child.pid, socket.gethostname(), identity, 0.0)
        assert here.alive()
        assert not dataclasses.replace(here, identity=identity + "0").alive()  # pid reused
        # on another machine (another name, or the same name and another boot): the heartbeat
        for other in (dict(host="another-machine"), dict(identity="other-boot/" + identity)):
            elsewhere = dataclasses.replace(here, **other)
            assert not elsewhere.local
            assert elsewhere.alive(now=STALE - 1) and not elsewhere.alive(now=STALE + 1)
    finally:
        child.kill()
        child.wait()
    assert process_identity(child.pid) is None and not here.alive()
    store = Store(tmp_path / "r.db")
    try:
        run_id = store.begin_run("A1", "n", "all", ["file"], {}, 1, ["h"])
        run = store.run(run_id)
        assert run is not None and Writer.of_run(run) == dataclasses.replace(
            Writer.this_process(), heartbeat=run["heartbeat"]
        )
        assert writer_alive(run)
    finally:
        store.close()
