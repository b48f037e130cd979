"""The TUI as a cockpit (issue 16), driven with Pilot against the real lab: fast composing,
provenance, rerun, dialogs, regex filters and stacking; plus the pure parts they rest on."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import gnupg
import pytest
from textual import events
from textual.app import App
from textual.widgets import Button, Input, Select, Static

from console.lab.local import Lab
from console.results import stack as stacking
from console.results.records import HostResult
from console.results.store import Store
from tests.support.cli import spyglass
from tests.support.waiting import wait_for
from tui.app import SpyglassApp
from tui.model.filter import parse_filter
from tui.model.provenance import compact_operations, signer_ids
from tui.model.session import Session
from tui.model.when import humanize_epochs, relative
from tui.screens.approvals import ApprovalsScreen
from tui.screens.compose import ComposeScreen
from tui.screens.confirm import ConfirmLaunch
from tui.screens.history import HistoryScreen
from tui.screens.host_detail import HostDetailScreen
from tui.screens.stack import StackHostsScreen, StackScreen
from tui.screens.watch import WatchScreen

SIZE = (160, 48)


@pytest.fixture(autouse=True)
def no_user_keymap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A keymap.toml in the developer's own config must not change the keys tests press."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


@pytest.fixture
def make_app(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GNUPGHOME", str(lab.gnupghome))
    monkeypatch.chdir(tmp_path)

    def make() -> SpyglassApp:
        return SpyglassApp(Session(str(lab.inventory), tmp_path / "results.db"))

    return make


async def burst(pilot, *keys: str) -> None:
    """Keys as a fast typist sends them: all queued at once, none waiting for the previous one
    to be handled (``Pilot.press`` waits after each key, which would hide a lost key)."""
    driver = pilot.app._driver
    for key in keys:
        char = key if len(key) == 1 else None
        name = {" ": "space", "/": "slash", ".": "full_stop", "=": "equals_sign"}.get(key, key)
        driver.send_message(events.Key(name, char))
    await pilot.pause()
    await pilot.pause()


def value(app: SpyglassApp, selector: str) -> str:
    return app.screen.query_one(selector, Input).value


async def compose_screen(pilot) -> ComposeScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ComposeScreen))
    return pilot.app.screen


async def launch(pilot, *keys: str) -> None:
    """ctrl+l, then the confirmation's default (Enter: focus starts on Launch), to the end."""
    app = pilot.app
    before = app.current
    await pilot.press("ctrl+l")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmLaunch))
    assert app.focused.id == "confirm-launch"
    await pilot.press(*(keys or ("enter",)))
    await wait_for(pilot, lambda: app.current is not before and app.current is not None)
    await wait_for(pilot, lambda: app.current.finished)
    await wait_for(
        pilot, lambda: isinstance(app.screen, WatchScreen) and not app.screen.state.pending
    )


# -- composing ---------------------------------------------------------------------------------
async def test_burst_after_ctrl_t_lands_in_the_target(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await compose_screen(pilot)
        assert app.focused.id == "p-file-paths"
        # a field's text is selected when it gets focus: typing replaces it
        await burst(pilot, *"/srv", "ctrl+t", *"name=lab-004", "tab", *"9m")
        assert value(app, "#target") == "name=lab-004"
        assert value(app, "#p-file-paths") == "/srv"
        assert value(app, "#expire") == "9m"
        status = app.screen.query_one("#target-status", Static).render().plain
        assert status == "1 of 6 hosts"
        # ctrl+f jumps to a parameter by name, even one behind the toggle, and keeps the burst
        await burst(pilot, "ctrl+f", *"max_dep", "enter", *"3")
        assert value(app, "#p-file-max_depth") == "3"
        assert app.screen.form.expanded
        assert app.screen.action.to_dict()["operations"][0]["params"] == {
            "paths": ["/srv"],
            "max_depth": 3,
        }


async def test_one_row_per_parameter_and_no_invisible_stops(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await compose_screen(pilot)
        rows = list(screen.form.query(".param-row"))
        assert rows and all(r.region.height == 1 for r in rows if r.display and r.region)
        # the first parameters are the module's most-used ones, the rest behind the toggle
        shown = [r.children[0].render().plain for r in rows if r.region.height]
        assert shown[:2] == ["paths", "name"] and "content" in shown and "xdev" not in shown
        # every tab stop is a field the investigator can see and type in, nothing in between
        common = [f"p-file-{name}" for name in shown]
        wanted = ["module", "jump", *common, "target", "expire", "until-expiry", "action-name"]
        assert [w.id for w in screen.focus_chain] == wanted
        seen = []
        for _ in wanted:
            seen.append(app.focused.id)
            assert app.focused.region.height == 1
            await pilot.press("tab")
        assert app.focused.id == "p-file-paths"  # a full round
        assert sorted(seen) == sorted(wanted)


async def test_module_switch_and_back_keeps_the_draft(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await compose_screen(pilot)
        await pilot.press(*"/srv", "tab", *r"\.php$")
        screen.query_one("#module", Select).value = "pkg"
        await wait_for(pilot, lambda: screen.module.name == "pkg")
        await pilot.pause()
        pkg_name = screen.query_one("#p-pkg-name", Input)
        screen.set_focus(pkg_name)
        await pilot.press(*"^openssl$")
        assert screen.action.to_dict()["operations"][0] == {
            "module": "pkg",
            "params": {"name": ["^openssl$"]},
        }
        screen.query_one("#module", Select).value = "file"
        await wait_for(pilot, lambda: screen.module.name == "file")
        await pilot.pause()
        assert value(app, "#p-file-paths") == "/srv"
        assert value(app, "#p-file-name") == r"\.php$"
        assert screen.action.to_dict()["operations"][0]["params"] == {
            "paths": ["/srv"],
            "name": [r"\.php$"],
        }
        screen.query_one("#module", Select).value = "pkg"
        await wait_for(pilot, lambda: screen.module.name == "pkg")
        assert value(app, "#p-pkg-name") == "^openssl$"


# -- provenance, rerun, dialogs ----------------------------------------------------------------
async def test_rerun_and_edit_from_history_and_watch(make_app, lab: Lab) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await compose_screen(pilot)
        await pilot.press(*"/srv", "tab", *r"\.(php|bin)$", "ctrl+t", "ctrl+u", *"env=prod")
        await pilot.press("ctrl+f", *"return_sha", "enter", "space")
        await launch(pilot)
        first = app.current
        sent = first.action["operations"]
        assert sent == [
            {
                "module": "file",
                "params": {"paths": ["/srv"], "name": [r"\.(php|bin)$"], "return_sha256": True},
            }
        ]
        # the watch header: module and parameters, target, signer, readable times
        title = app.screen.query_one("#run-title", Static).render().plain
        assert r"file paths=/srv name=\.(php|bin)$ return_sha256" in title
        assert "target env=prod" in title and "finished" in title
        fingerprints = [
            k["fingerprint"] for k in gnupg.GPG(gnupghome=str(lab.gnupghome)).list_keys()
        ]
        assert first.signers and first.signers[0] in [f[-16:] for f in fingerprints]
        assert first.signers[0] in title and "just now" in title
        assert not re.search(r"\b1\d{9}\b", title)
        # host detail: the selected match first (times readable), then the host's answer
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HostDetailScreen))
        detail = app.screen
        match_text = detail.query_one("#host-match", Static).render().plain
        assert "planted-ioc.bin" in match_text and not re.search(r"\b1\d{9}\b", match_text)
        assert detail.query_one("#host-match").region.y < detail.query_one("#host-summary").region.y
        assert "1 row from this host" in app.export_screenshot().replace("&#160;", " ")
        await pilot.press("escape")
        # rerun from history: the same module, parameters and target, a new action
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        row = app.screen.model.visible(0)
        assert row.cells[1] == "finished" and "return_sha256" in row.cells[3]
        assert row.cells[5] == first.signers[0]
        assert "ago" in row.cells[0] or "just now" in row.cells[0]
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmLaunch))
        assert app.screen.action.to_dict()["operations"] == sent
        assert app.screen.action.target == "env=prod" and app.screen.action.id != first.id
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current is not first and app.current.finished)
        second = app.current
        assert second.action["operations"] == sent and second.target == "env=prod"
        await wait_for(pilot, lambda: isinstance(app.screen, WatchScreen))
        assert second.match_count == first.match_count == 1
        # edit as new from the watch screen: compose holds the run's fields, nothing launched
        await pilot.press("e")
        screen = await compose_screen(pilot)
        await pilot.pause()
        assert value(app, "#target") == "env=prod" and value(app, "#p-file-paths") == "/srv"
        assert screen.action.to_dict()["operations"] == sent
        assert app.current is second


async def test_dialogs_say_what_enter_does(make_app, tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await compose_screen(pilot)
        await pilot.press(*"/srv")
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmLaunch))
        dialog = app.screen
        assert app.focused is dialog.query_one("#confirm-launch", Button)
        keys = dialog.query_one("#confirm-keys", Static).render().plain
        assert "Enter or y: launch" in keys and "Esc: cancel" in keys
        await pilot.press("escape")  # cancelled: said so, not silently
        await wait_for(
            pilot, lambda: any(n.title == "Nothing launched" for n in app._notifications)
        )
        assert isinstance(app.screen, ComposeScreen) and app.current is None
        # sign only, then launch from Approvals: the dialog says Launch (nothing signed again)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "Prompt")
        await pilot.press("ctrl+u", *"env.json", "enter")
        await wait_for(pilot, (tmp_path / "env.json").exists)
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalsScreen))
        await pilot.press(*"env.json", "enter")
        await pilot.pause()
        approvals = app.screen
        assert approvals.envelope is not None
        await pilot.press("f2", "f5")  # pressed again: the same screen, the envelope still there
        await wait_for(pilot, lambda: isinstance(app.screen, ApprovalsScreen))
        assert app.screen is approvals and approvals.envelope is not None
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmLaunch))
        question = app.screen.query_one("#confirm-question", Static).render().plain
        assert question.startswith("Launch on 6 hosts")
        assert str(app.screen.query_one("#confirm-launch", Button).label) == "Launch"
        assert not app.screen.query("#confirm-sign-only")


# -- filtering and stacking --------------------------------------------------------------------
async def test_filter_regex_with_column_scope(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await compose_screen(pilot)
        await pilot.press(*"/srv")
        await launch(pilot)
        model = app.current.match_model
        every = [r.cells for r in model.rows]
        assert len(every) > 6
        await pilot.press("slash", *r"path~\.php$")
        await pilot.pause()
        kept = [r.cells for r in model.visible_rows()]
        assert kept == [c for c in every if re.search(r"\.php$", c[1])] and len(kept) == 1
        label = app.screen.query_one("#matches-label").render().plain
        assert "1 kept by the filter" in label
        await pilot.press("ctrl+u", *"host=lab-00[4-6]")
        await pilot.pause()
        kept = [r.cells for r in model.visible_rows()]
        assert kept == [c for c in every if re.fullmatch("lab-00[4-6]", c[0])]
        assert {c[0] for c in kept} == {"lab-004", "lab-005", "lab-006"}
        await pilot.press("ctrl+u", *"nosuch~x")
        await pilot.pause()
        assert len(model) == len(every)  # not applied, and said why
        assert "no column 'nosuch'" in app.screen.query_one("#matches-label").render().plain


async def test_stack_counts_equal_the_store(make_app, lab: Lab, tmp_path: Path) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await compose_screen(pilot)
        await pilot.press(*"/usr/lib", "ctrl+f", *"return_sha", "enter", "space")
        await launch(pilot)
        run_id = app.current.id
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, StackScreen))
        screen = app.screen
        assert screen.stack.column == "sha256"
        await wait_for(pilot, lambda: len(screen.model) > 0)
        shown = {r.key: (r.raw[0], r.raw[1]) for r in screen.model.rows}
        # the same count computed straight from the store
        hosts, rows = defaultdict(set), defaultdict(int)
        for match in app.session.store.matches(run_id):
            hosts[match["data"]["sha256"]].add(match["host"])
            rows[match["data"]["sha256"]] += 1
        assert shown == {v: (len(hosts[v]), rows[v]) for v in hosts}
        # rarest first: the backdoored library, on one host of six
        first = screen.model.visible(0)
        assert first.raw[0] == 1 and screen.model.visible(len(screen.model) - 1).raw[0] == 6
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, StackHostsScreen))
        assert [r.key for r in app.screen.model.rows] == sorted(hosts[first.key])
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, HostDetailScreen))
        # the CLI counts the same
        env = {
            "GNUPGHOME": str(lab.gnupghome),
            "SPYGLASS_STORE": str(tmp_path / "results.db"),
            "PATH": "/usr/bin:/bin",
        }
        app.session.store.flush()
        done = spyglass(env, "results", "stack", run_id, "--by", "sha256", "--json")
        assert done.returncode == 0, done.stderr
        cli = [json.loads(line) for line in done.stdout.splitlines()]
        assert {c["value"]: (c["hosts"], c["rows"]) for c in cli} == shown
        assert cli[0]["value"] == first.key


async def test_stack_flags_values_earlier_runs_never_saw(make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await compose_screen(pilot)
        await pilot.press(*"/usr/lib", "ctrl+f", *"return_sha", "enter", "space")
        await pilot.press("ctrl+t", *"name=lab-001")
        await launch(pilot)
        await pilot.press("e")  # the same query on every host
        await compose_screen(pilot)
        await pilot.press("ctrl+t", *"all")
        await launch(pilot)
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, StackScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.seen_before is not None and len(screen.model))
        await wait_for(pilot, lambda: not screen.comparing and len(screen.model) == 2)
        rows = {r.raw[0]: r.raw[2] for r in screen.model.rows}  # hosts -> new flag
        assert rows == {1: "new", 6: ""}  # the backdoored library: one host, never seen before
        status = screen.query_one("#stack-status", Static).render().plain
        assert "not seen in the 1 previous run(s)" in status


async def test_stack_follows_a_live_run() -> None:
    """Rows fed after the view opened are counted at the next tick."""
    from console.results.records import MatchEvent
    from tui.model.runstate import RunState

    action = {"id": "X", "operations": [{"module": "pkg", "params": {}}]}
    state = RunState(action, ["a", "b"])
    app = _Bare(state)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        assert isinstance(screen, StackScreen) and screen.stack.column == "version"
        for host, version in (("a", "1.0"), ("b", "1.0"), ("b", "2.0")):
            state.sink(MatchEvent(host, 0, "pkg", {"name": "x", "version": version}))
        state.drain()
        await wait_for(pilot, lambda: len(screen.model) == 2)
        assert [(r.raw[0], r.key) for r in screen.model.rows] == [(1, "2.0"), (2, "1.0")]
        assert screen.seen_before is None


class _Bare(App[None]):
    def __init__(self, state) -> None:
        super().__init__()
        self.state = state

    def on_mount(self) -> None:
        self.push_screen(StackScreen(self.state))


def test_new_values_against_previous_runs_of_the_same_query(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    query = [{"module": "pkg", "params": {"name": ["^xz"]}}]
    other = [{"module": "pkg", "params": {"name": ["^openssl"]}}]
    runs = [("R1", query, "5.4.1"), ("R2", other, "9.9"), ("R3", query, "5.4.1")]
    for n, (run_id, ops, version) in enumerate(runs):
        store.begin_run(run_id, run_id, "all", ["pkg"], {"action": {"operations": ops}}, 2)
        store.add_match(run_id, "a", 0, "pkg", {"name": "xz", "version": version})
        if run_id == "R3":
            store.add_match(run_id, "b", 0, "pkg", {"name": "xz", "version": "5.6.0"})
            store.add_match(run_id, "b", 0, "pkg", {"name": "xz", "version": "9.9"})
        store.set_host(run_id, HostResult("a", "matched", matches=1))
        store.finish_run(run_id, 1, 0, 0)
        store.db.execute("UPDATE runs SET started = ? WHERE id = ?", (1000 + n, run_id))
    assert stacking.previous_runs_of(store, "R3") == ["R1"]  # R2 asked something else
    seen = stacking.earlier_values(store, ["R1"], "version")
    ranked = stacking.stack_run(store, "R3", "version").ranked(seen)
    assert [(r.value, r.hosts, r.new) for r in ranked] == [
        ("5.4.1", 1, False),
        ("5.6.0", 1, True),
        ("9.9", 1, True),  # seen only by another query's run: still new here
    ]
    store.close()
    env = {"SPYGLASS_STORE": str(tmp_path / "results.db"), "PATH": "/usr/bin:/bin"}
    done = spyglass(env, "results", "stack", "R3", "--by", "version")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "not in the 1 previous run(s)" in lines[0]
    assert lines[2:] == ["1\t1\t\t5.4.1", "1\t1\tnew\t5.6.0", "1\t1\tnew\t9.9"]
    done = spyglass(env, "results", "stack", "R3", "--by", "nope")
    assert done.returncode == 2 and "no column 'nope'" in done.stderr and "version" in done.stderr


# -- pure parts --------------------------------------------------------------------------------
def test_filter_parsing() -> None:
    columns = ["host", "path", "size"]
    f = parse_filter(r"path~\.php$ host=lab-00[4-8]", columns)
    assert f.active and [(t.column, t.full) for t in f.terms] == [(1, False), (0, True)]
    assert f.terms[1].holds("lab-004") and not f.terms[1].holds("lab-0040")
    assert parse_filter("PHP", columns).terms[0].holds("x.PHP")
    assert not parse_filter("PHP", columns).terms[0].holds("x.php")  # smart case
    assert parse_filter("php", columns).terms[0].holds("x.PHP")
    literal = parse_filter("(unclosed", columns)
    assert literal.active and literal.note and literal.terms[0].holds("a(unclosed")
    assert parse_filter("path~(", columns).error and not parse_filter("path~(", columns).active
    assert "no column" in (parse_filter("nope=x", columns).error or "")


def test_times_and_params_read_as_text() -> None:
    assert relative(1000, now=1180) == "3 min ago" and relative(1300, now=1000) == "in 5 min"
    assert relative(1000, now=1002) == "just now"
    detail = humanize_epochs("expired at 1764400300, agent time is 1764400500")
    assert not re.search(r"\d{10}", detail) and "expired at 20" in detail
    op = {"module": "file", "params": {"paths": ["/a", "/b"], "xdev": False, "name": ["\x1b[2J"]}}
    assert compact_operations({"operations": [op]}) == "file paths=/a,/b name=\\x1b[2J no-xdev"
    assert signer_ids(["not armored", 3]) == ["?", "?"]


def test_a_filter_over_many_rows_is_applied_in_slices() -> None:
    from tui.model.rows import ColumnSpec, RowModel

    model = RowModel([ColumnSpec("host", "host"), ColumnSpec("path", "path", "path")])
    model.extend(
        [
            ((f"h{i % 7}", f"/srv/{i}.{'php' if i % 3 else 'txt'}"), None, None)
            for i in range(12_000)
        ]
    )
    wanted = [i for i in range(12_000) if i % 3 and i % 7 in (4, 5)]
    model.set_filter(r"path~\.php$ host=h[45]", now=False)
    assert model.scanning and len(model) == 0
    slices = 0
    while model.scan(0.0):  # one batch of rows per call
        slices += 1
        assert model.scanning and len(model) <= len(wanted)
    assert slices >= 10 and not model.scanning
    assert [model.index_of(p) for p in range(len(model))] == wanted
    model.extend([(("h4", "/srv/new.php"), None, None)])  # rows arriving later are filtered too
    assert len(model) == len(wanted) + 1
    model.set_sort(1, reverse=True)  # re-sorting keeps the same rows
    assert len(model) == len(wanted) + 1 and model.visible(0).cells[1] == "/srv/new.php"


def test_stack_counts_hosts_once_and_ranks_rarest_first() -> None:
    counted = stacking.Stack("version")
    counted.add_pairs(
        [("a", "1.0"), ("a", "1.0"), ("b", "1.0"), ("c", "2.0"), ("b", None), ("c", ["x", 1])]
    )
    counted.add("c", ("x", 1))  # a list kept as a tuple is the same value
    assert counted.ranked_keys() == [(1, 1, "2.0"), (1, 2, '["x", 1]'), (2, 3, "1.0")]
    assert counted.hosts_of("1.0") == ["a", "b"] and counted.hosts_of("2.0") == ["c"]
    assert counted.missing == 1 and counted.hosts_of("nope") == []


def test_the_stack_table_is_made_when_drawn() -> None:
    from tui.model.rows import RowModel
    from tui.screens.stack import STACK_COLUMNS, RankedEntries

    ranked = [(1, 1, str(1764400000 + i)) for i in range(50_000)]
    model = RowModel(STACK_COLUMNS)
    entries = RankedEntries(ranked, {"1764400001"}, "time")
    model.replace(entries)
    assert len(model) == 50_000 and entries.position("1764400003") == 3
    first, second = model.visible(0), model.visible(1)
    assert first.cells[2] == "new" and second.cells[2] == ""
    assert not re.search(r"\d{10}", first.cells[3]) and first.key == "1764400000"
    assert model.get("1764400002").raw[0] == 1  # keys indexed on demand
