"""Watch: live counters, one row per host, and the streaming matches table.

Engine events only land in ``RunState.pending``; a timer applies them in bounded slices and then
repaints, so the cost per tick stays small however fast agents answer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Footer, Header, Input, Label, Static

from console.results.records import FAILED_STATUSES
from tui import gcpause
from tui.model import format as fmt
from tui.model import when as when_
from tui.model.runstate import RunState
from tui.model.session import Session
from tui.screens.filtered import FilteredScreen
from tui.screens.host_detail import HostDetailScreen
from tui.screens.messages import RerunRequested
from tui.screens.stack import StackScreen
from tui.widgets.virtual_table import VirtualTable

TICK = 0.05
"""Seconds between looks at the queue while nothing is pending."""
SLICE = 0.02
"""Longest time one tick may spend applying events, so the loop never stalls for long."""
BREATH = 0.004
"""Pause between slices while a backlog remains: the loop repaints and reads the network."""
FOLLOW = 0.25
"""Seconds between two looks at the store for a run another console writes."""

STATUS_STYLES: dict[str, Style] = {
    "matched": Style(color="green", bold=True),
    "nomatch": Style(color="bright_black"),
    "connecting": Style(color="cyan"),
    "running": Style(color="cyan", bold=True),
    "queued": Style(color="bright_black", italic=True),
    "pending": Style(color="bright_black", italic=True),
    "waiting": Style(color="yellow", italic=True),
    **{k: Style(color="red", bold=True) for k in FAILED_STATUSES},
    "cancelled": Style(color="yellow"),  # a failed status too, but yellow rather than red
}


def waiting_counter(s: RunState) -> list[tuple[str, str]]:
    """``waiting 3 (7 retries)``: hosts waiting for their next attempt, and the failed attempts
    retried so far, once a run has retried."""
    if not s.retries and not s.counts["waiting"]:
        return []
    return [
        ("  waiting ", "dim"),
        (str(s.counts["waiting"]), "bold yellow"),
        (f" ({s.retries} {'retry' if s.retries == 1 else 'retries'})", "yellow"),
    ]


class WatchScreen(FilteredScreen):
    FILTER = "#filter"
    MAIN = "#matches"
    BINDINGS = [
        Binding("c", "cancel_run", "Cancel", id="watch.cancel"),
        # priority: the keys typed right after / land in the filter (see ComposeScreen)
        Binding("slash", "focus_filter", "Filter", id="watch.filter", priority=True),
        Binding("k", "stack", "Stack", id="watch.stack"),
        Binding("e", "edit_as_new", "Edit", id="watch.edit"),
        Binding("R", "rerun", "Rerun", id="watch.rerun"),
        Binding("h", "focus_hosts", "Hosts", id="watch.hosts", show=False),
        Binding("m", "focus_matches", "Matches", id="watch.matches", show=False),
        Binding("escape", "back", "Back", id="watch.back"),
    ]

    @dataclass
    class CancelRequested(Message):
        """Stop the investigation ``state`` shows; hosts still running end as cancelled."""

        state: RunState

    def __init__(self, state: RunState, session: Session | None = None) -> None:
        super().__init__()
        self.state = state
        self.session = session
        """For the stack view's comparison with earlier runs (none without a store)."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="run-title")
        yield Static("", id="counters")
        with Vertical(id="hosts-pane"):
            yield VirtualTable(self.state.host_model, styles_by_value=STATUS_STYLES, id="hosts")
        with Vertical(id="matches-pane"):
            yield Label("", id="matches-label")
            yield Input(
                placeholder=r"filter (/): regex, or COLUMN~regex, COLUMN=regex: path~\.php$ "
                "host=lab-00[4-8]",
                id="filter",
            )
            yield VirtualTable(self.state.match_model, follow=True, id="matches")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.title = "spyglass"
        self.sub_title = "watch" if self.state.live else "history"
        self._render_title()
        self.tick()
        self.query_one("#matches", VirtualTable).focus()

    # -- updates ---------------------------------------------------------------------------
    def on_unmount(self) -> None:
        gcpause.settle()  # no tick will come back to it

    _needs_paint = True
    _phase: tuple[bool, bool, bool] = (False, False, False)
    _next_follow = 0.0
    _counters_text = ""
    _counters_lines = 1
    _label_text = ""

    def tick(self) -> None:
        """Apply queued events for at most ``SLICE`` seconds, repaint what changed, and come back
        after ``BREATH`` while a backlog remains, after ``TICK`` otherwise.

        One timer at a time (each tick schedules the next), so two slices never run back to
        back without the loop getting a turn in between.
        """
        state = self.state
        try:
            clock = time.perf_counter
            deadline = clock() + SLICE
            changed = False
            now = clock()
            if state.follow is not None and not state.finished and now >= self._next_follow:
                self._next_follow = now + FOLLOW
                if state.poll():
                    state.finish()
            if state.pending:
                gcpause.burst()
            while state.pending and clock() < deadline:
                changed |= state.drain(400)
            changed |= state.tick_waiting()  # "retry in 40 s" counts down
            matches = state.match_model
            if matches.scanning:  # a filter being applied to many rows, a slice per tick
                matches.scan(max(0.002, deadline - clock()))
                changed = True
            if gcpause.paused():
                if state.pending:
                    gcpause.collect_young()
                else:
                    gcpause.settle()
            if changed or self._needs_paint:
                self._needs_paint = False
                self.query_one("#hosts", VirtualTable).refresh_rows()
                self.query_one("#matches", VirtualTable).refresh_rows()
                self._render_counters()
            if (state.finished, state.cancelling, state.writer_gone) != self._phase:
                self._phase = (state.finished, state.cancelling, state.writer_gone)
                self._render_title()
                self._render_counters()
            elif int(when_.clock()) != self._title_second:
                self._render_title()  # "3 min ago" moves on
        finally:
            if self.is_attached:
                busy = state.pending or state.match_model.scanning
                self.set_timer(BREATH if busy else TICK, self.tick)

    _title_second = -1

    def _render_title(self) -> None:
        s = self.state
        self._title_second = int(when_.clock())
        if s.error:
            phase = Text(f"failed: {s.error}", style="bold red")
        elif s.writer_gone:
            phase = Text(
                "unfinished: its console is gone; resume it from history (u)", style="bold red"
            )
        elif s.follow is not None and not s.finished:
            writer = s.follow.writer
            phase = Text(f"following {writer or 'another console'}", style="bold cyan")
        elif not s.finished:
            phase = Text("cancelling…" if s.cancelling else "running", style="bold cyan")
            if s.until_expiry and not s.cancelling:
                phase.append(", retrying until expiry")
        elif s.cancelled:
            phase = Text("cancelled", style="bold yellow")
        else:
            phase = Text("finished", style="bold green")
        ended = s.ended if s.finished and s.ended else when_.clock()
        took = fmt.duration_ms(int((ended - s.started) * 1000)) or "0s"
        self.query_one("#run-title", Static).update(
            Text.assemble(
                (s.name, "bold"),
                "  ",
                phase,
                ("  started ", "dim"),
                when_.when(s.started),
                ("  took " if s.finished else "  for ", "dim"),
                took,
                "\n",
                ("looked for ", "dim"),
                s.params,
                "\n",
                ("target ", "dim"),
                s.target,
                ("  signed by ", "dim"),
                ", ".join(s.signers) or "-",
                ("  action ", "dim"),
                s.id,
            ),
            layout=False,
        )

    def _render_counters(self) -> None:
        s = self.state
        c = s.counts
        failed = s.failed_by_kind()
        parts: list[tuple[str, str] | str] = [
            ("targeted ", "dim"),
            (str(len(s.hosts)), "bold"),
            ("  queued ", "dim"),
            (str(c["queued"]), "bold"),
            ("  connecting ", "dim"),
            (str(c["connecting"]), "bold cyan"),
            ("  running ", "dim"),
            (str(c["running"]), "bold cyan"),
            ("  matched ", "dim"),
            (str(c["matched"]), "bold green"),
            ("  no match ", "dim"),
            (str(c["nomatch"]), "bold"),
            ("  failed ", "dim"),
            (str(sum(failed.values())), "bold red" if failed else "bold"),
        ]
        if failed:
            reasons = s.rejected_reasons()
            kinds = []
            for kind, n in failed.items():
                extra = ""
                if kind == "rejected" and reasons:
                    extra = "[" + ", ".join(f"{r} {k}" for r, k in sorted(reasons.items())) + "]"
                kinds.append(f"{kind} {n}{extra}")
            parts.append((" (" + ", ".join(kinds) + ")", "red"))
        parts += waiting_counter(s)  # last: the host rows say more
        counters = Text.assemble(*parts)
        # Only when the text changed, and with a layout pass only when it takes another number
        # of lines (it wraps on a narrow terminal, app.tcss): a layout of the whole screen
        # costs more than the rest of a tick.
        if counters.plain != self._counters_text:
            self._counters_text = counters.plain
            widget = self.query_one("#counters", Static)
            lines = 1 + (len(counters.plain) > widget.content_region.width)
            widget.update(counters, layout=lines != self._counters_lines)
            self._counters_lines = lines
        label = Text(f"matches: {s.match_count}", style="bold")
        row_filter = s.match_model.row_filter
        if row_filter.error:
            label.append(f"  filter not applied: {row_filter.error}", style="bold red")
        elif s.match_model.scanning:
            progress = int(s.match_model.scan_progress * 100)
            kept = f"  filtering… {len(s.match_model)} kept so far ({progress}%)"
            label.append(kept, style="bold yellow")
        elif s.match_model.filter_text:
            label.append(f"  {len(s.match_model)} kept by the filter", style="bold yellow")
            if row_filter.note:
                label.append(f" ({row_filter.note})", style="dim")
        if label.plain != self._label_text:
            self._label_text = label.plain
            self.query_one("#matches-label", Label).update(label, layout=False)

    # -- interaction -----------------------------------------------------------------------
    @on(Input.Changed, "#filter")
    def _filter(self, event: Input.Changed) -> None:
        self.state.match_model.set_filter(event.value, now=False)
        table = self.query_one("#matches", VirtualTable)
        table.follow = not event.value
        table.cursor_row = 0
        table.refresh_rows()
        self._render_counters()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.set_focus(self.query_one("#matches", VirtualTable))

    @on(VirtualTable.RowSelected, "#hosts")
    def _host_selected(self, event: VirtualTable.RowSelected) -> None:
        self.app.push_screen(HostDetailScreen(self.state, str(event.row.key)))

    @on(VirtualTable.RowSelected, "#matches")
    def _match_selected(self, event: VirtualTable.RowSelected) -> None:
        match = self.state.match_event(event.row)
        self.app.push_screen(HostDetailScreen(self.state, match.host, match=match))

    def action_stack(self) -> None:
        self.app.push_screen(StackScreen(self.state, self.session))

    def action_edit_as_new(self) -> None:
        self.post_message(RerunRequested(self.state.action, edit=True))

    def action_rerun(self) -> None:
        self.post_message(RerunRequested(self.state.action))

    def action_cancel_run(self) -> None:
        if self.state.finished:
            self.notify("this investigation has already finished")
            return
        if self.state.follow is not None:
            writer = self.state.follow.writer or "another console"
            self.notify(f"this run is written by {writer}: stop it there", severity="warning")
            return
        self.post_message(self.CancelRequested(self.state))

    def action_focus_hosts(self) -> None:
        self.set_focus(self.query_one("#hosts", VirtualTable))

    def action_focus_matches(self) -> None:
        self.set_focus(self.query_one("#matches", VirtualTable))
