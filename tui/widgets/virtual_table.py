"""VirtualTable: a keyboard-driven table that renders only the rows on screen.

Textual's DataTable measures every cell of every added row (about 250 µs a row, STACK-NOTES §3),
so 100,000 matches would take half a minute. This widget draws lines from a ``RowModel`` on
demand (the Line API), so adding rows costs only the model's bookkeeping, and it never parses
markup: cells go to the terminal as plain segments.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.model.rows import Row, RowModel


class VirtualTable(ScrollView, can_focus=True):
    """Header line plus a window of rows; ``refresh_rows()`` after changing the model."""

    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last (follow)", show=False),
        Binding("enter", "select", "Open", id="table.open"),
        Binding("s", "sort", "Sort", id="table.sort", show=False),  # in the help (f1)
    ]
    COMPONENT_CLASSES = {
        "virtual-table--header",
        "virtual-table--cursor",
        "virtual-table--sorted",
    }
    DEFAULT_CSS = """
    VirtualTable { height: 1fr; }
    VirtualTable > .virtual-table--header { text-style: bold; background: $panel; }
    VirtualTable > .virtual-table--sorted { text-style: bold underline; background: $panel; }
    VirtualTable > .virtual-table--cursor { background: $block-cursor-blurred-background; }
    VirtualTable:focus > .virtual-table--cursor {
        background: $block-cursor-background; color: $block-cursor-foreground;
    }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True, repaint=False)
    cursor_column: reactive[int] = reactive(0, repaint=False)

    @dataclass
    class RowSelected(Message):
        """Enter (or a click on the highlighted row) on a row."""

        table: VirtualTable
        row: Row

        @property
        def control(self) -> VirtualTable:
            return self.table

    def __init__(
        self,
        model: RowModel,
        *,
        follow: bool = False,
        styles_by_value: dict[str, Style] | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.model = model
        self.follow = follow
        self.styles_by_value = styles_by_value or {}
        self.rendered_rows = 0
        """Row count of the model when its last row was last drawn (the benchmark reads it)."""
        self._seen_version = -1

    # -- model changes ---------------------------------------------------------------------
    def refresh_rows(self) -> None:
        """Pick up model changes: resize the virtual area, follow the tail, repaint."""
        if self.model.version == self._seen_version:
            return
        self._seen_version = self.model.version
        count = len(self.model)
        self._set_virtual_size(Size(self._total_width(), count + 1))
        if self.follow and count:
            self.cursor_row = count - 1
            self.scroll_to(
                y=max(0, count + 1 - self.scrollable_content_region.height),
                animate=False,
                immediate=True,
            )
        elif self.cursor_row >= count:
            self.cursor_row = max(0, count - 1)
        self.refresh()

    def _set_virtual_size(self, size: Size) -> None:
        """Like assigning ``virtual_size``, without a layout of the whole screen when no
        scrollbar appears or goes: the table's own size does not depend on its content, so
        updating the scroll range is enough (a layout per tick costs 10-30 ms at 160x50)."""
        old = self.virtual_size
        if size == old:
            return
        width, height = self.container_size
        same_bars = (
            bool(self.container_size)
            and (old.width > width) == (size.width > width)
            and (old.height > height) == (size.height > height)
        )
        if same_bars:
            self.set_reactive(VirtualTable.virtual_size, size)
            self._scroll_update(size)
        else:
            self.virtual_size = size

    @property
    def current_row(self) -> Row | None:
        if 0 <= self.cursor_row < len(self.model):
            return self.model.visible(self.cursor_row)
        return None

    def _total_width(self) -> int:
        return sum(w + 1 for w in self.model.widths)

    # -- drawing ---------------------------------------------------------------------------
    def render_lines(self, crop: Region) -> list[Strip]:
        # Rows are formatted when first drawn: measure the whole visible window before drawing
        # any line of it, so every line of a frame uses the same column widths.
        top = int(self.scroll_offset.y)
        if self.model.measure_window(top, top + self.scrollable_content_region.height):
            self._set_virtual_size(Size(self._total_width(), self.virtual_size.height))
            self.refresh()  # lines outside ``crop`` were drawn with the old widths
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        scroll_x, scroll_y = self.scroll_offset
        if y == 0:
            strip = self._header()
        else:
            index = scroll_y + y - 1
            if index >= len(self.model):
                return Strip.blank(width, self.rich_style)
            strip = self._row(index)
            if index == len(self.model) - 1:
                self.rendered_rows = len(self.model)
        return strip.crop(scroll_x, scroll_x + width).extend_cell_length(width, self.rich_style)

    def _header(self) -> Strip:
        base = self.get_component_rich_style("virtual-table--header")
        sorted_style = self.get_component_rich_style("virtual-table--sorted")
        segments = []
        for column, (spec, w) in enumerate(zip(self.model.columns, self.model.widths, strict=True)):
            label = spec.label
            style = base
            if self.model.sort_column == column:
                label += " ▼" if self.model.sort_reverse else " ▲"
                style = sorted_style
            if column == self.cursor_column and self.has_focus:
                style = style + Style(underline=True)
            segments.append(Segment(set_cell_size(label, w), style))
            segments.append(Segment(" ", base))
        return Strip(segments)

    def _row(self, index: int) -> Strip:
        model = self.model
        cells = model.cells(model.index_of(index))
        base = self.rich_style
        if index == self.cursor_row:
            base = base + self.get_component_rich_style("virtual-table--cursor")
        segments = []
        for text, w in zip(cells, model.widths, strict=True):
            style = self.styles_by_value.get(text)
            segments.append(Segment(set_cell_size(text, w), base + style if style else base))
            segments.append(Segment(" ", base))
        return Strip(segments)

    # -- cursor ----------------------------------------------------------------------------
    def watch_cursor_row(self, old: int, new: int) -> None:
        self._refresh_line(old)
        self._refresh_line(new)
        self._scroll_to_cursor()

    def watch_cursor_column(self) -> None:
        self.refresh()

    def _refresh_line(self, index: int) -> None:
        y = index - self.scroll_offset.y + 1
        if 1 <= y < self.size.height:
            self.refresh_line(y)

    def _scroll_to_cursor(self) -> None:
        page = max(1, self.scrollable_content_region.height - 1)
        top = self.scroll_offset.y
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + page:
            self.scroll_to(y=self.cursor_row - page + 1, animate=False, immediate=True)

    def _move(self, delta: int) -> None:
        count = len(self.model)
        if count:
            self.cursor_row = min(count - 1, max(0, self.cursor_row + delta))
        self.follow = count > 0 and self.cursor_row == count - 1

    def action_cursor_up(self) -> None:
        self.follow = False
        self._move(-1)

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_page_up(self) -> None:
        self.follow = False
        self._move(-max(1, self.size.height - 2))

    def action_page_down(self) -> None:
        self._move(max(1, self.size.height - 2))

    def action_first(self) -> None:
        self.follow = False
        self.cursor_row = 0

    def action_last(self) -> None:
        self.follow = True
        self.cursor_row = max(0, len(self.model) - 1)

    def action_scroll_left(self) -> None:  # type: ignore[override]
        self.cursor_column = max(0, self.cursor_column - 1)

    def action_scroll_right(self) -> None:  # type: ignore[override]
        self.cursor_column = min(len(self.model.columns) - 1, self.cursor_column + 1)

    def key_left(self) -> None:
        self.action_scroll_left()

    def key_right(self) -> None:
        self.action_scroll_right()

    def action_sort(self) -> None:
        """Sort by the highlighted column (left/right choose it): ascending, descending, off."""
        self.sort_by(self.cursor_column)

    def sort_by(self, column: int) -> None:
        self.model.toggle_sort(column)
        self.follow = False
        self.cursor_row = 0
        self.refresh_rows()
        self.refresh()

    def action_select(self) -> None:
        if (row := self.current_row) is not None:
            self.post_message(self.RowSelected(self, row))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            x = offset.x + self.scroll_offset.x
            for column, w in enumerate(self.model.widths):
                if x < w + 1:
                    self.cursor_column = column
                    self.sort_by(column)
                    return
                x -= w + 1
            return
        index = self.scroll_offset.y + offset.y - 1
        if 0 <= index < len(self.model):
            if index == self.cursor_row:
                self.action_select()
            self.follow = False
            self.cursor_row = index
