"""Stack: the run's matches grouped by one column, the number of hosts per value, rarest first.

The value held by one host out of a thousand is the first thing to look at. The counts follow
the run as it streams (each tick feeds the rows that arrived since the last one, so the cost is
per new row); the ranking is redrawn at most every ``RERANK`` seconds. A value that none of the
previous runs of the same query saw is flagged new. Enter lists the hosts that have a value.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import overload

from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Select, Static

from console.results.stack import Stack, earlier_values, previous_runs, stack_key
from console.results.store import Store
from tui.model.format import safe
from tui.model.rows import ColumnSpec, Entry, RowModel
from tui.model.runstate import RunState
from tui.model.session import Session
from tui.model.when import local_time
from tui.screens.host_detail import HostDetailScreen
from tui.widgets.virtual_table import VirtualTable

TICK = 0.1
"""Seconds between looks at the run's new rows."""
SLICE = 0.008
"""Longest a tick spends counting rows; a backlog is counted over the next ticks."""
BATCH = 2000
RERANK = 0.5
"""Seconds between two rankings while rows stream in (sorting every value costs O(n log n))."""

STACK_COLUMNS = (
    ColumnSpec("hosts", "hosts", "int", 5, 8),
    ColumnSpec("rows", "rows", "int", 5, 9),
    ColumnSpec("new", "new", "text", 3, 3),
    ColumnSpec("value", "value", "text", 10, 200),
)

#: Columns worth stacking first, when the run has them.
PREFERRED = ("sha256", "fingerprint_sha256", "version", "name", "path", "remote_addr", "exe")


def default_column(state: RunState) -> str:
    """The first preferred column that has a value in the rows so far, then any column that
    has one; with no values yet, the first preferred column, then the first column."""
    names = [c.key for c in state.match_model.columns[1:]]
    sample = state.match_model.entries[:1000]
    filled = [n for i, n in enumerate(names, 1) if any(e[0][i] is not None for e in sample)]
    preferred = [p for p in PREFERRED if p in names]
    for name in (*[p for p in preferred if p in filled], *filled, *preferred, *names):
        return name
    return ""


class RankedEntries(Sequence[Entry]):
    """The stack table's rows, made when drawn from ``Stack.ranked_keys`` (``(hosts, rows,
    value)``): re-ranking 100,000 values then costs one sort, not 100,000 new rows."""

    def __init__(
        self, ranked: list[tuple[int, int, str]], seen_before: set[str] | None, kind: str
    ) -> None:
        self.ranked, self.seen_before, self.time = ranked, seen_before, kind == "time"

    def __len__(self) -> int:
        return len(self.ranked)

    @overload
    def __getitem__(self, index: int) -> Entry: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Entry]: ...
    def __getitem__(self, index: int | slice) -> Entry | Sequence[Entry]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        hosts, rows, value = self.ranked[index]
        seen = self.seen_before
        new = "" if seen is None or value in seen else "new"
        shown = local_time(int(value)) if self.time and value.isdigit() else value
        return ((hosts, rows, new, shown), value, None)

    def position(self, value: str) -> int | None:
        for i, ranked in enumerate(self.ranked):
            if ranked[2] == value:
                return i
        return None


class StackScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="stack.back"),
        Binding("b", "focus_by", "By column", id="stack.by"),
    ]

    def __init__(self, state: RunState, session: Session | None = None, column: str = "") -> None:
        super().__init__()
        self.state = state
        self.session = session
        names = [c.key for c in state.match_model.columns[1:]]
        self.columns = names
        if column not in names:
            column = default_column(state)
        self.model = RowModel(STACK_COLUMNS)
        self.stack = Stack(column)
        self.seen_before: set[str] | None = None
        self.previous = 0
        self.comparing = False
        self._fed = 0
        self._ranked_version = -1
        self._ranked_at = 0.0

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="stack-by-row"):
            yield Label("Stack by", classes="row-label")
            yield Select(
                [(c, c) for c in self.columns],
                value=self.stack.column,
                allow_blank=False,
                id="stack-by",
            )
        yield Static("", id="stack-status")
        yield VirtualTable(
            self.model,
            styles_by_value={"new": Style(color="yellow", bold=True)},
            id="stack-table",
        )
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = "stack"
        self._start(self.stack.column)
        self.set_focus(self.query_one("#stack-table", VirtualTable))
        self._loop()

    def _loop(self) -> None:
        """One timer at a time: soon while rows wait to be counted, every ``TICK`` otherwise."""
        self.tick()
        if self.is_attached:
            self.set_timer(0.01 if self._backlog else TICK, self._loop)

    def _start(self, column: str) -> None:
        """Count ``column`` from the first row; what earlier runs saw of it is read in a thread
        (their rows may be many), and flags values new once it is known."""
        self.stack = Stack(column)
        self._fed = 0
        self._ranked_version = -1
        self.seen_before, self.previous, self.comparing = None, 0, False
        if self.session is not None and column:
            try:
                earlier = previous_runs(
                    self.session.store,
                    self.state.action.get("operations"),
                    self.state.started,
                    exclude=self.state.id,
                )
            except Exception as err:  # a broken store leaves the counts, without "new"
                self.notify(f"earlier runs not compared: {err}", severity="warning")
                earlier = []
            self.previous = len(earlier)
            if earlier:
                self.comparing = True
                self._read_earlier(self.session.store_path, earlier, column)
        self.tick(force=True)

    @work(thread=True, exclusive=True, group="stack-earlier", exit_on_error=False)
    def _read_earlier(self, store_path: Path, runs: list[str], column: str) -> None:
        store = Store(store_path)  # its own connection: this is another thread
        try:
            seen = earlier_values(store, runs, column)
        finally:
            store.close()
        self.app.call_from_thread(self._compared, column, seen)

    def _compared(self, column: str, seen: set[str]) -> None:
        if column == self.stack.column:
            self.seen_before, self.comparing = seen, False
            self._ranked_version = -1
            self.tick(force=True)

    def feed(self, budget: float = SLICE) -> bool:
        """Count rows that arrived since the last call, for about ``budget`` seconds; True if
        rows remain to be counted."""
        entries = self.state.match_model.entries
        column = 1 + self.columns.index(self.stack.column)
        deadline = time.perf_counter() + budget
        while self._fed < len(entries):
            stop = min(len(entries), self._fed + BATCH)
            self.stack.add_pairs((e[0][0], e[0][column]) for e in entries[self._fed : stop])
            self._fed = stop
            if time.perf_counter() > deadline:
                break
        return self._fed < len(entries)

    _backlog = False
    _rank_cost = 0.0

    def tick(self, force: bool = False) -> None:
        """Count what arrived (within ``SLICE``), and re-rank at most every ``RERANK`` seconds
        (``force``: now)."""
        if not self.stack.column:
            return
        self._backlog = self.feed()
        now = time.monotonic()
        if self.stack.version == self._ranked_version:
            return
        if not force and now - self._ranked_at < max(RERANK, 10 * self._rank_cost):
            return  # ranking 100,000 values costs ~100 ms: then it happens at most every 1 s
        self._ranked_version, self._ranked_at = self.stack.version, now
        table = self.query_one("#stack-table", VirtualTable)
        selected = table.current_row.key if table.current_row is not None else None
        kind = self.state.match_model.columns[1 + self.columns.index(self.stack.column)].kind
        entries = RankedEntries(self.stack.ranked_keys(), self.seen_before, kind)
        self.model.replace(entries)
        self._rank_cost = time.monotonic() - now
        position = entries.position(selected) if selected is not None else None
        if position is not None and self.model.sort_column is None:
            table.cursor_row = position
        table.refresh_rows()
        self._status()

    def _status(self) -> None:
        s = self.stack
        parts: list[tuple[str, str] | str] = [
            (f"{len(s)} values", "bold"),
            f" of {s.column} in {self._fed} rows, rarest first",
        ]
        if s.missing:
            parts.append((f"  ({s.missing} rows without one)", "dim"))
        if self.comparing:
            parts.append((f"  reading the {self.previous} previous run(s)…", "dim"))
        elif self.seen_before is not None:
            parts.append(("  new: not seen in the ", "dim"))
            parts.append(f"{self.previous} previous run(s) of the same query")
        elif self.session is not None:
            parts.append(("  no previous run of the same query to compare with", "dim"))
        if not self.state.finished:
            parts.append(("  (live)", "cyan"))
        self.query_one("#stack-status", Static).update(Text.assemble(*parts))

    @on(Select.Changed, "#stack-by")
    def _by_changed(self, event: Select.Changed) -> None:
        if str(event.value) != self.stack.column:
            self._start(str(event.value))

    def action_focus_by(self) -> None:
        self.set_focus(self.query_one("#stack-by", Select))

    @on(VirtualTable.RowSelected, "#stack-table")
    def _drill(self, event: VirtualTable.RowSelected) -> None:
        value = str(event.row.key)
        self.app.push_screen(StackHostsScreen(self.state, self.stack, value))


HOST_COLUMNS = (
    ColumnSpec("host", "host", "text", 8, 40),
    ColumnSpec("rows", "rows", "int", 5, 9),
    ColumnSpec("status", "status", "text", 8, 16),
)


class StackHostsScreen(Screen[None]):
    """The hosts that have one value: Enter opens a host."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="stack_hosts.back")]

    def __init__(self, state: RunState, stack: Stack, value: str) -> None:
        super().__init__()
        self.state, self.value, self.column = state, value, stack.column
        self.model = RowModel(HOST_COLUMNS)
        index = 1 + [c.key for c in state.match_model.columns[1:]].index(stack.column)
        rows: dict[str, int] = dict.fromkeys(stack.hosts_of(value), 0)
        for raw, _key, _ref in state.match_model.entries:
            if stack_key(raw[index]) == value:
                rows[raw[0]] = rows.get(raw[0], 0) + 1
        entries = []
        for host in sorted(rows):
            info = state.hosts.get(host)
            entries.append(((host, rows[host], info.status if info else "?"), host, None))
        self.model.extend(entries)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(
            Text.assemble(
                (f"{len(self.model)} host(s)", "bold"),
                f" with {self.column} = ",
                safe(self.value, "bold"),
            ),
            id="stack-hosts-status",
        )
        yield VirtualTable(self.model, id="stack-hosts")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"stack: {self.column}"
        table = self.query_one("#stack-hosts", VirtualTable)
        table.refresh_rows()
        self.set_focus(table)

    @on(VirtualTable.RowSelected, "#stack-hosts")
    def _open(self, event: VirtualTable.RowSelected) -> None:
        self.app.push_screen(HostDetailScreen(self.state, str(event.row.key)))
