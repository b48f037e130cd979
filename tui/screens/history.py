"""History: past investigations from the results store; reopen, export, diff, resume.

A run that another console is still writing (a campaign under ``nohup``) reopens live: the watch
screen follows it in the store as that console commits (console/results/follow.py). A run whose
console died before its end can be resumed here, as ``spyglass results resume`` does.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from console.results import history
from console.results.writer import writer_alive
from protocol.errors import UsageError
from tui.model import format as fmt
from tui.model import when as when_
from tui.model.provenance import compact_operations, signer_ids
from tui.model.rows import ColumnSpec, RowModel, make_row
from tui.model.runstate import follow_run, load_run
from tui.model.session import Session
from tui.screens.diff import DiffScreen
from tui.screens.messages import RerunRequested
from tui.screens.prompt import Prompt
from tui.screens.watch import WatchScreen
from tui.widgets.virtual_table import VirtualTable

RUN_COLUMNS = (
    ColumnSpec("started", "started", "text", 19, 34),
    ColumnSpec("status", "status", "text", 8, 10),
    ColumnSpec("name", "name", "text", 12, 30),
    ColumnSpec("params", "module and parameters", "text", 12, 60),
    ColumnSpec("target", "target", "text", 8, 30),
    ColumnSpec("signers", "signed by", "text", 9, 34),
    ColumnSpec("hosts", "hosts", "int", 5, 7),
    ColumnSpec("matched", "matched", "int", 7, 7),
    ColumnSpec("nomatch", "no match", "int", 8, 8),
    ColumnSpec("failed", "failed", "int", 6, 6),
    ColumnSpec("id", "id", "text", 26, 64),
)


def provenance_of(envelope_json: str) -> tuple[str, str, str]:
    """(module and parameters, target, signer key ids) of a stored run."""
    try:
        envelope = json.loads(envelope_json)
        action = envelope.get("action") or {}
        signatures = envelope.get("signatures") or []
    except (ValueError, AttributeError):
        return "?", "?", "?"
    return (
        compact_operations(action),
        str(action.get("target", "")),
        ", ".join(signer_ids(signatures)) or "-",
    )


def run_status(run: sqlite3.Row, cancelled: bool) -> str:
    if run["finished"] is None:  # still written, or its console died before the end
        return "running" if writer_alive(run) else "unfinished"
    return "cancelled" if cancelled else "finished"


def cancelled_runs(store: Any) -> set[str]:
    """Runs with a host that ended cancelled (the investigator stopped them)."""
    cursor = store.db.execute("SELECT DISTINCT run_id FROM hosts WHERE status = 'cancelled'")
    return {row[0] for row in cursor}


class HistoryScreen(Screen[None]):
    BINDINGS = [
        Binding("enter", "reopen", "Reopen", id="history.reopen", priority=True),
        Binding("j", "export_jsonl", "JSONL", id="history.export_jsonl"),
        Binding("v", "export_csv", "CSV", id="history.export_csv"),
        Binding("space", "mark", "Mark", id="history.mark"),
        Binding("d", "diff", "Diff", id="history.diff"),
        Binding("R", "rerun", "Rerun", id="history.rerun"),
        Binding("e", "edit_as_new", "Edit", id="history.edit"),
        Binding("u", "resume", "Resume", id="history.resume"),
        Binding("r", "reload", "Reload", id="history.reload", show=False),
        Binding("escape", "app.pop_screen", "Back", id="history.back"),
    ]

    @dataclass
    class ResumeRequested(Message):
        """Send run ``run_id``'s envelope again to its hosts without a final answer."""

        run_id: str

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.model = RowModel(RUN_COLUMNS)
        self.marked: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="history-status")
        yield VirtualTable(self.model, id="runs")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = "history"  # the runs are listed when it shows (on_screen_resume)
        self.query_one("#runs", VirtualTable).focus()

    def on_screen_resume(self) -> None:
        """Each time it shows, first or back from a run, a diff or a launch: runs stored
        meanwhile (here or by another console) are listed, the cursor kept where it was."""
        self.action_reload()

    def action_reload(self) -> None:
        table = self.query_one("#runs", VirtualTable)
        current = table.current_row
        self.model.clear()
        try:
            runs = self.session.store.runs()
        except Exception as err:  # a broken store is shown, not raised
            self._status(f"cannot read the results store: {err}", error=True)
            return
        cancelled = cancelled_runs(self.session.store)
        now = when_.clock()
        rows = [
            make_row(
                RUN_COLUMNS,
                [
                    when_.when(r["started"], now),
                    run_status(r, r["id"] in cancelled),
                    r["name"],
                    *provenance_of(r["envelope"]),
                    r["hosts"],
                    r["matched"],
                    r["nomatch"],
                    r["failed"],
                    r["id"],
                ],
                fmt.cell,
                key=r["id"],
            )
            for r in runs
        ]
        self.model.append(rows)
        kept = next(
            (
                i
                for i, row in enumerate(self.model.visible_rows())
                if current and row.key == current.key
            ),
            0,
        )
        table.cursor_row = kept
        table.refresh_rows()
        self._status(f"{len(rows)} runs in {self.session.store_path.name}")

    def _status(self, text: str, *, error: bool = False) -> None:
        marked = f"   marked for diff: {self.marked}" if self.marked else ""
        self.query_one("#history-status", Static).update(
            Text(text + marked, style="bold red" if error else "")
        )

    def _selected(self) -> str | None:
        row = self.query_one("#runs", VirtualTable).current_row
        if row is None:
            self.notify("no run selected")
            return None
        return str(row.key)

    @on(VirtualTable.RowSelected, "#runs")
    def _row_selected(self) -> None:
        self.action_reopen()

    def _stored_action(self) -> dict[str, Any] | None:
        if (run_id := self._selected()) is None:
            return None
        run = self.session.store.run(run_id)
        try:
            action = json.loads(run["envelope"])["action"] if run else None
        except (ValueError, KeyError, TypeError):
            action = None
        if not isinstance(action, dict):
            self.notify(f"run {run_id}: no readable action in the store", severity="error")
            return None
        return action

    def action_rerun(self) -> None:
        if (action := self._stored_action()) is not None:
            self.post_message(RerunRequested(action))

    def action_edit_as_new(self) -> None:
        if (action := self._stored_action()) is not None:
            self.post_message(RerunRequested(action, edit=True))

    def action_reopen(self) -> None:
        """Show the run: live if its console still writes it, else as stored."""
        if (run_id := self._selected()) is None:
            return
        store = self.session.store
        run = store.run(run_id)
        if run is None:
            self.notify(f"no run {run_id} in the store", severity="error")
            return
        if run["finished"] is None and writer_alive(run):
            state = follow_run(store, run_id)
        else:
            state = load_run(store, run_id)
        self.app.push_screen(WatchScreen(state, self.session))

    def action_resume(self) -> None:
        if (run_id := self._selected()) is not None:
            self.post_message(self.ResumeRequested(run_id))

    def action_mark(self) -> None:
        if (run_id := self._selected()) is not None:
            self.marked = None if self.marked == run_id else run_id
            self._status(f"{len(self.model)} runs")

    def action_diff(self) -> None:
        if (run_id := self._selected()) is None:
            return
        if self.marked is None or self.marked == run_id:
            self.notify("mark a run with space, then highlight another one and press d")
            return
        try:
            diff = history.diff_runs(self.session.store, self.marked, run_id)
        except UsageError as err:  # runs of different modules
            self.notify(str(err), title="Not compared", severity="warning")
            return
        run = self.session.store.run(run_id)
        modules = run["modules"].split(",") if run is not None else []
        self.app.push_screen(DiffScreen(self.marked, run_id, diff, modules))

    def action_export_jsonl(self) -> None:
        self._export("jsonl")

    def action_export_csv(self) -> None:
        self._export("csv")

    def _export(self, kind: str) -> None:
        if (run_id := self._selected()) is None:
            return

        def chosen(path: str | None) -> None:
            if path:
                self.export(run_id, Path(path), kind)

        self.app.push_screen(
            Prompt(f"Export run {run_id} as {kind.upper()} to", f"spyglass-{run_id}.{kind}"), chosen
        )

    def export(self, run_id: str, path: Path, kind: str) -> int:
        store = self.session.store
        if (run := store.run(run_id)) is None:  # gone from the store since it was listed
            self.notify(f"no run {run_id} in the store", severity="error", title="Not exported")
            return 0
        try:
            with path.open("w", newline="" if kind == "csv" else None) as out:
                if kind == "csv":
                    modules = run["modules"].split(",")
                    count = history.write_csv(store, run_id, modules, out)
                else:
                    count = history.write_jsonl(store, run_id, out)
        except OSError as err:
            self.notify(f"{path}: {err.strerror}", severity="error", title="Not exported")
            return 0
        self.notify(f"wrote {count} lines to {path}", title="Exported")
        return count
