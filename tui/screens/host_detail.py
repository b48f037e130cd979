"""One host: its status, errors, the agent's identity and all of its rows in this run."""

from __future__ import annotations

import json
import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Static

from console.results.records import MatchEvent
from tui.model import format as fmt
from tui.model.rows import RowModel
from tui.model.runstate import RunState
from tui.model.when import humanize_epochs
from tui.widgets.virtual_table import VirtualTable


class HostDetailScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="host.back")]

    def __init__(self, state: RunState, host: str, match: MatchEvent | None = None) -> None:
        super().__init__()
        self.state, self.host, self.match = state, host, match
        self.model = RowModel(state.match_model.columns)
        self.model.extend(state.matches_of(host))

    def compose(self) -> ComposeResult:
        info = self.state.hosts.get(self.host)
        result = info.result if info else None
        yield Header()
        with VerticalScroll(id="host-info") as scroll:
            scroll.can_focus = False
            if self.match is not None:
                yield Label("selected match", classes="section")
                yield Static(
                    Text(
                        fmt.printable_lines(
                            json.dumps(
                                fmt.readable_data(self.match.module, self.match.data),
                                indent=2,
                                ensure_ascii=False,
                            )
                        )
                    ),
                    id="host-match",
                )
            yield Label("the host's answer", classes="section")
            lines = Text.assemble(("host ", "dim"), (fmt.cell(self.host), "bold"), "  ")
            if result is None:
                lines.append(f"state {info.state if info else 'unknown'}")
                if info is not None and info.retry is not None:  # until expiry, between attempts
                    waited = info.retry.text_in(info.wait_left(time.monotonic()))
                    lines.append_text(Text.assemble("  ", humanize_epochs(fmt.cell(waited))))
            else:
                lines.append_text(
                    Text.assemble(
                        ("status ", "dim"),
                        (result.status, "bold"),
                        ("  reason ", "dim"),
                        fmt.cell(result.reason or "-"),
                        ("  matches ", "dim"),
                        str(result.matches),
                        ("  elapsed ", "dim"),
                        fmt.duration_ms(result.elapsed_ms) or "-",
                        ("  attempts ", "dim"),
                        str(result.attempts),
                    )
                )
                if result.detail:
                    lines.append_text(
                        Text.assemble(
                            "\n", ("errors ", "dim"), humanize_epochs(fmt.cell(result.detail))
                        )
                    )
            yield Static(lines, id="host-summary")
            agent = result.agent if result else None
            yield Label("agent", classes="section")
            yield Static(
                fmt.pretty_json(agent) if agent else Text("(no identity received)", style="dim"),
                id="host-agent",
            )
        with Vertical(id="host-rows"):
            count = len(self.model)
            yield Label(
                Text(f"{count} {'row' if count == 1 else 'rows'} from this host", style="bold")
            )
            yield VirtualTable(self.model, id="host-matches")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"host {fmt.cell(self.host)}"
        self.query_one("#host-matches", VirtualTable).refresh_rows()
        self.query_one("#host-matches", VirtualTable).focus()
