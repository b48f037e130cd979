"""One row of a table in full: every column, none cut to the table's width.

For tables whose rows stand alone (an alert, a watcher): the cells are already terminal-safe
plain text (``tui.model.rows``), so they are shown as they are, never parsed as markup."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Static

from tui.model.rows import ColumnSpec, Row


class RowDetailScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="row.back")]

    def __init__(self, title: str, columns: Sequence[ColumnSpec], row: Row) -> None:
        super().__init__()
        self.heading, self.columns, self.row = title, columns, row

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="row-detail"):
            yield Label(self.heading, classes="section")
            width = max(len(c.label) for c in self.columns)
            lines = Text("\n").join(
                Text.assemble((f"{column.label:<{width}}  ", "dim"), cell or "-")
                for column, cell in zip(self.columns, self.row.cells, strict=True)
            )
            yield Static(lines, id="row-cells")
        yield Footer(compact=True, show_command_palette=False)
