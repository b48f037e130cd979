"""The last look before anything reaches the fleet: the exact action and how many hosts."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from protocol.action import Action
from tui.model import format as fmt


class ConfirmLaunch(ModalScreen[str | None]):
    """Dismisses with ``"launch"``, ``"sign-only"`` or None."""

    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel", id="confirm.cancel"),
        Binding("y", "choose('launch')", "Launch", id="confirm.launch"),
    ]

    def __init__(self, action: Action, host_count: int, *, signatures: int = 0) -> None:
        super().__init__()
        self.action = action
        self.host_count = host_count
        self.signatures = signatures

    def compose(self) -> ComposeResult:
        plural = "host" if self.host_count == 1 else "hosts"
        with Vertical(id="confirm-box"):
            yield Label(
                Text.assemble(
                    "Sign and launch on ",
                    (f"{self.host_count} {plural}", "bold"),
                    "? ",
                    (f"(target: {self.action.target})", "dim"),
                ),
                id="confirm-question",
            )
            if self.signatures:
                yield Label(Text(f"the envelope already carries {self.signatures} signature(s)"))
            with VerticalScroll(id="confirm-preview"):
                yield Static(fmt.pretty_json(self.action.to_dict()))
            with Horizontal(id="confirm-buttons"):
                yield Button(
                    f"Launch on {self.host_count} {plural}", variant="error", id="confirm-launch"
                )
                yield Button("Sign only (save)", id="confirm-sign-only")
                yield Button("Cancel", id="confirm-cancel")

    def on_mount(self) -> None:
        self.query_one("#confirm-cancel", Button).focus()

    @on(Button.Pressed, "#confirm-launch")
    def _launch(self) -> None:
        self.dismiss("launch")

    @on(Button.Pressed, "#confirm-sign-only")
    def _sign_only(self) -> None:
        self.dismiss("sign-only")

    @on(Button.Pressed, "#confirm-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
