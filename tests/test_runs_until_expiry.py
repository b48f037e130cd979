"""`--until-expiry` (issue 15.3): hosts that cannot be reached at launch are tried again, with
backoff, until the action expires; each failed attempt is stored; Ctrl-C stops the retries and
still finishes the run. The backoff's base is cut to 0.2 s (SPYGLASS_RETRY_BASE) for speed."""

from __future__ import annotations

import json
import signal
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import tomli_w

from console.actions.compose import compose
from console.fanout.dispatch import Dispatcher
from console.fanout.investigation import Investigation
from console.fanout.retry import BASE_ENV, MARGIN, RetryPolicy
from console.fanout.transport import ActionFrames, Handle, HostFailure
from console.lab.local import Lab
from console.results.records import Event, RetryEvent
from console.results.store import Store
from inventory.model import Host
from protocol import messages as msg
from protocol.envelope import Envelope
from protocol.errors import ConfigError
from protocol.signing import Signer
from tests.support import writers
from tests.support.agents import AgentProc, start_agent, start_agents, stop_agent
from tests.support.cli import (
    SPYGLASS,
    closed_port,
    console_env,
    events,
    gone_host,
    lab_inventory,
    save_inventory,
    spyglass,
)
from tests.support.faults import HELLO_OP, action_id, envelope_file, victim_dir
from tests.support.lab import LAB_SIZE

LATE = ("late-1", "late-2", "late-3")


@pytest.fixture
def fleet(lab: Lab, tmp_path: Path) -> Iterator[tuple[Path, list[Path]]]:
    """Ten hosts: the lab's six, one more agent, and three agents (``LATE``) that are down until
    the test starts them, on ports chosen now. Returns the inventory and the late agents' dirs."""
    early = start_agent(victim_dir(lab))
    late = [victim_dir(lab) for _ in LATE]
    extra = {"early": (early.dir, early.port)}
    for name, directory in zip(LATE, late, strict=True):
        config_path = directory / "agentd.toml"
        config = tomllib.loads(config_path.read_text())
        port = closed_port()
        config["agent"]["listen"] = [f"127.0.0.1:{port}"]
        config_path.write_bytes(tomli_w.dumps(config).encode())
        extra[name] = (directory, port)
    known = (lab.dir / "known_hosts").read_text()
    inventory = lab_inventory(lab, tmp_path, known)
    for name, (directory, port) in extra.items():
        key = asyncssh.read_private_key(str(directory / "ssh_host_ed25519_key"))
        known += f"[127.0.0.1]:{port} {key.export_public_key().decode().strip()}\n"
        inventory["hosts"].append(
            {"name": name, "address": "127.0.0.1", "port": port, "tags": {"role": "test"}}
        )
    (tmp_path / "known_hosts").write_text(known)
    assert len(inventory["hosts"]) == LAB_SIZE + 4 == 10
    try:
        yield save_inventory(inventory, tmp_path), late
    finally:
        stop_agent(early)


def final_statuses(out: list[dict[str, Any]]) -> dict[str, str]:
    return {e["host"]: e["status"] for e in out if e["event"] == "host"}


def test_hosts_down_at_launch_are_caught_when_they_come_up(
    lab: Lab, fleet: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    inventory, late_dirs = fleet
    env = {**console_env(lab, inventory, tmp_path / "r.db"), BASE_ENV: "0.2"}

    once = spyglass(env, "action", "launch", str(envelope_file(lab, tmp_path, HELLO_OP)), "--json")
    assert once.returncode == 3, once.stderr
    statuses = final_statuses(events(once.stdout))
    assert len(statuses) == 10
    assert {statuses[h] for h in LATE} == {"unreachable"}
    assert all(s in ("matched", "nomatch") for h, s in statuses.items() if h not in LATE)

    envelope = envelope_file(lab, tmp_path, HELLO_OP, expire=120)
    command = [*SPYGLASS, "action", "launch", str(envelope), "--json", "--until-expiry"]
    console = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    late: list[AgentProc] = []
    try:
        assert console.stdout is not None
        printed: list[dict[str, Any]] = []
        while not {e["host"] for e in printed if e["event"] == "retry"} >= set(LATE):
            line = console.stdout.readline()
            assert line, f"console ended before retrying every late host: {printed}"
            printed.append(json.loads(line))
        late = start_agents(late_dirs)  # they come up while the console waits to retry
        printed += writers.the_rest(console)
    finally:
        if console.poll() is None:
            console.kill()
        if late:
            stop_agent(late[0])  # one process serves the three
    assert console.returncode == 0
    statuses = final_statuses(printed)
    assert len(statuses) == 10 and set(statuses.values()) <= {"matched", "nomatch"}, statuses
    assert {statuses[h] for h in LATE} == {"matched"}  # their /srv/hello.txt
    retries = [e for e in printed if e["event"] == "retry"]
    assert {e["host"] for e in retries} == set(LATE)
    assert all(e["status"] == "unreachable" and e["retry_in_ms"] >= 0 for e in retries)
    hosts = {e["host"]: e for e in printed if e["event"] == "host"}
    for host in LATE:
        attempts = [e["attempt"] for e in retries if e["host"] == host]
        assert attempts == list(range(1, len(attempts) + 1))
        assert hosts[host]["attempts"] == len(attempts) + 1

    store = Store(env["SPYGLASS_STORE"])
    try:
        stored = [e for _, e in store.events(action_id(envelope)) if isinstance(e, RetryEvent)]
        assert [e.to_event() for e in stored] == retries  # every failed attempt is stored
        (run,) = [r for r in store.runs() if r["id"] == action_id(envelope)]
        assert (run["hosts"], run["failed"]) == (10, 0) and run["finished"] is not None
    finally:
        store.close()


def test_ctrl_c_stops_retrying_and_finishes_the_run(lab: Lab, tmp_path: Path) -> None:
    inventory = lab_inventory(lab, tmp_path, (lab.dir / "known_hosts").read_text())
    inventory["hosts"] = [gone_host()]
    env = {**console_env(lab, save_inventory(inventory, tmp_path), tmp_path / "r.db")}
    env[BASE_ENV] = "0.2"
    envelope = envelope_file(lab, tmp_path, HELLO_OP, expire=120)
    command = [*SPYGLASS, "action", "launch", str(envelope), "--until-expiry", "--show", "all"]
    console = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert console.stderr is not None
        progress: list[str] = []
        while len([p for p in progress if p.startswith("gone: retry in ")]) < 2:
            line = console.stderr.readline()
            assert line, f"console ended early: {progress}"
            progress.append(line)
        assert "attempt 1, last: unreachable" in progress[0], progress
        console.send_signal(signal.SIGINT)
        out, err = console.communicate(timeout=60)
    finally:
        if console.poll() is None:
            console.kill()
    assert console.returncode == 130, err
    assert "0 matched, 0 no match, 1 failed" in err  # the summary is written
    gone = [line for line in out.splitlines() if line.startswith("gone\t")]
    assert gone and "unreachable" in gone[0] and "retries stopped" in gone[0], out
    shown = events(spyglass(env, "results", "show", action_id(envelope), "--json").stdout)
    assert final_statuses(shown) == {"gone": "unreachable"}
    store = Store(env["SPYGLASS_STORE"])
    try:
        run = store.run(action_id(envelope))
        assert run is not None and run["finished"] is not None
        assert (run["hosts"], run["failed"]) == (1, 1)
    finally:
        store.close()


# -- the retry rule and backoff, without a fleet --------------------------------------------------
def test_backoff_doubles_with_jitter_and_stops_at_expiry() -> None:
    policy = RetryPolicy(base=5.0)
    now = 1_000_000.0
    for attempt, step in ((1, 5.0), (2, 10.0), (4, 40.0), (7, 300.0), (30, 300.0)):
        for _ in range(50):
            wait = policy.delay(attempt, now + 3600, now)
            assert wait is not None and step / 2 <= wait <= step, (attempt, wait)
    assert policy.delay(9, now + 10, now) == 10 - MARGIN  # capped by the action's expiry
    assert policy.delay(1, now + MARGIN, now) is None  # no attempt the agent would refuse
    assert RetryPolicy.from_env({BASE_ENV: "0.2"}).base == 0.2
    with pytest.raises(ConfigError):
        RetryPolicy.from_env({BASE_ENV: "soon"})


class _DropsThenAnswers:
    """A transport whose first attempt on each host loses the connection after one row, and
    whose next attempts get the agent's whole answer (two rows) as an attached console would."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}

    async def converse(
        self, host: Host, frames: ActionFrames, handle: Handle, running: Callable[[], None]
    ) -> None:
        running()
        n = self.attempts[host.name] = self.attempts.get(host.name, 0) + 1
        handle(msg.Accepted(action_id="x"))
        handle(msg.Match(op=0, data={"path": "/srv/one"}))
        if n == 1:
            raise HostFailure("error", "the agent closed the channel before finishing", lost=True)
        handle(msg.Match(op=0, data={"path": "/srv/two"}))
        handle(msg.Done(op=0, status="ok"))
        assert handle(msg.Finished(action_id="x"))


async def test_a_lost_connection_is_retried_and_its_rows_are_not_kept_twice(
    lab: Lab, tmp_path: Path
) -> None:
    action = compose("file", {"paths": ["/srv"], "name": ["."]}, "all")
    envelope = Signer(lab.gnupghome).sign(Envelope(action))
    hosts = [Host(name, "127.0.0.1", 22, "spyglass") for name in ("a", "b")]
    transport = _DropsThenAnswers()
    store = Store(tmp_path / "r.db")
    seen: list[Event] = []
    try:
        dispatcher = Dispatcher(transport, retry=RetryPolicy(base=0.01))
        summary = await Investigation(envelope, hosts, dispatcher, store).run(seen.append)
        stored = [(m["host"], m["data"]["path"]) for m in store.matches(action.id)]
        attempts = [e for _, e in store.events(action.id) if isinstance(e, RetryEvent)]
    finally:
        store.close()
    assert transport.attempts == {"a": 2, "b": 2}
    assert {(r.status, r.matches, r.attempts) for r in summary.results.values()} == {
        ("matched", 2, 2)
    }
    assert sorted(stored) == [
        ("a", "/srv/one"),
        ("a", "/srv/two"),
        ("b", "/srv/one"),
        ("b", "/srv/two"),
    ]
    assert [(e.host, e.attempt, e.status) for e in attempts] == [
        ("a", 1, "error"),
        ("b", 1, "error"),
    ]
    assert sum(isinstance(e, RetryEvent) for e in seen) == 2


async def test_without_until_expiry_a_lost_connection_ends_the_host(
    lab: Lab, tmp_path: Path
) -> None:
    action = compose("file", {"paths": ["/srv"], "name": ["."]}, "all")
    envelope = Signer(lab.gnupghome).sign(Envelope(action))
    store = Store(tmp_path / "r.db")
    try:
        dispatcher = Dispatcher(_DropsThenAnswers())
        hosts = [Host("a", "127.0.0.1", 22, "spyglass")]
        summary = await Investigation(envelope, hosts, dispatcher, store).run(lambda e: None)
    finally:
        store.close()
    assert (summary.results["a"].status, summary.results["a"].attempts) == ("error", 1)


def test_a_runbook_step_retries_until_its_action_expires(lab: Lab, tmp_path: Path) -> None:
    inventory = lab_inventory(lab, tmp_path, (lab.dir / "known_hosts").read_text())
    inventory["hosts"] = [inventory["hosts"][0], gone_host()]
    env = {**console_env(lab, save_inventory(inventory, tmp_path), tmp_path / "r.db")}
    env[BASE_ENV] = "0.2"
    runbook = tmp_path / "sweep.toml"
    runbook.write_text(
        '[[steps]]\nname = "hello"\nmodule = "file"\ntarget = "all"\nexpire = "4s"\n'
        'until_expiry = true\nparams = { paths = ["/srv"], name = ["^hello"] }\n'
    )
    done = spyglass(env, "runbook", "run", str(runbook))
    assert done.returncode != 2, done.stderr
    store = Store(env["SPYGLASS_STORE"])
    try:
        (run,) = store.runs()
        results = {r.host: r for r in store.host_results(run["id"])}
        retries = [e for _, e in store.events(run["id"]) if isinstance(e, RetryEvent)]
    finally:
        store.close()
    assert results["gone"].status == "unreachable" and results["gone"].attempts > 1
    assert results["lab-001"].attempts == 1
    assert len(retries) == results["gone"].attempts - 1 and {e.host for e in retries} == {"gone"}
    bad = runbook.read_text().replace("until_expiry = true", 'until_expiry = "yes"')
    runbook.write_text(bad)
    refused = spyglass(env, "runbook", "check", str(runbook))
    assert refused.returncode == 2 and "until_expiry: expected true or false" in refused.stderr
