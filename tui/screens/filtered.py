"""What the screens built around a filter and a main table share: ``/`` focuses the filter
(unless an input has the focus, where it is typed), Esc leaves an input for the main table, then
leaves the screen (never below compose)."""

from __future__ import annotations

from textual.actions import SkipAction
from textual.screen import Screen
from textual.widgets import Input

from tui.widgets.virtual_table import VirtualTable


class FilteredScreen(Screen[None]):
    FILTER = "#filter"
    """Selector of the screen's filter input."""
    MAIN = "#matches"
    """Selector of the table Esc returns to from an input."""

    def action_focus_filter(self) -> None:
        if isinstance(self.focused, Input):
            raise SkipAction()  # a / typed in an input is part of it
        self.set_focus(self.query_one(self.FILTER, Input))

    def action_back(self) -> None:
        if isinstance(self.focused, Input):
            self.set_focus(self.query_one(self.MAIN, VirtualTable))
            return
        if len(self.app.screen_stack) > 2:  # never below compose
            self.app.pop_screen()
