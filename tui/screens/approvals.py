"""Approvals: open an envelope file, add your signature to it, or launch it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Static

from protocol.envelope import Envelope, load_envelope
from protocol.errors import SpyglassError
from tui.model import format as fmt
from tui.model.provenance import readable_action, signer_ids


class ApprovalsScreen(Screen[None]):
    BINDINGS = [
        Binding("ctrl+g", "add_signature", "Add my signature", id="approvals.sign"),
        Binding("ctrl+l", "launch", "Launch", id="approvals.launch"),
        Binding("escape", "app.pop_screen", "Back", id="approvals.back"),
    ]

    @dataclass
    class SignatureRequested(Message):
        """Add the investigator's signature to ``envelope`` and save it back to ``path``; the
        App answers with ``signed``."""

        screen: ApprovalsScreen
        envelope: Envelope
        path: Path

        @property
        def control(self) -> ApprovalsScreen:
            return self.screen

    @dataclass
    class LaunchRequested(Message):
        """Launch ``envelope`` as it is signed, after the confirmation."""

        envelope: Envelope

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
        yield Footer(compact=True, show_command_palette=False)

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
        signers = ", ".join(signer_ids(self.envelope.signatures)) or "nobody"
        self.query_one("#envelope-status", Static).update(
            Text(
                f"{self.path}: action {self.envelope.action.id}, {n} signature(s): {signers}",
                style="bold",
            )
        )
        self.query_one("#envelope-action", Static).update(
            fmt.pretty_json(readable_action(self.envelope.action.to_dict()))
        )

    @on(Button.Pressed, "#approve-sign")
    def action_add_signature(self) -> None:
        if self.envelope is None or self.path is None:
            self.notify("open an envelope file first", severity="warning")
            return
        self.post_message(self.SignatureRequested(self, self.envelope, self.path))

    def signed(self, envelope: Envelope, path: Path) -> None:
        """Show the envelope with the signature just added (and saved to ``path``)."""
        self.envelope = envelope
        self._show()
        self.notify(f"{path}: now {len(envelope.signatures)} signature(s)", title="Signed")

    @on(Button.Pressed, "#approve-launch")
    def action_launch(self) -> None:
        if self.envelope is None:
            self.notify("open an envelope file first", severity="warning")
            return
        if not self.envelope.signatures:
            self.notify("the envelope carries no signature: add yours first", severity="warning")
            return
        self.post_message(self.LaunchRequested(self.envelope))
