"""A row model for big tables: rows kept in arrival order, a filtered and sorted view over them.

The model is plain Python (no Textual) so that filtering, sorting and keyed updates can be tested
and benchmarked on their own; ``tui.widgets.virtual_table.VirtualTable`` renders only the visible
window of it.

Rows are stored as plain tuples ``(raw, key, ref)`` (an ``Entry``) and their display cells are
made on demand (``format``), because a streaming table holds 100,000 of them:

- adding a row costs one small tuple, with no formatting: only the rows that are drawn,
  filtered or sorted are ever formatted;
- tuples of strings and numbers are not tracked by the garbage collector (CPython untracks
  them in the first collection that sees them), so the rows add nothing to a full collection.
  One object per row (a ``Row`` instance) would add 100,000 objects to scan, which on this
  hardware makes a full collection 150 ms instead of 60.

``Row`` is the value handed out (``visible``, ``get``, ``row``): made when asked for.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modules.base import ColumnKind
from tui.model import format as fmt
from tui.model.filter import RowFilter, parse_filter

NUMERIC: frozenset[str] = frozenset({"int", "time"})

#: Above this many rows arriving at once under a sort, re-sort everything instead of inserting.
_RESORT_BATCH = 64
#: Rows a slice-by-slice filter checks between two looks at the clock.
_SCAN_BATCH = 1000

Entry = tuple[tuple[Any, ...], Any, Any]
"""How a model stores a row: ``(raw values, key, ref)``."""


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One table column: a key, a header label, a kind (decides sorting) and a width cap."""

    key: str
    label: str
    kind: ColumnKind = "text"
    min_width: int = 4
    max_width: int = 60


@dataclass(frozen=True, slots=True)
class Row:
    """One row: display cells (safe plain text), raw values, its key and what it stands for."""

    cells: tuple[str, ...]
    raw: tuple[Any, ...]
    key: Any = None
    ref: Any = None


class RowModel:
    """All rows plus the current view (filter, then sort); ``version`` counts changes."""

    def __init__(
        self,
        columns: Sequence[ColumnSpec],
        format: Callable[[Sequence[Any]], tuple[str, ...]] | None = None,
    ) -> None:
        self.columns = list(columns)
        self.format = format or fmt.row_formatter([c.kind for c in self.columns])
        """Raw values to display cells; by default one ``tui.model.format.formatter`` per kind."""
        self._entries: list[Entry] = []
        self._cells: list[tuple[str, ...] | None] = []  # None: not formatted yet
        self._search: list[str | None] = []  # the row's cells joined, made by the first filter
        self._column_format = [fmt.formatter(c.kind) for c in self.columns]
        self.row_filter = RowFilter("")
        self._by_key: dict[Any, int] | None = {}  # None: not indexed since ``replace``
        self._view: list[int] | None = None  # None: every row, in arrival order
        self._view_dirty = False
        self._scanned: int | None = None
        """While a filter is applied in slices (``scan``): the rows checked so far."""
        self.filter_text = ""
        self.sort_column: int | None = None
        self.sort_reverse = False
        self.version = 0
        self.widths = [max(c.min_width, len(c.label) + 2) for c in self.columns]
        """Column widths: wide enough for every row formatted so far (rows are measured when
        first drawn, see ``measure_window``), so they only grow."""

    # -- content ---------------------------------------------------------------------------
    def append(self, rows: Sequence[Row]) -> None:
        """Add rows whose cells are already made (small tables)."""
        if rows:
            self._add([(r.raw, r.key, r.ref) for r in rows], [r.cells for r in rows])

    def extend(self, entries: Sequence[Entry]) -> None:
        """Add ``(raw, key, ref)`` entries at the end, formatted when first needed (matches
        stream in this way: the cost is one list extend, with or without a view)."""
        if entries:
            self._add(entries, None)

    def _add(self, entries: Sequence[Entry], cells: list[tuple[str, ...]] | None) -> None:
        if not isinstance(self._entries, list):  # rows given by ``replace``: now a real list
            self._entries = list(self._entries)
        start = len(self._entries)
        self._entries.extend(entries)
        if cells is None:
            self._cells.extend([None] * len(entries))
        else:
            self._cells.extend(cells)
            self._measure(cells)
        self._search.extend([None] * len(entries))
        if self._by_key is not None:
            for index, entry in enumerate(entries, start):
                if entry[1] is not None:
                    self._by_key[entry[1]] = index
        if self._view is not None and not self._view_dirty and self._scanned is None:
            new = [i for i in range(start, len(self._entries)) if self._keep(i)]
            if self.sort_column is None:
                self._view.extend(new)
            elif len(new) > _RESORT_BATCH or self.sort_reverse:
                self._view.extend(new)
                self._sort_view()
            else:
                for i in new:
                    bisect.insort(self._view, i, key=self._sort_key)
        self.version += 1

    def upsert(self, row: Row | Entry) -> None:
        """Replace the row with the same key, or append it (per-host rows update this way)."""
        entry: Entry = (row.raw, row.key, row.ref) if isinstance(row, Row) else row
        cells = row.cells if isinstance(row, Row) else None
        index = self._keys().get(entry[1])
        if index is None:
            self._add([entry], None if cells is None else [cells])
            return
        if not isinstance(self._entries, list):
            self._entries = list(self._entries)
        self._entries[index] = entry
        self._cells[index] = cells
        self._search[index] = None
        if cells is not None:
            self._measure([cells])
        if self._view is not None:
            self._view_dirty = True
        self.version += 1

    def remove(self, drop: Callable[[Entry], bool]) -> int:
        """Remove the rows ``drop`` is true of (a host's rows that a new answer replaces: rare,
        so one pass over every row is fine); returns how many went."""
        keep = [i for i, entry in enumerate(self._entries) if not drop(entry)]
        removed = len(self._entries) - len(keep)
        if removed:
            self._entries = [self._entries[i] for i in keep]
            self._cells = [self._cells[i] for i in keep]
            self._search = [self._search[i] for i in keep]
            self._by_key = None
            self._rebuild()
        return removed

    def get(self, key: Any) -> Row | None:
        index = self._keys().get(key)
        return None if index is None else self.row(index)

    def key_index(self, key: Any) -> int | None:
        """Arrival index of the row with ``key``."""
        return self._keys().get(key)

    def _keys(self) -> dict[Any, int]:
        if self._by_key is None:
            self._by_key = {e[1]: i for i, e in enumerate(self._entries) if e[1] is not None}
        return self._by_key

    def replace(self, entries: Sequence[Entry]) -> None:
        """Show ``entries`` instead of every current row. ``entries`` may be a read-only
        sequence that makes each entry when asked (the stack view's 100,000 ranked values):
        nothing is copied, and keys are indexed only if one is looked up."""
        self._entries = entries  # type: ignore[assignment]
        self._cells = [None] * len(entries)
        self._search = [None] * len(entries)
        self._by_key = None
        self._rebuild()

    def row(self, index: int) -> Row:
        """The row at ``index`` in arrival order."""
        raw, key, ref = self._entries[index]
        return Row(self.cells(index), raw, key, ref)

    @property
    def rows(self) -> list[Row]:
        """Every row in arrival order (formats them all: for small tables and tests)."""
        return [self.row(i) for i in range(len(self._entries))]

    @property
    def entries(self) -> list[Entry]:
        """Every ``(raw, key, ref)`` in arrival order, unformatted (read only)."""
        return self._entries

    def cells(self, index: int) -> tuple[str, ...]:
        cells = self._cells[index]
        if cells is None:
            cells = self._cells[index] = self.format(self._entries[index][0])
        return cells

    def clear(self) -> None:
        self._entries = []
        self._cells.clear()
        self._search.clear()
        self._by_key = {}
        self._view = None if not self._active() else []
        self.version += 1

    @property
    def total(self) -> int:
        """Rows in the model, whatever the filter."""
        return len(self._entries)

    # -- view ------------------------------------------------------------------------------
    def set_filter(self, text: str, *, now: bool = True) -> RowFilter:
        """Keep only the rows ``text`` matches (``tui.model.filter``); returns the parsed filter
        (its ``error`` says why nothing is filtered). With ``now=False`` the rows are checked by
        later ``scan`` calls, a slice at a time, so a filter over 100,000 rows never freezes
        the screen (a table of up to 5,000 rows is filtered at once); the view holds the rows
        kept so far meanwhile."""
        self.row_filter = parse_filter(text, [c.key for c in self.columns])
        self.filter_text = self.row_filter.text if self.row_filter.active else ""
        if now or not self.filter_text or len(self._entries) <= _SCAN_BATCH * 5:
            self._rebuild()
        else:
            self._view_dirty = False
            self._view, self._scanned = [], 0
            self.version += 1
        return self.row_filter

    @property
    def scanning(self) -> bool:
        return self._scanned is not None

    @property
    def scan_progress(self) -> float:
        """The share of the rows a slice-by-slice filter has checked (1.0 when done)."""
        if self._scanned is None or not self._entries:
            return 1.0
        return self._scanned / len(self._entries)

    def scan(self, budget: float) -> bool:
        """Check rows against the filter for about ``budget`` seconds; True if rows remain."""
        if self._scanned is None or self._view is None:
            return False
        deadline = time.perf_counter() + budget
        keep, view = self._keep, self._view
        while self._scanned < len(self._entries):
            stop = min(len(self._entries), self._scanned + _SCAN_BATCH)
            view.extend([i for i in range(self._scanned, stop) if keep(i)])
            self._scanned = stop
            if time.perf_counter() > deadline:
                break
        else:
            self._scanned = None
            self._sort_view()
        self.version += 1
        return self._scanned is not None

    def set_sort(self, column: int | None, reverse: bool = False) -> None:
        self.sort_column, self.sort_reverse = column, reverse
        if self._view is not None and self.filter_text and not self._view_dirty:
            if self._scanned is None:  # the same rows: only their order changes
                self._view.sort()
                self._sort_view()
            self.version += 1
            return
        self._rebuild()

    def toggle_sort(self, column: int) -> None:
        """First press sorts ascending, the second descending, the third restores arrival order."""
        if self.sort_column != column:
            self.set_sort(column)
        elif not self.sort_reverse:
            self.set_sort(column, reverse=True)
        else:
            self.set_sort(None)

    def __len__(self) -> int:
        self._settle()
        return len(self._entries) if self._view is None else len(self._view)

    def index_of(self, position: int) -> int:
        """Arrival index of the row shown at ``position``."""
        self._settle()
        return position if self._view is None else self._view[position]

    def visible(self, position: int) -> Row:
        return self.row(self.index_of(position))

    def visible_rows(self) -> list[Row]:
        self._settle()
        indexes = range(len(self._entries)) if self._view is None else self._view
        return [self.row(i) for i in indexes]

    def measure_window(self, start: int, stop: int) -> bool:
        """Format and measure the visible rows ``start:stop``; True if a column grew."""
        self._settle()
        stop = min(stop, len(self))
        if start >= stop:
            return False
        indexes = range(start, stop) if self._view is None else self._view[start:stop]
        return self._measure([self.cells(i) for i in indexes])

    # -- internals -------------------------------------------------------------------------
    def _active(self) -> bool:
        return bool(self.filter_text) or self.sort_column is not None

    def _keep(self, index: int) -> bool:
        if not self.filter_text:
            return True
        for term in self.row_filter.terms:
            column = term.column
            if column is None:
                text = self._search[index]
                if text is None:
                    text = self._search[index] = "\t".join(self.cells(index))
            else:
                cells = self._cells[index]
                # One column formatted, not the whole row: a scoped filter over 100,000 rows.
                text = (
                    cells[column]
                    if cells is not None
                    else self._column_format[column](self._entries[index][0][column])
                )
            if not term.holds(text):
                return False
        return True

    def _sort_key(self, index: int) -> tuple[int, Any]:
        column = self.sort_column
        assert column is not None
        value = self._entries[index][0][column]
        if self.columns[column].kind in NUMERIC:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return (0, value)
            return (1, 0)
        if value is None:
            return (1, "")
        return (0, self.cells(index)[column])

    def _sort_view(self) -> None:
        assert self._view is not None
        if self.sort_column is not None:
            # Missing values sort last in both directions.
            keyed = [(self._sort_key(i), i) for i in self._view]
            present = [(k, i) for k, i in keyed if k[0] == 0]
            missing = [i for k, i in keyed if k[0] == 1]
            present.sort(key=lambda pair: pair[0], reverse=self.sort_reverse)
            self._view = [i for _, i in present] + missing

    def _rebuild(self) -> None:
        self._view_dirty = False
        self._scanned = None
        if not self._active():
            self._view = None
        else:
            self._view = [i for i in range(len(self._entries)) if self._keep(i)]
            self._sort_view()
        self.version += 1

    def _settle(self) -> None:
        if self._view_dirty:
            self._rebuild()

    def _measure(self, rows: Sequence[tuple[str, ...]]) -> bool:
        if not rows:
            return False
        grew = False
        widths = self.widths
        for column, spec in enumerate(self.columns):
            longest = max(len(cells[column]) for cells in rows)
            if longest > widths[column] and widths[column] < spec.max_width:
                widths[column] = min(spec.max_width, longest)
                grew = True
        if grew:
            self.version += 1
        return grew


def make_row(
    columns: Sequence[ColumnSpec],
    values: Sequence[Any],
    fmt: Callable[[Any, str], str],
    key: Any = None,
    ref: Any = None,
) -> Row:
    """A row from raw values: ``fmt(value, kind)`` makes each display cell."""
    cells = tuple(fmt(v, c.kind) for v, c in zip(values, columns, strict=True))
    return Row(cells, tuple(values), key=key, ref=ref)
