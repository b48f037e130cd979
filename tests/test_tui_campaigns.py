"""Campaigns in the TUI (issue 15), driven with Pilot against the real lab: launching with retries
until expiry, the waiting hosts in the host table, cancelling them, resuming a run whose console
died from history, and following live a run that another console process writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
import tomli_w
from textual.widgets import Checkbox, Static

from console.fanout.retry import BASE_ENV
from console.lab.local import Lab
from console.results.records import HostEvent, HostResult, MatchEvent, RetryEvent, StateEvent
from console.results.store import Store
from tests.support import faults, writers
from tests.support.agents import AgentProc, start_agent, start_agents, stop_agent
from tests.support.cli import closed_port, gone_host, lab_inventory, save_inventory, spyglass
from tests.support.waiting import wait_for
from tui.app import SpyglassApp
from tui.model.runstate import RunState
from tui.model.session import Session
from tui.screens.compose import ComposeScreen
from tui.screens.confirm import ConfirmLaunch
from tui.screens.history import HistoryScreen
from tui.screens.host_detail import HostDetailScreen
from tui.screens.watch import WatchScreen

SIZE = (160, 48)
LAB_HOSTS = [f"lab-00{i}" for i in range(1, 7)]


@pytest.fixture
def console(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``make(inventory)``: a TUI on that inventory and a fresh store; retries soon."""
    monkeypatch.setenv("GNUPGHOME", str(lab.gnupghome))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))  # no user keymap
    monkeypatch.setenv(BASE_ENV, "1")
    monkeypatch.chdir(tmp_path)

    def make(inventory: Path = lab.inventory) -> SpyglassApp:
        return SpyglassApp(Session(str(inventory), tmp_path / "results.db"))

    return make


def host_rows(state: RunState) -> dict[str, tuple[str, str]]:
    """host -> (status cell, reason cell) as the host table shows them."""
    return {r.cells[0]: (r.cells[1], r.cells[4]) for r in state.host_model.rows}


def text_of(app: SpyglassApp, selector: str) -> str:
    return app.screen.query_one(selector, Static).render().plain


async def compose_hello(pilot, *, retry: bool) -> None:
    """Files named ^hello under /srv on every host; the Retry switch on if ``retry``."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
    await pilot.press(*"/srv", "tab", *"^hello")
    if retry:
        await pilot.press("ctrl+t", "tab", "tab")
        assert app.focused.id == "until-expiry"
        await pilot.press("space")
        await wait_for(pilot, lambda: app.screen.until_expiry)


async def confirm(pilot) -> ConfirmLaunch:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmLaunch))
    return pilot.app.screen


# -- until expiry, waiting hosts, cancel --------------------------------------------------------
@pytest.fixture
def late_agent(lab: Lab, tmp_path: Path) -> Iterator[tuple[Path, Path, list[AgentProc]]]:
    """The lab plus ``late``, an agent that is down until the test starts it (on a port chosen
    now); yields the inventory, the agent's folder and the list the started agent goes in."""
    directory = faults.victim_dir(lab)
    config = tomllib.loads((directory / "agentd.toml").read_text())
    port = closed_port()
    config["agent"]["listen"] = [f"127.0.0.1:{port}"]
    (directory / "agentd.toml").write_bytes(tomli_w.dumps(config).encode())
    key = asyncssh.read_private_key(str(directory / "ssh_host_ed25519_key"))
    known = (lab.dir / "known_hosts").read_text()
    known += f"[127.0.0.1]:{port} {key.export_public_key().decode().strip()}\n"
    inventory = lab_inventory(lab, tmp_path, known)
    inventory["hosts"].append(
        {"name": "late", "address": "127.0.0.1", "port": port, "tags": {"role": "test"}}
    )
    started: list[AgentProc] = []
    yield save_inventory(inventory, tmp_path), directory, started
    for agent in started:
        stop_agent(agent)


async def test_until_expiry_waits_for_a_late_host_then_catches_it(
    console, late_agent: tuple[Path, Path, list[AgentProc]]
) -> None:
    inventory, late, started = late_agent
    app = console(inventory)
    async with app.run_test(size=SIZE) as pilot:
        await compose_hello(pilot, retry=True)
        await pilot.press("ctrl+l")
        dialog = await confirm(pilot)
        assert dialog.until_expiry  # the switch's choice, shown before anything is sent
        assert dialog.query_one("#confirm-until-expiry", Checkbox).value
        await pilot.press("y")
        await wait_for(pilot, lambda: app.current is not None and app.current.until_expiry)
        state = app.current
        await wait_for(pilot, lambda: isinstance(app.screen, WatchScreen))
        await wait_for(pilot, lambda: "attempt 2," in host_rows(state)["late"][1])
        status, note = host_rows(state)["late"]
        assert status == "waiting"
        assert note.startswith("retry in ") and ", attempt 2, last: unreachable" in note
        assert "waiting 1 (" in text_of(app, "#counters")
        assert "retrying until expiry" in text_of(app, "#run-title")
        await pilot.resize_terminal(80, 24)  # the counters wrap rather than lose their end
        await wait_for(pilot, lambda: app.screen.query_one("#counters").size.height == 2)
        started.extend(start_agents([late]))
        await wait_for(pilot, lambda: state.finished and not state.pending)
        rows = host_rows(state)
        assert rows["late"][0] == "matched"  # its /srv/hello.txt
        attempts = state.hosts["late"].result.attempts
        assert attempts >= 3 and rows["late"][1] == f"{attempts} attempts"
        assert all(rows[h][0] in ("matched", "nomatch") for h in LAB_HOSTS)
        assert text_of(app, "#counters").endswith(f"waiting 0 ({attempts - 1} retries)")
        store = app.session.store
        run = store.run(state.id)
        assert run["finished"] is not None and (run["hosts"], run["failed"]) == (7, 0)
        retries = [e for _, e in store.events(state.id) if isinstance(e, RetryEvent)]
        assert [e.attempt for e in retries] == list(range(1, attempts))  # every attempt stored


async def test_cancel_stops_the_retries_and_finishes_the_run(
    console, lab: Lab, tmp_path: Path
) -> None:
    inventory = lab_inventory(lab, tmp_path, (lab.dir / "known_hosts").read_text())
    inventory["hosts"] = [inventory["hosts"][0], gone_host()]
    app = console(save_inventory(inventory, tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await compose_hello(pilot, retry=False)
        await pilot.press("ctrl+l")
        dialog = await confirm(pilot)
        assert not dialog.until_expiry
        await pilot.press("u")  # retry, decided in the confirmation
        await wait_for(pilot, lambda: dialog.until_expiry)
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, WatchScreen))
        state = app.current
        await wait_for(pilot, lambda: host_rows(state)["gone"][0] == "waiting")
        assert "attempt 1, last: unreachable" in host_rows(state)["gone"][1]
        await pilot.press("c")
        await wait_for(pilot, lambda: state.finished and not state.pending)
        status, note = host_rows(state)["gone"]
        assert status == "unreachable" and "retries stopped by the investigator" in note
        assert host_rows(state)["lab-001"][0] in ("matched", "nomatch")
        await wait_for(pilot, lambda: "cancelled" in text_of(app, "#run-title"))
        run = app.session.store.run(state.id)
        assert run["finished"] is not None and (run["hosts"], run["failed"]) == (2, 1)


def test_waiting_hosts_count_down_and_a_new_answer_replaces_earlier_rows() -> None:
    state = RunState({"id": "X", "operations": [{"module": "file", "params": {}}]}, ["a", "b"])
    row = {"path": "/srv/one", "size": 1, "mode": "-", "mtime": 1, "sha256": None, "matched": []}
    state.sink(StateEvent("a", "connecting"))
    state.sink(MatchEvent("a", 0, "file", row))  # then the connection is lost
    state.sink(RetryEvent("a", 3, "error", None, "connection lost", 40_000))
    state.drain()
    info = state.hosts["a"]
    assert host_rows(state)["a"] == (
        "waiting",
        "retry in 40 s, attempt 3, last: error: connection lost",
    )
    assert state.counts["waiting"] == 1 and state.match_count == 1
    assert not state.tick_waiting(info.retry_at - 39.5)  # still 40 s
    assert state.tick_waiting(info.retry_at - 10)
    assert host_rows(state)["a"][1].startswith("retry in 10 s, attempt 3")
    state.sink(StateEvent("a", "connecting"))
    state.sink(MatchEvent("a", 0, "file", row))  # the new attempt brings every row again
    state.sink(MatchEvent("a", 0, "file", {**row, "path": "/srv/two"}))
    state.sink(HostEvent(HostResult("a", "matched", matches=2, attempts=4)))
    state.drain()
    assert [r.cells[1] for r in state.match_model.rows] == ["/srv/one", "/srv/two"]
    assert state.match_count == 2 and host_rows(state)["a"] == ("matched", "4 attempts")
    assert state.counts["waiting"] == 0 and state.retries == 1


async def test_host_detail_says_when_a_waiting_host_is_tried_again(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.toml"
    inventory.write_text('[[hosts]]\nname = "a"\naddress = "127.0.0.1"\n')
    app = SpyglassApp(Session(str(inventory), tmp_path / "results.db"))
    state = RunState({"id": "X", "operations": [{"module": "file", "params": {}}]}, ["a", "b"])
    state.sink(RetryEvent("a", 2, "unreachable", None, "Connection refused", 600_000))
    state.sink(HostEvent(HostResult("b", "nomatch", attempts=3)))
    state.drain()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
        await app.push_screen(HostDetailScreen(state, "a"))
        summary = text_of(app, "#host-summary")
        assert summary.startswith("host a  state waiting  retry in ")
        assert summary.endswith(" s, attempt 2, last: unreachable: Connection refused")
        await pilot.press("escape")
        await app.push_screen(HostDetailScreen(state, "b"))
        assert "attempts 3" in text_of(app, "#host-summary")


# -- resume from history ------------------------------------------------------------------------
def accepted(lab: Lab, host: str, action: str) -> int:
    audit = (lab.host_dir(host) / "audit.log").read_text().splitlines()
    return sum(
        1 for r in map(json.loads, audit) if r["action_id"] == action and "accepted" in r["verdict"]
    )


async def history_row(pilot, run_id: str) -> HistoryScreen:
    """History, with ``run_id`` highlighted."""
    app = pilot.app
    await pilot.press("f4")
    await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen.model.rows)
    history = app.screen
    keys = [str(r.key) for r in history.model.rows]
    await pilot.press(*["down"] * keys.index(run_id))
    return history


async def test_history_resumes_a_run_whose_console_died(console, lab: Lab, tmp_path: Path) -> None:
    envelope = faults.envelope_file(lab, tmp_path, faults.HELLO_OP)
    targets = ["lab-001", "lab-002", "lab-003"]
    store_path = tmp_path / "results.db"
    with writers.writing(store_path, envelope, targets, {"lab-001": "nomatch"}, stay=False) as (
        _writer,
        run_id,
    ):
        pass  # the console stored one answer and died
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
        history = await history_row(pilot, run_id)
        assert [r.cells[1] for r in history.model.rows] == ["unfinished"]
        await pilot.press("enter")  # reopened as stored: it says it is unfinished
        await wait_for(pilot, lambda: isinstance(app.screen, WatchScreen))
        assert "unfinished: its console is gone" in text_of(app, "#run-title")
        assert host_rows(app.screen.state)["lab-002"][0] == "pending"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is history)
        await pilot.press("u")
        dialog = await confirm(pilot)
        assert dialog.resume == run_id and dialog.host_count == 2  # not lab-001
        await pilot.press("y")
        await wait_for(pilot, lambda: app.current is not None)
        state = app.current
        await wait_for(pilot, lambda: isinstance(app.screen, WatchScreen))
        assert app.screen.state is state and state.live
        await wait_for(pilot, lambda: state.finished and not state.pending)
        rows = host_rows(state)
        assert rows["lab-001"] == ("nomatch", "")  # its stored answer, kept
        assert {rows[h][0] for h in targets[1:]} <= {"matched", "nomatch"}
    shown = spyglass({**os.environ, "SPYGLASS_STORE": str(store_path)}, "results", "list")
    assert shown.returncode == 0 and shown.stdout.count(f"{run_id}\t") == 1
    store = Store(store_path)
    try:
        run = store.run(run_id)
        assert run["finished"] is not None and run["matched"] + run["nomatch"] == 3
    finally:
        store.close()
    assert accepted(lab, "lab-001", run_id) == 0  # answered before: not sent again
    assert accepted(lab, "lab-002", run_id) == accepted(lab, "lab-003", run_id) == 1


# -- following a run another console writes -----------------------------------------------------
@pytest.fixture
def victim(lab: Lab) -> Iterator[AgentProc]:
    """An agent whose ``SLOW_OP`` spins until its 8 s module timeout: the run stays open."""
    started = start_agent(faults.victim_dir(lab, module_timeout=8))
    yield started
    stop_agent(started)


async def test_history_follows_a_run_another_console_writes(
    console, lab: Lab, victim: AgentProc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = faults.fleet_inventory(lab, tmp_path, {faults.VICTIM: victim})
    env = {
        **os.environ,
        "GNUPGHOME": str(lab.gnupghome),
        "SPYGLASS_INVENTORY": str(inventory),
        "SPYGLASS_STORE": str(tmp_path / "results.db"),
    }
    envelope = faults.envelope_file(lab, tmp_path, faults.EVERY_FILE_OP, faults.SLOW_OP)
    run_id = faults.action_id(envelope)
    app = console(inventory)
    with faults.launching(env, envelope, "all", stderr=subprocess.DEVNULL) as writer:
        first = writers.until_stored(writer)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
            history = await history_row(pilot, run_id)
            assert history.model.rows[0].cells[1] == "running"
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, WatchScreen))
            state = app.screen.state
            assert state.follow is not None
            await wait_for(
                pilot, lambda: f"following pid {writer.pid} on " in text_of(app, "#run-title")
            )
            assert state.hosts[faults.VICTIM].result is None  # still spinning over there
            await pilot.press("c")  # not this console's run to cancel
            await wait_for(
                pilot, lambda: any("stop it there" in n.message for n in app._notifications)
            )
            await wait_for(pilot, lambda: state.finished and not state.pending, timeout=90)
            assert "finished" in text_of(app, "#run-title")
            written = [*first, *writers.the_rest(writer)]
    assert writer.returncode == 3  # the victim timed out
    hosts = {e["host"]: e["status"] for e in written if e["event"] == "host"}
    assert {h: s for h, (s, _) in host_rows(state).items()} == hosts
    assert hosts[faults.VICTIM] == "timeout"
    assert state.match_count == sum(e["event"] == "match" for e in written) > 0


async def test_following_ends_when_the_writing_console_is_killed(
    console, lab: Lab, tmp_path: Path
) -> None:
    envelope = faults.envelope_file(lab, tmp_path, faults.HELLO_OP)
    store_path = tmp_path / "results.db"
    answered = {"lab-001": "nomatch"}
    with writers.writing(store_path, envelope, LAB_HOSTS, answered, stay=True) as (writer, run_id):
        app = console()
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
            await history_row(pilot, run_id)
            await pilot.press("u")  # its console still writes it: no resume
            await wait_for(pilot, lambda: any(n.title == "Not resumed" for n in app._notifications))
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, WatchScreen))
            state = app.screen.state
            await wait_for(pilot, lambda: "following" in text_of(app, "#run-title"))
            await wait_for(pilot, lambda: host_rows(state)["lab-001"][0] == "nomatch")
            writer.send_signal(signal.SIGKILL)
            writer.wait()
            await wait_for(pilot, lambda: state.finished)
            await wait_for(pilot, lambda: "its console is gone" in text_of(app, "#run-title"))
            assert host_rows(state)["lab-002"][0] == "pending"
