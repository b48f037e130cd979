"""Approvals: open an envelope file, add your signature to it, or launch it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Static

from protocol.envelope import Envelope, load_envelope
from protocol.errors import SpyglassError
from tui.model import format as fmt

if TYPE_CHECKING:
    from tui.app import SpyglassApp


class ApprovalsScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+g", "add_signature", "Add my signature", id="approvals.sign"),
        Binding("ctrl+l", "launch", "Launch", id="approvals.launch"),
        Binding("escape", "app.pop_screen", "Back", id="approvals.back"),
    ]

    app: SpyglassApp

    def __init__(self) -> None:
        super().__init__()
        self.envelope: Envelope | None = None
        self.path: Path | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label(
            "Envelope file (from Sign only, or `spyglass run ... --sign-only FILE`)",
            classes="section",
        )
        yield Input(placeholder="path/to/action.json, then Enter", id="envelope-path")
        yield Static("", id="envelope-status")
        with Horizontal(id="approvals-buttons"):
            yield Button("Add my signature", id="approve-sign")
            yield Button("Launch", variant="error", id="approve-launch")
        with VerticalScroll(id="envelope-box"):
            yield Static("", id="envelope-action")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "approvals"
        self.query_one("#envelope-path", Input).focus()

    @on(Input.Submitted, "#envelope-path")
    def _open(self, event: Input.Submitted) -> None:
        self.open(Path(event.value.strip()))

    def open(self, path: Path) -> None:
        status = self.query_one("#envelope-status", Static)
        try:
            envelope = load_envelope(path)
        except SpyglassError as err:
            self.envelope = None
            status.update(Text(str(err), style="bold red"))
            self.query_one("#envelope-action", Static).update("")
            return
        self.envelope, self.path = envelope, path
        self._show()

    def _show(self) -> None:
        assert self.envelope is not None
        n = len(self.envelope.signatures)
        self.query_one("#envelope-status", Static).update(
            Text(f"{self.path}: action {self.envelope.action.id}, {n} signature(s)", style="bold")
        )
        self.query_one("#envelope-action", Static).update(
            fmt.pretty_json(self.envelope.action.to_dict())
        )

    @on(Button.Pressed, "#approve-sign")
    def action_add_signature(self) -> None:
        if self.envelope is None or self.path is None:
            self.notify("open an envelope file first", severity="warning")
            return
        self._add_signature(self.envelope, self.path)

    @work(group="sign", exclusive=True, exit_on_error=False)
    async def _add_signature(self, envelope: Envelope, path: Path) -> None:
        signed = await self.app.sign_and_save(envelope, path)
        if signed is None:
            return
        self.envelope = signed
        self._show()
        self.notify(f"{path}: now {len(signed.signatures)} signature(s)", title="Signed")

    @on(Button.Pressed, "#approve-launch")
    def action_launch(self) -> None:
        if self.envelope is None:
            self.notify("open an envelope file first", severity="warning")
            return
        if not self.envelope.signatures:
            self.notify("the envelope carries no signature: add yours first", severity="warning")
            return
        self.app.confirm_and_launch(self.envelope.action, self.envelope)
