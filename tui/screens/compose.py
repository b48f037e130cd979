"""Compose: pick a module, fill its generated form, target hosts, set the expiry, launch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Select, Static

from console.actions.compose import compose, parse_duration
from modules.registry import all_modules, get_module
from protocol.action import Action
from protocol.errors import SpyglassError
from tui.model import format as fmt
from tui.model.session import Session
from tui.widgets.param_form import ParamForm

MAX_LISTED_HOSTS = 200


class ComposeScreen(Screen[None]):
    """The first screen: everything needed to write one action."""

    BINDINGS = [
        Binding("ctrl+l", "launch", "Sign & launch", id="compose.launch"),
        Binding("ctrl+s", "sign_only", "Sign only", id="compose.sign_only"),
        Binding("ctrl+t", "focus_target", "Target", id="compose.target"),
    ]

    @dataclass
    class LaunchRequested(Message):
        """Sign ``action`` and launch it, after the confirmation."""

        action: Action

    @dataclass
    class SignOnlyRequested(Message):
        """Sign ``action`` and save the envelope for a second approver."""

        action: Action

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.module = all_modules()[0]
        self.params: dict[str, Any] = {}
        self.param_errors: dict[str, str] = {"*": "loading"}
        self.target_error: str | None = None
        self.target_count = 0
        self.expire_error: str | None = None
        self.action: Action | None = None
        self.problem: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="compose-body"):
            with VerticalScroll(id="compose-left"):
                yield Label("Module", classes="section")
                yield Select(
                    [(f"{m.name} — {m.summary}", m.name) for m in all_modules()],
                    value=self.module.name,
                    allow_blank=False,
                    id="module",
                )
                yield Static(Text(self.module.summary), id="module-summary")
                yield ParamForm(self.module, id="form")
            with Vertical(id="compose-right"):
                yield Label("Target", classes="section")
                yield Input(
                    value="all", placeholder="e.g. env=prod and role in (web, db)", id="target"
                )
                yield Static("", id="target-status")
                yield Static("", id="target-hosts")
                with Horizontal(id="compose-meta"):
                    with Vertical():
                        yield Label("Expires after", classes="section")
                        yield Input(value="5m", id="expire")
                    with Vertical():
                        yield Label("Name", classes="section")
                        yield Input(placeholder="default: MODULE on TARGET", id="action-name")
                yield Static("", id="compose-status")
                yield Label("Action preview (what you sign)", classes="section")
                with VerticalScroll(id="preview-box"):
                    yield Static("", id="preview")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "spyglass"
        self.sub_title = "compose"
        self._update_target()
        self._focus_first_param()

    def _focus_first_param(self) -> None:
        form = self.query_one(ParamForm)
        for widget in form.query("Input, Switch, Select"):
            widget.focus()
            return

    # -- reacting --------------------------------------------------------------------------
    @on(Select.Changed, "#module")
    async def _module_changed(self, event: Select.Changed) -> None:
        module = get_module(str(event.value))
        if module is None or module is self.module:
            return
        self.module = module
        self.query_one("#module-summary", Static).update(Text(module.summary))
        await self.query_one(ParamForm).remove()
        await self.query_one("#compose-left").mount(ParamForm(module, id="form"))

    @on(ParamForm.Changed)
    def _params_changed(self, event: ParamForm.Changed) -> None:
        self.params, self.param_errors = event.values, event.errors
        self._refresh_preview()

    @on(Input.Changed, "#target")
    def _target_changed(self) -> None:
        self._update_target()

    @on(Input.Changed, "#expire, #action-name")
    def _meta_changed(self) -> None:
        self._refresh_preview()

    def _update_target(self) -> None:
        text = self.query_one("#target", Input).value
        status = self.query_one("#target-status", Static)
        listing = self.query_one("#target-hosts", Static)
        try:
            hosts = self.session.select(text)
        except SpyglassError as err:
            self.target_error, self.target_count = str(err), 0
            status.update(Text(str(err), style="bold red"))
            listing.update("")
        else:
            self.target_error, self.target_count = None, len(hosts)
            total = len(self.session.hosts)
            style = "bold green" if hosts else "bold yellow"
            status.update(Text(f"{len(hosts)} of {total} hosts", style=style))
            names = [h.name for h in hosts[:MAX_LISTED_HOSTS]]
            more = len(hosts) - len(names)
            listing.update(Text(", ".join(names) + (f" … and {more} more" if more else "")))
        self._refresh_preview()

    def _refresh_preview(self) -> None:
        self.action, self.problem = self._build()
        preview = self.query_one("#preview", Static)
        status = self.query_one("#compose-status", Static)
        if self.action is not None:
            preview.update(fmt.pretty_json(self.action.to_dict()))
            status.update(
                Text(
                    f"ready: ctrl+l signs and launches on {self.target_count} hosts", style="green"
                )
            )
        else:
            status.update(Text(self.problem or "", style="bold red"))
            preview.update(Text("(fix the problem above to see the action)", style="dim"))

    def _build(self) -> tuple[Action | None, str | None]:
        """The action as it would be signed now, or the first problem that prevents it."""
        if self.param_errors:
            name, problem = next(iter(self.param_errors.items()))
            return None, f"{self.module.name}: {problem}" if name == "*" else f"{name}: {problem}"
        if self.target_error:
            return None, "target: " + self.target_error.splitlines()[0]
        if self.target_count == 0:
            return None, "target: matches no host"
        expire = self.query_one("#expire", Input).value
        try:
            parse_duration(expire)
            title = self.query_one("#action-name", Input).value.strip() or None
            target = self.query_one("#target", Input).value
            return compose(self.module.name, self.params, target, expire, title), None
        except SpyglassError as err:
            return None, str(err)

    # -- actions ---------------------------------------------------------------------------
    def _fresh_action(self) -> Action | None:
        action, problem = self._build()  # fresh id and validity window at the moment of signing
        if action is None:
            self.notify(
                problem or "the action is not valid", severity="error", title="Nothing launched"
            )
        return action

    def action_launch(self) -> None:
        if (action := self._fresh_action()) is not None:
            self.post_message(self.LaunchRequested(action))

    def action_sign_only(self) -> None:
        if (action := self._fresh_action()) is not None:
            self.post_message(self.SignOnlyRequested(action))

    def action_focus_target(self) -> None:
        self.query_one("#target", Input).focus()
