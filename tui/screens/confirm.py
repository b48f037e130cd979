"""The last look before anything reaches the fleet: the exact action and how many hosts.

Focus starts on the launch button and the keys are written under it (Enter launches, Esc
cancels), so nobody has to guess what Enter does; every way out tells the App what was chosen.
Whether the launch retries unreachable hosts until the action expires is shown and can still be
changed here (u), the last thing seen before sending.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Label, Static

from protocol.action import Action
from tui.model import format as fmt
from tui.model import when
from tui.model.provenance import readable_action


class ConfirmLaunch(ModalScreen[str | None]):
    """Dismisses with ``"launch"``, ``"sign-only"`` or None (cancelled); ``until_expiry`` holds
    the retry choice then.

    With ``signatures`` (an envelope from Approvals, or a run to resume) nothing is signed: the
    dialog says Launch, or Resume with ``resume`` (the run's id).
    """

    BINDINGS = [
        Binding("escape", "choose(None)", "Cancel", id="confirm.cancel"),
        Binding("y", "choose('launch')", "Launch", id="confirm.launch"),
        Binding("s", "choose('sign-only')", "Sign only", id="confirm.sign_only", show=False),
        Binding("u", "toggle_until_expiry", "Until expiry", id="confirm.until_expiry", show=False),
    ]

    def __init__(
        self,
        action: Action,
        host_count: int,
        *,
        signatures: int = 0,
        until_expiry: bool = False,
        resume: str | None = None,
    ) -> None:
        super().__init__()
        self.action = action
        self.host_count = host_count
        self.signatures = signatures
        self.until_expiry = until_expiry
        self.resume = resume

    @property
    def signs(self) -> bool:
        """Whether launching adds our signature (not for an envelope that carries some)."""
        return not self.signatures

    def compose(self) -> ComposeResult:
        plural = "host" if self.host_count == 1 else "hosts"
        verb = "Sign and launch" if self.signs else "Launch"
        if self.resume:
            verb = f"Resume run {self.resume}: send it again"
        with Vertical(id="confirm-box"):
            yield Label(
                Text.assemble(
                    f"{verb} on ",
                    (f"{self.host_count} {plural}", "bold"),
                    "? ",
                    ("target ", "dim"),
                    fmt.cell(self.action.target),
                ),
                id="confirm-question",
            )
            if self.resume:
                yield Label(
                    Text(
                        "to its hosts without a final answer, as it was signed; the hosts that "
                        "answered keep their results"
                    )
                )
            elif not self.signs:
                yield Label(
                    Text(
                        f"already signed ({self.signatures} signature(s)): launched as it is, "
                        "without adding yours"
                    )
                )
            yield Checkbox(
                "Retry unreachable hosts until the action expires "
                f"({when.relative(self.action.expire_after)})",
                self.until_expiry,
                id="confirm-until-expiry",
            )
            with VerticalScroll(id="confirm-preview") as preview:
                preview.can_focus = False
                yield Static(fmt.pretty_json(readable_action(self.action.to_dict())))
            keys = "Enter or y: launch · Esc: cancel · u: retry until expiry"
            if self.signs:
                keys += " · s: sign only (save for a second approver)"
            yield Static(Text(keys, style="bold"), id="confirm-keys")
            with Horizontal(id="confirm-buttons"):
                yield Button(
                    "Resume" if self.resume else verb, variant="error", id="confirm-launch"
                )
                if self.signs:
                    yield Button("Sign only", id="confirm-sign-only")
                yield Button("Cancel", id="confirm-cancel")

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#confirm-launch", Button))

    @on(Button.Pressed, "#confirm-launch")
    def _launch(self) -> None:
        self.dismiss("launch")

    @on(Button.Pressed, "#confirm-sign-only")
    def _sign_only(self) -> None:
        self.dismiss("sign-only")

    @on(Button.Pressed, "#confirm-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Checkbox.Changed, "#confirm-until-expiry")
    def _until_expiry(self, event: Checkbox.Changed) -> None:
        self.until_expiry = event.value

    def action_toggle_until_expiry(self) -> None:
        self.query_one("#confirm-until-expiry", Checkbox).toggle()

    def action_choose(self, choice: str | None) -> None:
        if choice == "sign-only" and not self.signs:
            return
        self.dismiss(choice)
