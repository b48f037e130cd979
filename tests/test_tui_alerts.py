"""The alerts screen driven with Pilot against the session's real lab: a watcher armed with the
command line, files planted in a lab host's root, their alerts streaming onto the screen."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Static

from console.lab.local import Lab
from protocol.signing import Signer
from tests.support import cli
from tests.support.waiting import wait_for
from tui.app import SpyglassApp
from tui.model.rows import Row, RowModel
from tui.model.session import Session
from tui.screens.alerts import AlertsScreen
from tui.screens.confirm import ConfirmLaunch
from tui.screens.row_detail import RowDetailScreen
from tui.widgets.virtual_table import VirtualTable

SIZE = (160, 45)
HOST = "lab-003"
#: Names an attacker on the host chooses: markup that would crash a DataTable str cell (a folder
#: "[" holding "]broken.php"), and a terminal escape sequence.
BROKEN_MARKUP = "[/]broken.php"
ESCAPE = "esc\x1b[2J\x1b[31mred.php"


@pytest.fixture(autouse=True)
def no_user_keymap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A keymap.toml in the developer's own config must not change the keys tests press."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


@pytest.fixture
def app(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SpyglassApp:
    monkeypatch.setenv("GNUPGHOME", str(lab.gnupghome))
    monkeypatch.chdir(tmp_path)
    return SpyglassApp(Session(str(lab.inventory), tmp_path / "results.db"))


@pytest.fixture
def watcher(lab: Lab, lab_env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """A watcher on a folder of lab-003's root, armed as the README shows: its id and the
    folder. After the test the watcher is cancelled and the folder removed: other tests search
    the same lab's /srv."""
    folder = lab.dir / "hosts" / HOST / "root" / "srv" / "tui-alerts"
    folder.mkdir(parents=True, exist_ok=True)
    arm = ["run", "fswatch", "--paths", "/srv/tui-alerts", "--recursive", "--name", r"\.php$"]
    done = cli.spyglass(lab_env, *arm, "--expire", "10m", "-t", f"name={HOST}", "--json")
    [row] = [e["data"] for e in cli.events(done.stdout) if e["event"] == "match"]
    assert row["status"] == "armed", done.stderr
    try:
        yield row["watcher"], folder
    finally:
        cli.spyglass(lab_env, "watchers", "cancel", row["watcher"], "-t", f"name={HOST}")
        shutil.rmtree(folder)


def cells(model: RowModel, row: Row) -> dict[str, str]:
    """A row's display cells by column key."""
    return dict(zip([c.key for c in model.columns], row.cells, strict=True))


def alert_cells(screen: AlertsScreen, watcher: str) -> list[dict[str, str]]:
    """The visible alert rows of one watcher (the shared lab may hold others)."""
    rows = [cells(screen.alerts, screen.alerts.visible(i)) for i in range(len(screen.alerts))]
    return [r for r in rows if r["watcher"] == watcher]


def watcher_row(screen: AlertsScreen, watcher: str) -> dict[str, str] | None:
    row = screen.watchers.get((HOST, watcher))
    return None if row is None else cells(screen.watchers, row)


async def open_alerts(pilot, watcher_id: str) -> AlertsScreen:
    """f7, then wait until the screen lists the watcher (its follow has started)."""
    app = pilot.app
    await pilot.pause()
    await pilot.press("f7")
    await wait_for(pilot, lambda: isinstance(app.screen, AlertsScreen))
    screen = app.screen
    assert isinstance(screen, AlertsScreen)
    await wait_for(pilot, lambda: watcher_row(screen, watcher_id) is not None, timeout=60)
    return screen


async def test_alerts_stream_in_literally_tied_to_their_watcher(
    app: SpyglassApp, lab: Lab, watcher: tuple[str, Path]
) -> None:
    watcher_id, folder = watcher
    key_id = Signer(lab.gnupghome).fingerprint[-16:]
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_alerts(pilot, watcher_id)
        listed = watcher_row(screen, watcher_id)
        assert listed is not None
        assert listed["host"] == HOST and listed["status"] == "armed"
        assert (listed["paths"], listed["signers"], listed["alerts"]) == (
            "/srv/tui-alerts",
            key_id,
            "0",
        )
        assert screen.phase == "following"

        (folder / "[").mkdir()
        for name in ("shell.php", BROKEN_MARKUP, ESCAPE, "notes.txt"):
            (folder / name).write_text("<?php ?>\n")
        planted = {
            "/srv/tui-alerts/shell.php",
            f"/srv/tui-alerts/{BROKEN_MARKUP}",
            "/srv/tui-alerts/esc\\x1b[2J\\x1b[31mred.php",  # escaped, not sent to the terminal
        }
        # ]broken.php may alert twice: met by the walk of its new folder, then by its own event.
        await wait_for(
            pilot, lambda: {c["path"] for c in alert_cells(screen, watcher_id)} == planted, 60
        )
        shown = alert_cells(screen, watcher_id)
        assert {(c["host"], c["matched"], c["signers"], c["rules"]) for c in shown} == {
            (HOST, "name", key_id, "")
        }
        await pilot.pause(0.3)  # a repaint draws them: the markup name must not crash it
        assert BROKEN_MARKUP in app.export_screenshot()

        await pilot.press("slash", *"path~shell")
        await wait_for(pilot, lambda: len(alert_cells(screen, watcher_id)) == 1)
        await pilot.press("ctrl+u", "enter")
        await wait_for(pilot, lambda: len(alert_cells(screen, watcher_id)) >= len(shown))

        await pilot.press("r")  # follow again: the watchers listed afresh, and no alert twice

        def consistent() -> bool:
            row = watcher_row(screen, watcher_id)
            raised = int(row["alerts"]) if row else 0
            return raised >= len(planted) and raised == len(alert_cells(screen, watcher_id))

        await wait_for(pilot, lambda: screen.phase == "following" and consistent(), timeout=60)

        # Enter on an alert shows it whole: the escaped name, never the terminal's escape
        await pilot.press("slash", *"path~esc", "enter")
        await wait_for(pilot, lambda: len(alert_cells(screen, watcher_id)) == 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RowDetailScreen))
        detail = str(app.screen.query_one("#row-cells", Static).render())
        assert "/srv/tui-alerts/esc\\x1b[2J\\x1b[31mred.php" in detail
        assert "\x1b" not in detail and key_id in detail
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)


async def test_the_palette_opens_the_alerts_screen(app: SpyglassApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        [alerts] = [c for c in app.get_system_commands(app.screen) if c.title == "Alerts"]
        alerts.callback()
        await wait_for(pilot, lambda: isinstance(app.screen, AlertsScreen))
        await pilot.press("f7")  # already there: not a second one
        await pilot.pause()
        assert sum(isinstance(s, AlertsScreen) for s in app.screen_stack) == 1
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, AlertsScreen))


async def test_when_the_agents_end_the_follow_it_follows_on(
    app: SpyglassApp, watcher: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each follow lives as long as its action (here 3 s): the screen signs the next one itself,
    from the last alert it holds, and an alert raised after that shows, the earlier ones once."""
    monkeypatch.setattr("tui.screens.alerts.EXPIRE", "3s")
    monkeypatch.setattr("tui.screens.alerts.REFOLLOW_AFTER", 0.0)
    watcher_id, folder = watcher
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_alerts(pilot, watcher_id)
        first = screen.action_id
        (folder / "before.php").write_text("<?php ?>\n")
        await wait_for(pilot, lambda: len(alert_cells(screen, watcher_id)) == 1, timeout=60)
        await wait_for(
            pilot, lambda: screen.action_id != first and screen.phase == "following", timeout=60
        )
        (folder / "after.php").write_text("<?php ?>\n")
        await wait_for(pilot, lambda: len(alert_cells(screen, watcher_id)) == 2, timeout=60)
        assert [c["path"] for c in alert_cells(screen, watcher_id)] == [
            "/srv/tui-alerts/before.php",
            "/srv/tui-alerts/after.php",
        ]


async def test_a_watcher_is_cancelled_from_the_screen(
    app: SpyglassApp, lab_env: dict[str, str], watcher: tuple[str, Path]
) -> None:
    """x on a highlighted watcher: the usual confirmation, then a signed fswatch_cancel for its
    host; the watcher leaves the list, on the screen and on the agent."""
    watcher_id, _folder = watcher
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_alerts(pilot, watcher_id)
        await pilot.press("w")
        table = screen.query_one("#watchers", VirtualTable)
        keys = [screen.watchers.visible(i).key for i in range(len(screen.watchers))]
        table.cursor_row = keys.index((HOST, watcher_id))
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmLaunch))
        assert app.screen.action.operations[0].params == {"watcher": watcher_id}
        await pilot.press("y")
        await wait_for(pilot, lambda: any(n.title == "Cancelled" for n in app._notifications))
        await wait_for(
            pilot,
            lambda: screen.phase == "following" and watcher_row(screen, watcher_id) is None,
            timeout=60,
        )
    listed = cli.spyglass(lab_env, "watchers", "list", "-t", f"name={HOST}", "--json")
    assert watcher_id not in listed.stdout
