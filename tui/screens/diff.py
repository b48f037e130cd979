"""The difference between two runs: hosts whose status changed, rows that appeared or went."""

from __future__ import annotations

from typing import Any

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from console.results.history import RunDiff
from tui.model import format as fmt
from tui.model.rows import ColumnSpec, RowModel, make_row
from tui.widgets.virtual_table import VirtualTable

DIFF_COLUMNS = (
    ColumnSpec("change", "±", "text", 2, 8),
    ColumnSpec("host", "host", "text", 8, 40),
    ColumnSpec("what", "what", "text", 20, 200),
)


class DiffScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="diff.back")]

    def __init__(self, before: str, after: str, diff: RunDiff, modules: list[str]) -> None:
        super().__init__()
        self.before, self.after, self.diff = before, after, diff
        self.model = RowModel(DIFF_COLUMNS)

        def readable(data: Any) -> Any:  # time columns in local time, like every time on screen
            for module in modules:
                data = fmt.readable_data(module, data)
            return data

        rows = [
            make_row(DIFF_COLUMNS, ["~", host, f"status {old} -> {new}"], fmt.cell)
            for host, old, new in diff.hosts
        ]
        rows += [make_row(DIFF_COLUMNS, ["-", h, readable(d)], fmt.cell) for h, d in diff.removed]
        rows += [make_row(DIFF_COLUMNS, ["+", h, readable(d)], fmt.cell) for h, d in diff.added]
        self.model.append(rows)

    def compose(self) -> ComposeResult:
        yield Header()
        d = self.diff
        yield Static(
            Text.assemble(
                ("before ", "dim"),
                self.before,
                ("  after ", "dim"),
                self.after,
                "\n",
                (f"{len(d.hosts)} hosts changed status, ", ""),
                (f"{len(d.removed)} rows disappeared", "red"),
                ", ",
                (f"{len(d.added)} rows appeared", "green"),
            ),
            id="diff-summary",
        )
        yield VirtualTable(
            self.model,
            styles_by_value={
                "+": Style(color="green", bold=True),
                "-": Style(color="red", bold=True),
            },
            id="diff-table",
        )
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = "diff"
        table = self.query_one("#diff-table", VirtualTable)
        table.refresh_rows()
        table.focus()
