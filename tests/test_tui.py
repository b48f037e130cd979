"""The TUI driven with Pilot against a real lab (real agents, real gpg), plus its pure parts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Static

from console.lab.local import Lab, lab_down, lab_up
from protocol.envelope import load_envelope
from tests.support import cli
from tests.support.waiting import wait_for
from tui.app import SpyglassApp
from tui.model.rows import ColumnSpec, RowModel, make_row
from tui.model.session import Session
from tui.screens.compose import ComposeScreen
from tui.screens.confirm import ConfirmLaunch
from tui.screens.history import HistoryScreen
from tui.screens.host_detail import HostDetailScreen
from tui.screens.prompt import Prompt
from tui.screens.watch import WatchScreen
from tui.widgets.virtual_table import VirtualTable

HOSTILE_DIR = "[red]x["
HOSTILE_ESC = "esc\x1b[2J\x1b[31mred.php"
SIZE = (150, 45)


@pytest.fixture(autouse=True)
def no_user_keymap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A keymap.toml in the developer's own config must not change the keys tests press."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


@pytest.fixture(scope="module")
def tui_lab() -> Iterator[Lab]:
    """Four agents; lab-004 has the seed web shell, lab-002 two hostile file names."""
    directory = Path(tempfile.mkdtemp(prefix="sgt", dir="/tmp"))
    hostile = directory / "seeds" / "lab-002" / "srv" / "hostile"
    (hostile / HOSTILE_DIR).mkdir(parents=True)
    (hostile / HOSTILE_DIR / "a.php").write_text("<?php ?>\n")
    (hostile / HOSTILE_ESC).write_text("<?php ?>\n")
    lab = lab_up(directory / "lab", 4, seed_files=directory / "seeds")
    try:
        yield lab
    finally:
        lab_down(lab.dir)
        subprocess.run(
            ["gpgconf", "--homedir", str(lab.gnupghome), "--kill", "gpg-agent"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def make_app(tui_lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GNUPGHOME", str(tui_lab.gnupghome))
    monkeypatch.chdir(tmp_path)

    def make(concurrency: int = 256, store: Path | None = None) -> SpyglassApp:
        session = Session(str(tui_lab.inventory), store or tmp_path / "results.db")
        return SpyglassApp(session, concurrency=concurrency)

    return make


async def compose_php_query(pilot, name_regex: str = r"\.php$") -> None:
    """Keyboard only: the paths field has focus on start; tab goes to the name field."""
    app = pilot.app
    await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
    assert app.focused.id == "p-file-paths"
    await pilot.press(*"/srv")
    await pilot.press("tab", *name_regex)
    await pilot.pause()


async def launch_and_finish(pilot) -> None:
    app = pilot.app
    await pilot.press("ctrl+l")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmLaunch))
    await pilot.press("y")
    await wait_for(pilot, lambda: app.current is not None and app.current.finished)
    await wait_for(pilot, lambda: shows_the_end(app))


def shows_the_end(app: SpyglassApp) -> bool:
    """The watch screen has applied every event of its finished run and drawn the result."""
    screen = app.screen
    if not isinstance(screen, WatchScreen) or screen.state.pending:
        return False
    title = screen.query_one("#run-title", Static).render().plain
    return "finished" in title or "cancelled" in title


def notified(app: SpyglassApp, title: str) -> bool:
    return any(n.title == title for n in app._notifications)


def statuses(app: SpyglassApp) -> dict[str, tuple[str, str]]:
    return {r.cells[0]: (r.cells[1], r.cells[2]) for r in app.current.host_model.rows}


async def test_compose_launch_watch(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await compose_php_query(pilot)
        screen = app.screen
        assert screen.query_one("#target-status", Static).render().plain == "4 of 4 hosts"
        preview = json.loads(str(screen.query_one("#preview", Static).render()))
        assert preview["operations"] == [
            {"module": "file", "params": {"paths": ["/srv"], "name": [r"\.php$"]}}
        ]
        await launch_and_finish(pilot)
        assert isinstance(app.screen, WatchScreen)
        assert statuses(app) == {
            "lab-001": ("nomatch", "0"),
            "lab-002": ("matched", "2"),
            "lab-003": ("nomatch", "0"),
            "lab-004": ("matched", "1"),
        }
        model = app.current.match_model
        assert [c.key for c in model.columns] == [
            "host",
            "path",
            "size",
            "mode",
            "mtime",
            "sha256",
            "matched",
        ]
        rows = sorted((r.cells[0], r.cells[1]) for r in model.rows)
        assert rows == [
            ("lab-002", "/srv/hostile/[red]x[/a.php"),
            ("lab-002", "/srv/hostile/esc\\x1b[2J\\x1b[31mred.php"),
            ("lab-004", "/srv/www/uploads/.cache.php"),
        ]
        counters = app.screen.query_one("#counters", Static).render().plain
        assert "matched 2" in counters and "no match 2" in counters and "failed 0" in counters
        # the run is in the store
        store = app.session.store
        run = store.runs()[0]
        assert (run["matched"], run["nomatch"], run["failed"]) == (2, 2, 0)


async def test_hostile_names_display_literally(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await compose_php_query(pilot)
        await launch_and_finish(pilot)
        svg = app.export_screenshot()
        assert "[red]x[/a.php" in svg.replace("&#160;", " ")
        assert "\x1b" not in svg
        # filter as you type, then open the hostile row's host detail
        await pilot.press("slash", *"red]x")
        await wait_for(pilot, lambda: app.current.match_model.filter_text == "red]x")
        model = app.current.match_model
        assert len(model) == 1 and model.visible(0).cells[0] == "lab-002"
        await pilot.press("enter", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HostDetailScreen))
        svg = app.export_screenshot()
        assert "\x1b" not in svg
        assert "[red]x[/a.php" in svg.replace("&#160;", " ")
        text = app.screen.query_one("#host-match", Static).render().plain
        assert "[red]x[/a.php" in text
        await pilot.press("escape")
        assert isinstance(app.screen, WatchScreen)


async def test_bad_regex_launches_nothing(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await compose_php_query(pilot, name_regex="(unclosed")
        assert app.focused.id == "p-file-name"  # its help line shows its problem
        error = app.screen.query_one("#param-help", Static).render().plain
        assert "invalid regex" in error and "name[0]" in error
        assert "invalid regex" in app.screen.query_one("#compose-status", Static).render().plain
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: notified(app, "Nothing launched"))
        assert isinstance(app.screen, ComposeScreen)
        assert app.current is None
        assert app.session.store.runs() == []


async def test_bad_selector_launches_nothing(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await compose_php_query(pilot)
        await pilot.press("ctrl+t", "ctrl+u", *"env=prod and (")
        await pilot.pause()
        status = app.screen.query_one("#target-status", Static).render().plain
        assert "column 15" in status
        await pilot.press("ctrl+u", *"role=nosuchrole")
        await pilot.pause()
        assert app.screen.query_one("#target-status", Static).render().plain == "0 of 4 hosts"
        await pilot.press("ctrl+u", *"env=prod and (")
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: notified(app, "Nothing launched"))
        assert isinstance(app.screen, ComposeScreen)
        assert app.current is None
        assert app.session.store.runs() == []


async def test_cancel_stops_the_run(make_app, tui_lab: Lab) -> None:
    """The agents are frozen (SIGSTOP), so every host is still in flight when c is pressed."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await compose_php_query(pilot)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmLaunch))
        for pid in tui_lab.pids:
            os.killpg(pid, signal.SIGSTOP)
        try:
            await pilot.press("y")
            await wait_for(pilot, lambda: isinstance(app.screen, WatchScreen))
            await wait_for(pilot, lambda: app.current.counts["connecting"] == 4)
            await pilot.press("c")
            await wait_for(pilot, lambda: app.current.finished)
        finally:
            for pid in tui_lab.pids:
                os.killpg(pid, signal.SIGCONT)
        await wait_for(pilot, lambda: shows_the_end(app))
        assert statuses(app) == {f"lab-00{i}": ("cancelled", "0") for i in range(1, 5)}
        title = app.screen.query_one("#run-title", Static).render().plain
        assert "cancelled" in title and "finished" not in title
        assert "cancelled 4" in app.screen.query_one("#counters", Static).render().plain
        run = app.session.store.runs()[0]
        assert run["finished"] is not None and run["failed"] == 4


async def test_history_reopen_export_diff(make_app, tui_lab: Lab, tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await compose_php_query(pilot)
        await launch_and_finish(pilot)
        first = app.current.id
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
        # second run of the same query, narrower target
        await pilot.press("ctrl+t", "ctrl+u", *"name=lab-004")
        await launch_and_finish(pilot)
        second = app.current.id
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        history = app.screen
        assert [str(r.key) for r in history.model.rows] == [second, first]
        # reopen the older run (second row)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, WatchScreen))
        reopened = app.screen.state
        assert reopened.id == first and not reopened.live
        assert reopened.match_count == 3
        assert reopened.counts["matched"] == 2 and reopened.counts["nomatch"] == 2
        # meanwhile another console stores a run: back in history, it is listed, the cursor
        # still on the run it was on
        env = cli.console_env(tui_lab, tui_lab.inventory, tmp_path / "results.db")
        other = cli.spyglass(env, "run", "file", "--paths", "/srv", "--name", "x", "-t", "all")
        assert other.returncode == 0, other.stderr
        await pilot.press("escape")
        assert app.screen is history
        await wait_for(pilot, lambda: len(history.model.rows) == 3)
        assert history.query_one("#runs", VirtualTable).current_row.key == first
        # export JSON lines through the prompt
        await pilot.press("j")
        await wait_for(pilot, lambda: isinstance(app.screen, Prompt))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        lines = (tmp_path / f"spyglass-{first}.jsonl").read_text().splitlines()
        events = [json.loads(line) for line in lines]
        assert sum(e["event"] == "match" for e in events) == 3
        assert sum(e["event"] == "host" for e in events) == 4
        await pilot.press("v")
        await wait_for(pilot, lambda: isinstance(app.screen, Prompt))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        csv_text = (tmp_path / f"spyglass-{first}.csv").read_text()
        header = "host,op,module,path,size,mode,mtime,sha256,matched,replay,ran_at"
        assert csv_text.splitlines()[0] == header + ",action_id,params,target,signers,started"
        # diff: mark the newer run, highlight the older one
        await pilot.press("up", "space", "down", "d")
        await pilot.pause()
        diff = app.screen.diff
        assert [h for h, _, _ in diff.hosts] == ["lab-001", "lab-002", "lab-003"]
        assert len(diff.added) == 2 and diff.removed == []
        shown = " ".join(str(row.cells[2]) for row in app.screen.model.rows)
        mtimes = [str(data["mtime"]) for _, data in diff.added]
        assert mtimes and not any(m in shown for m in mtimes)  # times in local time, not epochs


async def test_sign_only_then_approvals_launch(make_app, tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await compose_php_query(pilot)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, Prompt))
        await pilot.press("ctrl+u", *"env.json", "enter")
        path = tmp_path / "env.json"
        await wait_for(pilot, path.exists)
        envelope = load_envelope(path)
        assert len(envelope.signatures) == 1
        assert app.session.store.runs() == []  # signing only launches nothing
        await pilot.press("f5")
        await pilot.pause()
        await pilot.press(*"env.json", "enter")
        await pilot.pause()
        assert "1 signature(s)" in app.screen.query_one("#envelope-status", Static).render().plain
        await pilot.press("ctrl+g")  # the same key cannot sign twice
        await wait_for(pilot, lambda: notified(app, "Not signed"))
        assert len(load_envelope(path).signatures) == 1
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmLaunch))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.current is not None and app.current.finished)
        assert app.current.id == envelope.action.id
        assert app.session.store.runs()[0]["id"] == envelope.action.id


async def test_help_and_palette(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        keys = app.screen.query_one("#help-keys", Static).render()
        assert keys is not None
        assert "compose.launch" in app.export_screenshot()
        await pilot.press("escape")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in ("Compose", "History", "Approvals", "Help", "Sign and launch", "Sign only"):
            assert wanted in titles


# -- pure parts ----------------------------------------------------------------------------
def test_row_model_filter_sort_upsert() -> None:
    cols = [ColumnSpec("host", "host"), ColumnSpec("size", "size", "int")]
    model = RowModel(cols)

    def row(host: str, size: int | None, key: str | None = None):
        return make_row(cols, [host, size], lambda v, _k: "" if v is None else str(v), key=key)

    model.append([row("b", 10), row("a", 2), row("c", None)])
    model.toggle_sort(1)
    assert [r.cells[0] for r in model.visible_rows()] == ["a", "b", "c"]
    model.toggle_sort(1)
    assert [r.cells[0] for r in model.visible_rows()] == ["b", "a", "c"]
    model.append([row("d", 5)])
    assert [r.cells[0] for r in model.visible_rows()] == ["b", "d", "a", "c"]
    model.toggle_sort(1)
    model.set_filter("B")  # smart case: a capital letter makes the regex case-sensitive
    assert [r.cells[0] for r in model.visible_rows()] == []
    model.set_filter("host=b")
    assert [r.cells[0] for r in model.visible_rows()] == ["b"]
    model.append([row("bb", 1)])
    assert len(model) == 1
    model.set_filter("b")
    assert len(model) == 2
    model.set_filter("")
    model.upsert(row("x", 1, key="k"))
    model.upsert(row("y", 1, key="k"))
    assert len(model) == 6 and model.get("k").cells[0] == "y"


def test_row_model_lazy_rows_are_untracked_and_measured_when_drawn() -> None:
    import gc

    cols = [ColumnSpec("host", "host"), ColumnSpec("path", "path", "path", 4, 60)]
    model = RowModel(cols)
    model.extend([(("h", "/a/very/long/path/name.php"), None, None), (("h", "/b"), None, None)])
    assert model.widths == [6, 6]  # nothing formatted yet
    gc.collect()
    assert not any(gc.is_tracked(e) or gc.is_tracked(e[0]) for e in model.entries)
    assert model.measure_window(0, 10) and model.widths[1] == len("/a/very/long/path/name.php")
    model.set_filter("/b")
    assert [r.cells[1] for r in model.visible_rows()] == ["/b"]


def test_runstate_counts_reasons_and_match_events() -> None:
    from console.results.records import HostEvent, HostResult, MatchEvent, StateEvent
    from tui.model.runstate import RunState, reason_text

    assert reason_text("acl", "acl: needs weight 2, got 1") == "acl: needs weight 2, got 1"
    assert reason_text("acl", "file needs weight 2") == "acl: file needs weight 2"
    assert reason_text(None, "boom") == "boom" and reason_text("timeout", "") == "timeout"
    action = {"id": "X", "operations": [{"module": "file", "params": {}}]}
    state = RunState(action, ["a", "b"])
    data = {
        "path": "/p",
        "size": 1,
        "mode": "-rw-r--r--",
        "mtime": 5,
        "sha256": None,
        "matched": ["name"],
    }
    odd = {"path": "/q", "extra": "kept"}
    state.sink(StateEvent("a", "connecting"))
    state.sink(MatchEvent("a", 0, "file", data))
    state.sink(MatchEvent("a", 0, "file", odd))
    state.sink(HostEvent(HostResult("b", "rejected", "acl", "acl: needs weight 2")))
    state.sink(HostEvent(HostResult("a", "matched", matches=2)))
    state.drain()
    assert +state.counts == {"matched": 1, "rejected": 1}
    assert state.rejected_reasons() == {"acl": 1}
    assert state.host_model.get("b").cells[4] == "acl: needs weight 2"
    first, second = state.match_model.rows
    assert first.ref == 0 and state.match_event(first) == MatchEvent("a", 0, "file", data)
    assert state.match_event(second).data == odd  # keys the module does not declare: kept
    assert first.cells[-1] == "name"


def offline_app(tmp_path: Path) -> SpyglassApp:
    inventory = tmp_path / "inventory.toml"
    inventory.write_text('[[hosts]]\nname = "lab-001"\naddress = "127.0.0.1"\n')
    return SpyglassApp(Session(str(inventory), tmp_path / "results.db"))


async def test_keymap_from_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    (config / "spyglass").mkdir(parents=True)
    (config / "spyglass" / "keymap.toml").write_text('[keymap]\n"app.history" = "f6"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    app = offline_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
        await pilot.press("f4")  # rebound: the old key does nothing now
        await pilot.pause()
        assert isinstance(app.screen, ComposeScreen)
        await pilot.press("f6")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))


async def test_bad_keymap_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    (config / "spyglass").mkdir(parents=True)
    (config / "spyglass" / "keymap.toml").write_text('[keymap]\n"app.history" = 6\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    app = offline_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
        messages = [n.message for n in app._notifications]
        assert any("ignored app.history" in m and "keymap.toml" in m for m in messages)
        await pilot.press("f4")  # the default binding still works
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))


async def test_screens_post_messages_to_any_app(tmp_path: Path) -> None:
    """Screens get the session when built and post what they want: a bare App can host them."""
    from textual import on
    from textual.app import App

    from tui.model.runstate import RunState

    session = offline_app(tmp_path).session
    state = RunState({"id": "X", "operations": []}, ["lab-001"])
    posted = []

    class Bare(App[None]):
        def on_mount(self) -> None:
            self.push_screen(ComposeScreen(session))

        @on(ComposeScreen.LaunchRequested)
        def _launch(self, message: ComposeScreen.LaunchRequested) -> None:
            posted.append(message)

        @on(ComposeScreen.SignOnlyRequested)
        def _sign_only(self, message: ComposeScreen.SignOnlyRequested) -> None:
            posted.append(message)

        @on(WatchScreen.CancelRequested)
        def _cancel(self, message: WatchScreen.CancelRequested) -> None:
            posted.append(message)

    app = Bare()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
        await pilot.press(*"/srv", "ctrl+l", "ctrl+s")
        await wait_for(pilot, lambda: len(posted) == 2)
        await app.push_screen(WatchScreen(state))
        await pilot.press("c")
        await wait_for(pilot, lambda: len(posted) == 3)
    launch, sign_only, cancel = posted
    assert isinstance(launch, ComposeScreen.LaunchRequested)
    assert isinstance(sign_only, ComposeScreen.SignOnlyRequested)
    for message in (launch, sign_only):
        operation = message.action.to_dict()["operations"][0]
        assert operation == {"module": "file", "params": {"paths": ["/srv"]}}
        assert message.action.target == "all"
    assert isinstance(cancel, WatchScreen.CancelRequested) and cancel.state is state
    assert not state.cancelling  # deciding is the App's job, not the screen's


def test_the_tui_model_loads_no_textual() -> None:
    """The layers are a contract (pyproject [tool.importlinter]); this is its run-time side."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, tui.model.session, tui.model.runstate, tui.model.rows\n"
            "print('textual' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"  # the model is plain Python: no Textual below widgets


@pytest.fixture
def passphrase_home() -> Iterator[Path]:
    """A GNUPGHOME whose key needs a passphrase, with the agent's cache off (STACK-NOTES §2:
    a cached passphrase would make a wrong one work)."""
    from protocol.signing import generate_key

    home = Path(tempfile.mkdtemp(prefix="sgp", dir="/tmp"))  # short: the agent socket lives here
    home.chmod(0o700)
    (home / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\n")
    try:
        generate_key(home, passphrase="correct horse")
        yield home
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)


async def test_passphrase_prompt(
    passphrase_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GNUPGHOME", str(passphrase_home))
    monkeypatch.delenv("SPYGLASS_PASSPHRASE", raising=False)
    inventory = tmp_path / "inventory.toml"
    inventory.write_text('[[hosts]]\nname = "lab-001"\naddress = "127.0.0.1"\nport = 1\n')
    app = SpyglassApp(Session(str(inventory), tmp_path / "results.db"))
    signed = []
    sign = app.session.sign

    def recording_sign(envelope, passphrase=None):
        signed.append(sign(envelope, passphrase))
        return signed[-1]

    app.session.sign = recording_sign
    async with app.run_test(size=SIZE) as pilot:
        await compose_php_query(pilot)
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmLaunch))
        await pilot.press("y")
        # gpg cannot ask (no pinentry here): the TUI asks, masked
        await wait_for(pilot, lambda: isinstance(app.screen, Prompt), timeout=30)
        assert app.screen.password
        await pilot.press(*"wrong", "enter")
        # a wrong passphrase: asked again with gpg's reason, nothing signed or launched
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, Prompt) and "Bad passphrase" in app.screen.note,
            timeout=30,
        )
        assert "could not sign" in app.screen.note
        assert signed == [] and app.current is None and app.session.store.runs() == []
        await pilot.press(*"correct horse", "enter")
        await wait_for(pilot, lambda: app.current is not None, timeout=30)
        assert len(signed) == 1 and len(signed[0].signatures) == 1
        assert app.current.id == signed[0].action.id
        assert app.session.passphrase == "correct horse"  # not asked again this session
        await wait_for(pilot, lambda: app.current.finished)
