"""A one-line question: a file path, or a passphrase (masked) for gpg."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class Prompt(ModalScreen[str | None]):
    """Enter dismisses with the text, Escape with None."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="prompt.cancel")]

    def __init__(
        self, question: str, value: str = "", *, password: bool = False, note: str = ""
    ) -> None:
        super().__init__()
        self.question, self.value, self.password, self.note = question, value, password, note

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(Text(self.question, style="bold"))
            if self.note:
                yield Static(Text(self.note, style="dim"))
            yield Static(Text("Enter: OK · Esc: cancel", style="dim"))
            yield Input(value=self.value, password=self.password, id="prompt-input")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)
