"""Faults seen from the console: an agent killed or restarted mid-action, a console killed
mid-run, a slow lossy network. Real `spyglass` processes against the lab plus a dedicated agent
(``victim``) that the test kills, restarts or slows down.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

from console.lab.local import Lab
from tests.support import faults
from tests.support.agents import AgentProc, start_agent, stop_agent
from tests.support.cli import console_env, events, spyglass
from tests.support.faults import victim

__all__ = ["victim"]  # a fixture: used by its name

#: 150 ms each way on lo (300 ms round trips), and 5% of packets lost.
NETEM = ("tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "150ms", "loss", "5%")


def host_statuses(out: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["host"]: e for e in out if e["event"] == "host"}


def kill_hard(agent: AgentProc) -> None:
    """SIGKILL the agent, then its zygote and operation children (they would be orphans)."""
    children = psutil.Process(agent.proc.pid).children(recursive=True)
    agent.proc.kill()
    agent.proc.wait()
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


# -- tests -------------------------------------------------------------------------------------
def test_agent_killed_mid_action_fails_that_host_only(
    lab: Lab, victim: AgentProc, tmp_path: Path
) -> None:
    env = faults.victim_env(lab, victim, tmp_path)
    envelope = faults.envelope_file(lab, tmp_path, faults.SLOW_OP)
    with faults.launching(
        env, envelope, f"name={faults.VICTIM} or name=lab-001 or name=lab-002"
    ) as console:
        faults.wait_for_verdict(victim, faults.action_id(envelope))
        kill_hard(victim)
        out, err = console.communicate(timeout=60)
    assert console.returncode == 3, err
    hosts = host_statuses(events(out))
    assert hosts[faults.VICTIM]["status"] in ("error", "unreachable"), hosts[faults.VICTIM]
    assert hosts[faults.VICTIM]["detail"]
    assert hosts["lab-001"]["status"] == hosts["lab-002"]["status"] == "nomatch"
    assert events(out)[-1] == {**events(out)[-1], "hosts": 3, "nomatch": 2, "failed": 1}


def test_console_killed_mid_run_keeps_every_printed_event(
    lab: Lab, victim: AgentProc, tmp_path: Path
) -> None:
    """op 0 matches every file at once; op 1 spins on the victim only (its slow.txt)."""
    env = faults.victim_env(lab, victim, tmp_path)
    envelope = faults.envelope_file(lab, tmp_path, faults.EVERY_FILE_OP, faults.SLOW_OP)
    fast_hosts = {"lab-001", "lab-002", "lab-003"}
    target = f"name={faults.VICTIM} or name in (lab-001, lab-002, lab-003)"
    with faults.launching(env, envelope, target, stderr=subprocess.DEVNULL) as console:
        # until the victim's op 0 is done: its rows are hello.txt and slow.txt
        printed = faults.read_until_shown(console, fast_hosts, victim_rows=2)
        faults.wait_for_verdict(victim, faults.action_id(envelope))
        console.send_signal(signal.SIGKILL)
        console.wait()
        assert console.stdout is not None
        printed += [json.loads(line) for line in console.stdout.read().splitlines()]
    shown = spyglass(env, "results", "show", faults.action_id(envelope), "--json")
    assert shown.returncode == 0, shown.stderr
    stored = events(shown.stdout)

    def key(e: dict[str, Any]) -> str:
        return json.dumps(e, sort_keys=True)

    # The console is idle when killed (the victim's op 1 spins), so nothing is stored unprinted.
    printed_matches = [key(e) for e in printed if e["event"] == "match"]
    stored_matches = [key(e) for e in stored if e["event"] == "match"]
    assert sorted(set(stored_matches) - set(printed_matches)) == []
    # Stored before printed (console/fanout/investigation.py): every printed event is in the store.
    assert [m for m in printed_matches if m not in stored_matches] == []
    printed_hosts = {e["host"]: e["status"] for e in printed if e["event"] == "host"}
    stored_hosts = {e["host"]: e["status"] for e in stored if e["event"] == "host"}
    assert set(printed_hosts) == fast_hosts
    assert stored_hosts == printed_hosts
    text = spyglass(env, "results", "show", faults.action_id(envelope))
    assert text.returncode == 0
    assert all(json.loads(m)["data"]["path"] in text.stdout for m in stored_matches)


def _restart(lab: Lab, agent: AgentProc, where: Path) -> tuple[AgentProc, Path]:
    """Stop and start the agent (it comes back on a new port); a re-pointed inventory."""
    stop_agent(agent)
    again = start_agent(agent.dir)
    return again, faults.fleet_inventory(lab, where, {faults.VICTIM: again})


def test_restarted_agent_serves_the_stored_outcome_to_a_relaunch(
    lab: Lab, victim: AgentProc, tmp_path: Path
) -> None:
    envelope = faults.envelope_file(lab, tmp_path, faults.HELLO_OP)
    env = faults.victim_env(lab, victim, tmp_path, "a.db")
    first = faults.launch(env, envelope)
    assert first.returncode == 0, first.stderr
    restarted, inventory = _restart(lab, victim, tmp_path)
    try:
        env = console_env(lab, inventory, tmp_path / "b.db")
        again = faults.launch(env, envelope)
        assert again.returncode == 0, again.stderr
        before, after = events(first.stdout), events(again.stdout)
        assert [e for e in after if e["event"] == "match"] == [
            e for e in before if e["event"] == "match"
        ]
        assert host_statuses(after)[faults.VICTIM]["status"] == "matched"
        verdicts = [
            r["verdict"] for r in restarted.audit if r["action_id"] == faults.action_id(envelope)
        ]
        assert verdicts == ["accepted", "replayed-outcome"]  # not run a second time
        shown = spyglass(env, "results", "show", faults.action_id(envelope), "--json")
        assert "/srv/hello.txt" in shown.stdout
    finally:
        stop_agent(restarted)


def test_agent_restarted_mid_action_refuses_the_relaunch(
    lab: Lab, victim: AgentProc, tmp_path: Path
) -> None:
    envelope = faults.envelope_file(lab, tmp_path, faults.SLOW_OP)
    env = faults.victim_env(lab, victim, tmp_path, "a.db")
    with faults.launching(
        env, envelope, f"name={faults.VICTIM}", stderr=subprocess.DEVNULL
    ) as console:
        faults.wait_for_verdict(victim, faults.action_id(envelope))
        restarted, inventory = _restart(lab, victim, tmp_path)
        out, _ = console.communicate(timeout=60)
    try:
        assert host_statuses(events(out))[faults.VICTIM]["status"] in ("error", "unreachable")
        env = console_env(lab, inventory, tmp_path / "b.db")
        again = faults.launch(env, envelope)
        assert again.returncode == 3, again.stderr
        host = host_statuses(events(again.stdout))[faults.VICTIM]
        assert (host["status"], host["reason"]) == ("rejected", "replayed")
    finally:
        stop_agent(restarted)


# -- a slow, lossy network in a namespace ---------------------------------------------------------
def _netem_unavailable() -> str | None:
    """Why a netem namespace cannot be made here, or None when it can."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) is not installed"
    name = f"sgprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    try:
        qdisc = subprocess.run(
            ["ip", "netns", "exec", name, *NETEM],
            capture_output=True,
            text=True,
        )
        if qdisc.returncode:
            return (
                "the kernel refuses a netem qdisc (sch_netem missing: "
                f"CONFIG_NET_SCH_NETEM not set?): tc said {qdisc.stderr.strip()!r}"
            )
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


@pytest.mark.netns
def test_agent_behind_300ms_latency_and_5pct_loss_answers_within_expiry(
    lab: Lab, tmp_path: Path
) -> None:
    if reason := _netem_unavailable():
        pytest.skip(reason)
    ns = f"sgnetem{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    agent = None
    try:
        in_ns = ("ip", "netns", "exec", ns)
        subprocess.run([*in_ns, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run([*in_ns, *NETEM], check=True)
        agent = start_agent(faults.victim_dir(lab), prefix=in_ns, startup_timeout=60)
        env = faults.victim_env(lab, agent, tmp_path)
        envelope = faults.envelope_file(lab, tmp_path, faults.HELLO_OP, expire=60)
        done = faults.launch(env, envelope, prefix=in_ns)
        assert done.returncode == 0, done.stderr
        assert host_statuses(events(done.stdout))[faults.VICTIM]["status"] == "matched"
    finally:
        if agent is not None:
            stop_agent(agent)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
