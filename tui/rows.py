"""A row model for big tables: rows kept in arrival order, a filtered and sorted view over them.

The model is plain Python (no Textual) so that filtering, sorting and keyed updates can be tested
and benchmarked on their own; ``tui.vtable.VirtualTable`` renders only the visible window of it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

CellKind = Literal["text", "int", "time", "path", "addr", "list", "bool"]
NUMERIC: frozenset[str] = frozenset({"int", "time"})

#: Above this many rows arriving at once under a sort, re-sort everything instead of inserting.
_RESORT_BATCH = 64


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One table column: a key, a header label, a kind (decides sorting) and a width cap."""

    key: str
    label: str
    kind: CellKind = "text"
    min_width: int = 4
    max_width: int = 60


class Row:
    """One row: display cells (already safe plain text), raw values, and what it stands for."""

    __slots__ = ("_search", "cells", "key", "raw", "ref")

    def __init__(
        self, cells: tuple[str, ...], raw: tuple[Any, ...], key: Any = None, ref: Any = None
    ) -> None:
        self.cells = cells
        self.raw = raw
        self.key = key
        self.ref = ref
        self._search: str | None = None

    @property
    def search(self) -> str:
        """Lower-cased text of the whole row, made on the first filter that needs it."""
        if self._search is None:
            self._search = "\t".join(self.cells).casefold()
        return self._search

    def sort_value(self, column: int, numeric: bool) -> Any:
        value = self.raw[column]
        if numeric:
            return value if isinstance(value, int | float) and not isinstance(value, bool) else None
        return None if value is None else self.cells[column]


class RowModel:
    """All rows plus the current view (filter, then sort); ``version`` counts changes."""

    def __init__(self, columns: Sequence[ColumnSpec]) -> None:
        self.columns = list(columns)
        self.rows: list[Row] = []
        self._by_key: dict[Any, int] = {}
        self._view: list[int] | None = None  # None: every row, in arrival order
        self._view_dirty = False
        self.filter_text = ""
        self.sort_column: int | None = None
        self.sort_reverse = False
        self.version = 0
        self.widths = [max(c.min_width, len(c.label) + 2) for c in self.columns]

    # -- content ---------------------------------------------------------------------------
    def append(self, rows: Sequence[Row]) -> None:
        """Add rows at the end (matches stream in this way); cheap with or without a view."""
        if not rows:
            return
        start = len(self.rows)
        self.rows.extend(rows)
        for row in rows:
            if row.key is not None:
                self._by_key[row.key] = start
            start += 1
        self._measure(rows)
        if self._view is not None and not self._view_dirty:
            new = [i for i in range(len(self.rows) - len(rows), len(self.rows)) if self._keep(i)]
            if self.sort_column is None:
                self._view.extend(new)
            elif len(new) > _RESORT_BATCH or self.sort_reverse:
                self._view.extend(new)
                self._sort_view()
            else:
                for i in new:
                    bisect.insort(self._view, i, key=self._sort_key)
        self.version += 1

    def upsert(self, row: Row) -> None:
        """Replace the row with the same key, or append it (per-host rows update this way)."""
        index = self._by_key.get(row.key)
        if index is None:
            self.append([row])
            return
        self.rows[index] = row
        self._measure((row,))
        if self._view is not None:
            self._view_dirty = True
        self.version += 1

    def get(self, key: Any) -> Row | None:
        index = self._by_key.get(key)
        return None if index is None else self.rows[index]

    def clear(self) -> None:
        self.rows.clear()
        self._by_key.clear()
        self._view = None if not self._active() else []
        self.version += 1

    # -- view ------------------------------------------------------------------------------
    def set_filter(self, text: str) -> None:
        self.filter_text = text.casefold().strip()
        self._rebuild()

    def set_sort(self, column: int | None, reverse: bool = False) -> None:
        self.sort_column, self.sort_reverse = column, reverse
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
        return len(self.rows) if self._view is None else len(self._view)

    def visible(self, position: int) -> Row:
        self._settle()
        return self.rows[position if self._view is None else self._view[position]]

    def visible_rows(self) -> list[Row]:
        self._settle()
        if self._view is None:
            return list(self.rows)
        return [self.rows[i] for i in self._view]

    # -- internals -------------------------------------------------------------------------
    def _active(self) -> bool:
        return bool(self.filter_text) or self.sort_column is not None

    def _keep(self, index: int) -> bool:
        return not self.filter_text or self.filter_text in self.rows[index].search

    def _sort_key(self, index: int) -> tuple[int, Any]:
        assert self.sort_column is not None
        numeric = self.columns[self.sort_column].kind in NUMERIC
        value = self.rows[index].sort_value(self.sort_column, numeric)
        if value is None:
            return (1, 0) if numeric else (1, "")
        return (0, value)

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
        if not self._active():
            self._view = None
        else:
            self._view = [i for i in range(len(self.rows)) if self._keep(i)]
            self._sort_view()
        self.version += 1

    def _settle(self) -> None:
        if self._view_dirty:
            self._rebuild()

    def _measure(self, rows: Sequence[Row]) -> None:
        widths = self.widths
        for column, spec in enumerate(self.columns):
            longest = max(len(row.cells[column]) for row in rows)
            if longest > widths[column]:
                widths[column] = min(spec.max_width, longest)


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
