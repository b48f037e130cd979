"""`results resume` (issue 15.2): a run whose console was killed mid-run is completed in the
store by sending its action again only to the hosts without a final answer: every host ends with
a status, no row twice, no host run twice."""

from __future__ import annotations

import json
import signal
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from console.lab.local import Lab
from tests.support import faults, writers
from tests.support.agents import AgentProc, start_agent, stop_agent
from tests.support.cli import SPYGLASS, console_env, events, spyglass
from tests.support.lab import LAB_SIZE

LAB_HOSTS = [f"lab-{i:03d}" for i in range(1, LAB_SIZE + 1)]


@pytest.fixture
def victim(lab: Lab) -> Iterator[AgentProc]:
    """An agent whose op 1 (``SLOW_OP``) spins until its 5 s module timeout."""
    started = start_agent(faults.victim_dir(lab, module_timeout=5))
    yield started
    stop_agent(started)


def third_in_line(lab: Lab, where: Path, victim: AgentProc) -> Path:
    """The lab's inventory plus the victim, which comes third: with one host at a time, the
    hosts after it have not been sent anything while it spins."""
    path = faults.fleet_inventory(lab, where, {faults.VICTIM: victim})
    inventory = tomllib.loads(path.read_text())
    hosts = inventory["hosts"]
    hosts.insert(2, hosts.pop())
    path.write_bytes(tomli_w.dumps(inventory).encode())
    return path


def rows(out: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted(
        (e["host"], json.dumps(e["data"], sort_keys=True)) for e in out if e["event"] == "match"
    )


def accepted(lab: Lab, host: str, action: str) -> int:
    audit = (lab.host_dir(host) / "audit.log").read_text().splitlines()
    return sum(
        1 for r in map(json.loads, audit) if r["action_id"] == action and "accepted" in r["verdict"]
    )


def test_resume_completes_a_run_whose_console_was_killed(
    lab: Lab, victim: AgentProc, tmp_path: Path
) -> None:
    env = console_env(lab, third_in_line(lab, tmp_path, victim), tmp_path / "r.db")
    envelope = faults.envelope_file(lab, tmp_path, faults.EVERY_FILE_OP, faults.SLOW_OP)
    run_id = faults.action_id(envelope)
    command = [*SPYGLASS, "action", "launch", str(envelope), "--json", "--concurrency", "1"]
    console = subprocess.Popen(
        [*command, "-t", "all"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    printed: list[dict[str, Any]] = []
    try:
        assert console.stdout is not None
        while True:  # lab-001 and lab-002 answered, the victim's op 0 rows shown, op 1 spins
            line = console.stdout.readline()
            assert line, f"console ended early: {printed[-3:]}"
            printed.append(json.loads(line))
            answered = {e["host"] for e in printed if e["event"] == "host"}
            victim_rows = [
                e for e in printed if e["event"] == "match" and e["host"] == faults.VICTIM
            ]
            if answered == {"lab-001", "lab-002"} and len(victim_rows) == 2:
                break
        faults.wait_for_verdict(victim, run_id)
        console.send_signal(signal.SIGKILL)
        console.wait()
    finally:
        if console.poll() is None:
            console.kill()
    before = events(spyglass(env, "results", "show", run_id, "--json").stdout)
    assert {e["host"] for e in before if e["event"] == "host"} == {"lab-001", "lab-002"}
    shown = spyglass(env, "results", "show", run_id).stdout.splitlines()
    pending = [line.split("\t")[0] for line in shown if "\tpending\t" in line]
    assert sorted(pending) == sorted([faults.VICTIM, *LAB_HOSTS[2:]])

    resumed = spyglass(env, "results", "resume", run_id, "--json")
    assert resumed.returncode in (0, 3), resumed.stderr
    out = events(resumed.stdout)
    sent_again = {e["host"] for e in out if e["event"] == "host"}
    assert sent_again == {faults.VICTIM, *LAB_HOSTS[2:]}  # not the two that had answered
    assert out[-1]["event"] == "summary"
    assert (out[-1]["run_id"], out[-1]["hosts"]) == (run_id, LAB_SIZE + 1)

    stored = events(spyglass(env, "results", "show", run_id, "--json").stdout)
    statuses = {e["host"]: e["status"] for e in stored if e["event"] == "host"}
    assert set(statuses) == {faults.VICTIM, *LAB_HOSTS}  # every host has a final status
    assert {statuses[h] for h in LAB_HOSTS} == {"matched"}
    stored_rows = rows(stored)
    assert len(stored_rows) == len(set(stored_rows))  # no row twice
    # Each lab host's rows are those of a run that was never interrupted.
    reference = spyglass(
        env, "run", "file", "--paths", "/srv", "--name", ".", "-t", "name=lab-*", "--json"
    )
    expected = [r for r in rows(events(reference.stdout))]
    assert [r for r in stored_rows if r[0] != faults.VICTIM] == expected
    victim_stored = [r for r in stored_rows if r[0] == faults.VICTIM]
    assert len(victim_stored) >= 2  # hello.txt and slow.txt, kept or brought again
    for host in LAB_HOSTS:  # nothing ran twice
        assert accepted(lab, host, run_id) == 1, host
    assert "\tpending\t" not in spyglass(env, "results", "show", run_id).stdout
    listed = spyglass(env, "results", "list").stdout
    assert listed.count(f"{run_id}\t") == 1  # the same run, completed


def test_resume_of_a_complete_run_sends_nothing(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    envelope = faults.envelope_file(lab, tmp_path, faults.EVERY_FILE_OP)
    first = spyglass(lab_env, "action", "launch", str(envelope), "-t", "all", "--json")
    assert first.returncode == 0, first.stderr
    again = spyglass(lab_env, "results", "resume", faults.action_id(envelope), "--json")
    assert again.returncode == 0, again.stderr
    out = events(again.stdout)
    assert [e["event"] for e in out] == ["action", "summary"]  # as `run --json`: the action first
    assert out[-1]["hosts"] == LAB_SIZE and out[-1]["matched"] == LAB_SIZE
    assert "no host to send the action to again" in again.stderr
    for host in LAB_HOSTS:
        assert accepted(lab, host, faults.action_id(envelope)) == 1


def test_resume_refuses_a_run_its_console_still_writes(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    envelope = faults.envelope_file(lab, tmp_path, faults.EVERY_FILE_OP)
    store = Path(lab_env["SPYGLASS_STORE"])
    with writers.writing(store, envelope, LAB_HOSTS[:2], {"lab-001": "matched"}, stay=True) as (
        writer,
        run_id,
    ):
        refused = spyglass(lab_env, "results", "resume", run_id)
        assert refused.returncode == 2
        assert f"still being written by its console (pid {writer.pid} on " in refused.stderr
        assert f"`spyglass results follow {run_id}`" in refused.stderr
        writer.kill()
        writer.wait()
        resumed = spyglass(lab_env, "results", "resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    out = events(resumed.stdout)
    assert [e["host"] for e in out if e["event"] == "host"] == ["lab-002"]
    assert accepted(lab, "lab-001", run_id) == 0 and accepted(lab, "lab-002", run_id) == 1
