"""Snapshots at 80x24 and 160x48 of compose, watch (finished, synthetic stable data), stack,
history and each dialog; the clock is stopped and the time zone is UTC, so times read the same
on every run ("3 min ago")."""

from __future__ import annotations

import asyncio
import time
import types
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from console.results.records import HostEvent, HostResult, MatchEvent, RetryEvent, StateEvent
from console.results.store import Store
from tui.app import SpyglassApp
from tui.model.runstate import RunState
from tui.model.session import Session
from tui.screens.approvals import ApprovalsScreen
from tui.screens.confirm import ConfirmLaunch
from tui.screens.help import HelpScreen
from tui.screens.history import HistoryScreen
from tui.screens.prompt import Prompt
from tui.screens.stack import StackScreen
from tui.screens.watch import WatchScreen

SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
NOW = 1764400180
"""The stopped clock: three minutes after the action's valid_from."""
INVENTORY = "".join(
    f'[[hosts]]\nname = "lab-00{i}"\naddress = "127.0.0.{i + 1}"\n'
    f'tags = {{ role = "{role}", env = "{env}" }}\n\n'
    for i, role, env in (
        (1, "web", "staging"),
        (2, "db", "prod"),
        (3, "web", "prod"),
        (4, "cache", "prod"),
    )
)
ACTION = {
    "version": 1,
    "id": "01JD3M8Q7K2Y5V0C4T6N9P1R3S",
    "name": "web shell sweep",
    "description": "",
    "target": "all",
    "valid_from": 1764400000,
    "expire_after": 1764400300,
    "operations": [{"module": "file", "params": {"paths": ["/srv"], "name": [r"\.php$"]}}],
}


@pytest.fixture(autouse=True)
def no_user_keymap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A keymap.toml in the developer's own config must not change the keys tests press."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


@pytest.fixture(autouse=True)
def no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Input, "cursor_blink", False)


@pytest.fixture(autouse=True)
def stopped_clock(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("tui.model.when.clock", lambda: NOW)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SpyglassApp:
    monkeypatch.setattr("protocol.action.new_action_id", lambda: ACTION["id"])
    monkeypatch.setattr("protocol.action.time", types.SimpleNamespace(time=lambda: 1764400000))
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(INVENTORY)
    return SpyglassApp(Session(str(inventory), tmp_path / "results.db"))


async def until(pilot, predicate, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await pilot.pause(0.05)


def title(app: SpyglassApp) -> str:
    return str(app.screen.query_one("#run-title", Static).render())


SIGNATURE_IDS = ["0B45D6DB9D1D8C3C"]


def finished_state() -> RunState:
    state = RunState(
        ACTION,
        [f"lab-00{i}" for i in range(1, 5)],
        signers=SIGNATURE_IDS,
        started=1764400001,
    )
    rows = [
        ("lab-002", "/srv/hostile/[red]x[/a.php", 9),
        ("lab-002", "/srv/hostile/esc\x1b[2J\x1b[31mred.php", 9),
        ("lab-004", "/srv/www/uploads/.cache.php", 75),
    ]
    for host, path, size in rows:
        data = {
            "path": path,
            "size": size,
            "mode": "-rw-r--r--",
            "mtime": 1764300000,
            "matched": ["name"],
        }
        state.sink(MatchEvent(host, 0, "file", data))
    results = [
        HostResult("lab-001", "nomatch", elapsed_ms=412),
        HostResult("lab-002", "matched", matches=2, elapsed_ms=530),
        # the detail already names the reason: shown once ("acl: acl: ..." before)
        HostResult("lab-003", "rejected", "acl", "acl: file needs weight 2, got 1", elapsed_ms=120),
        HostResult("lab-004", "matched", matches=1, elapsed_ms=488),
    ]
    for result in results:
        state.sink(HostEvent(result))
    state.finished = True
    state.ended = 1764400003
    return state


async def fill_compose(pilot) -> None:
    await pilot.pause()
    await pilot.press(*"/srv", "tab", *r"\.php$", "tab", "tab", *"<10M")
    await pilot.press("ctrl+t", *"env=prod")
    await pilot.pause()
    # the preview shows the action, not a validation error
    screen = pilot.app.screen
    assert screen.action is not None and screen.problem is None
    params = screen.action.to_dict()["operations"][0]["params"]
    assert params == {"paths": ["/srv"], "name": [r"\.php$"], "size": ["<10M"]}


@SIZES
def test_compose_snapshot(snap_compare, app: SpyglassApp, size) -> None:
    assert snap_compare(app, run_before=fill_compose, terminal_size=size)


@SIZES
def test_confirm_launch_snapshot(snap_compare, app: SpyglassApp, size) -> None:
    async def confirm(pilot) -> None:
        await fill_compose(pilot)
        await pilot.press("ctrl+l")
        await until(pilot, lambda: isinstance(app.screen, ConfirmLaunch))

    assert snap_compare(app, run_before=confirm, terminal_size=size)


@SIZES
def test_sign_only_prompt_snapshot(snap_compare, app: SpyglassApp, size) -> None:
    async def sign_only(pilot) -> None:
        await fill_compose(pilot)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, Prompt))

    assert snap_compare(app, run_before=sign_only, terminal_size=size)


@SIZES
def test_passphrase_prompt_snapshot(snap_compare, app: SpyglassApp, size) -> None:
    async def ask(pilot) -> None:
        await pilot.pause()
        note = "could not sign: Bad passphrase (gpg exit 2)"
        app.push_screen(Prompt("Passphrase for your signing key", password=True, note=note))
        await until(pilot, lambda: isinstance(app.screen, Prompt))
        await pilot.press(*"secret")

    assert snap_compare(app, run_before=ask, terminal_size=size)


@SIZES
def test_help_snapshot(snap_compare, app: SpyglassApp, size) -> None:
    async def show(pilot) -> None:
        await pilot.pause()
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))

    assert snap_compare(app, run_before=show, terminal_size=size)


@SIZES
def test_approvals_snapshot(snap_compare, app: SpyglassApp, size) -> None:
    async def show(pilot) -> None:
        await pilot.pause()
        await pilot.press("f5")
        await until(pilot, lambda: isinstance(app.screen, ApprovalsScreen))

    assert snap_compare(app, run_before=show, terminal_size=size)


async def show_finished(pilot) -> RunState:
    app = pilot.app
    await pilot.pause()
    state = finished_state()
    app.current = state
    await app.push_screen(WatchScreen(state, app.session))
    await until(pilot, lambda: not state.pending and "finished" in title(app))
    return state


@SIZES
def test_watch_finished_snapshot(snap_compare, app: SpyglassApp, size) -> None:
    assert snap_compare(app, run_before=show_finished, terminal_size=size)


@SIZES
def test_watch_filtered_snapshot(snap_compare, app: SpyglassApp, size) -> None:
    async def show(pilot) -> None:
        state = await show_finished(pilot)
        await pilot.press("slash", *r"path~\.php$", "space", *"host=lab-00[4-8]")
        await until(pilot, lambda: len(state.match_model) == 1)

    assert snap_compare(app, run_before=show, terminal_size=size)


@SIZES
def test_stack_snapshot(snap_compare, app: SpyglassApp, size) -> None:
    async def show(pilot) -> None:
        await show_finished(pilot)
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, StackScreen) and len(app.screen.model))

    assert snap_compare(app, run_before=show, terminal_size=size)


@SIZES
def test_history_snapshot(snap_compare, app: SpyglassApp, tmp_path: Path, size) -> None:
    store = Store(tmp_path / "results.db")
    for n, (run_id, target) in enumerate(
        (("01RUNAAAAAAAAAAAAAAAAAAAAA", "all"), ("01RUNBBBBBBBBBBBBBBBBBBBBB", "env=prod"))
    ):
        store.begin_run(run_id, f"file on {target}", target, ["file"], {"action": ACTION}, 4)
        store.set_host(run_id, HostResult("lab-004", "matched", None, "", 1, 400, None))
        if n:  # the newer run was cancelled: its other hosts never answered
            store.set_host(run_id, HostResult("lab-001", "cancelled"))
        store.add_match(run_id, "lab-004", 0, "file", {"path": "/srv/www/uploads/.cache.php"})
        store.finish_run(run_id, 1, 3 - n, n)
        store.db.execute(
            "UPDATE runs SET started = ?, finished = ? WHERE id = ?",
            (1764400000 - 3600 + 3500 * n, 1764400002 - 3600 + 3500 * n, run_id),
        )
    store.close()

    async def show(pilot) -> None:
        await pilot.pause()
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, HistoryScreen) and app.screen.model.rows)
        statuses = [r.cells[1] for r in app.screen.model.rows]
        assert statuses == ["cancelled", "finished"]

    assert snap_compare(app, run_before=show, terminal_size=size)


async def show_alerts(pilot) -> None:
    """The alerts screen with synthetic watchers and alerts (hostile names among them): its
    follow is not signed, so nothing connects, then the rows arrive as a follow brings them."""
    from console.actions.watchers import ALERTS_OP, LIST_OP
    from tui.screens.alerts import AlertsScreen

    async def not_signed(_envelope):
        return None

    app = pilot.app
    await pilot.pause()
    screen = AlertsScreen(app.session, not_signed)
    await app.push_screen(screen)
    await until(pilot, lambda: screen.phase.startswith("not following"))
    fingerprint = "5A3F0C2B9E8D7A6F1B2C" + SIGNATURE_IDS[0]
    watcher = {
        "watcher": ACTION["id"],
        "status": "armed",
        "expires": NOW + 3600,
        "paths": ["/srv/www"],
        "events": 14,
        "alerts": 3,
        "dropped": 0,
        "signers": [fingerprint],
    }
    for host in ("lab-002", "lab-004"):
        screen.receive(MatchEvent(host, LIST_OP, "fswatch_list", watcher))
    paths = ("/srv/www/uploads/.cache.php", "/srv/www/[/]broken.php", "/srv/www/esc\x1b[2J.php")
    for seq, path in enumerate(paths, 1):
        alert = {
            "seq": seq,
            "time": NOW - 60 + seq,
            "watcher": ACTION["id"],
            "signers": [fingerprint],
            "path": path,
            "matched": ["name"],
            "rules": ["php_webshell"] if seq == 1 else [],
        }
        screen.receive(MatchEvent("lab-004" if seq == 1 else "lab-002", ALERTS_OP, "x", alert))
    screen.action_id, screen.signers = ACTION["id"], SIGNATURE_IDS
    screen.hosts = [f"lab-00{i}" for i in range(1, 5)]
    screen.set_phase("following")
    await until(pilot, lambda: "broken" in app.export_screenshot())


@pytest.mark.parametrize("size", [(80, 24)], ids=["80x24"])
def test_alerts_snapshot(snap_compare, app: SpyglassApp, size) -> None:
    assert snap_compare(app, run_before=show_alerts, terminal_size=size)


def waiting_state() -> RunState:
    """A run launched to retry until expiry: lab-003 waits for its third attempt, lab-004
    answered on its second."""
    state = RunState(ACTION, [f"lab-00{i}" for i in range(1, 5)], signers=SIGNATURE_IDS)
    state.started, state.until_expiry = 1764400001, True
    data = {"path": "/srv/www/uploads/.cache.php", "size": 75, "mode": "-rw-r--r--"}
    state.sink(MatchEvent("lab-004", 0, "file", {**data, "mtime": 1764300000, "matched": []}))
    state.sink(HostEvent(HostResult("lab-001", "nomatch", elapsed_ms=412)))
    state.sink(StateEvent("lab-002", "running"))
    state.sink(RetryEvent("lab-003", 1, "unreachable", None, "Connection refused", 12_000))
    state.sink(StateEvent("lab-003", "connecting"))
    state.sink(RetryEvent("lab-003", 2, "unreachable", None, "Connection refused", 40_000))
    state.sink(HostEvent(HostResult("lab-004", "matched", matches=1, elapsed_ms=5488, attempts=2)))
    return state


@SIZES
def test_watch_waiting_snapshot(
    snap_compare, app: SpyglassApp, size, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The host table of a run that retries: the waiting host's countdown (the monotonic clock
    is stopped too), attempts, the waiting counter."""
    monkeypatch.setattr("tui.model.runstate.time", types.SimpleNamespace(monotonic=lambda: 500.0))

    async def show(pilot) -> None:
        await pilot.pause()
        state = waiting_state()
        app.current = state
        await app.push_screen(WatchScreen(state, app.session))
        await until(pilot, lambda: not state.pending and "running" in title(app))

    assert snap_compare(app, run_before=show, terminal_size=size)
