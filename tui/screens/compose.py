"""Compose: pick a module, fill its generated form, target hosts, set the expiry, launch.

Made for speed at the keyboard: one row per parameter, the most-used ones first, ctrl+f jumps to
a parameter by name, and each module keeps its draft while the screen lives (switching module
and back loses nothing). Focus moves are immediate (``Screen.set_focus``, not the deferred
``Widget.focus``), so keys typed right after ctrl+t land in the target field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.events import DescendantFocus
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Input, Label, Select, Static, Switch

from console.actions.compose import compose, parse_duration
from modules.base import Module
from modules.registry import all_modules, get_module
from protocol.action import Action
from protocol.errors import SpyglassError
from tui.model import format as fmt
from tui.model.provenance import expiry_text, readable_action
from tui.model.session import Session
from tui.widgets.param_form import ParamForm

MAX_LISTED_HOSTS = 200
#: What the Retry switch does (`spyglass run --until-expiry`), next to it; cut to fit.
UNTIL_EXPIRY_NOTE = "until expiry (hosts that cannot be reached)"


class FindField(Input):
    """The find-a-parameter field. Enter is handled here, in order with the keys typed before
    it (an Input's Enter binding acts only after the key bubbled up, when the keys typed after
    it are already in the field), and keys still reaching the field after focus moved on are
    handed to the parameter now focused: ``ctrl+f max_dep Enter 3`` types 3 in max_depth."""

    async def _on_key(self, event: events.Key) -> None:
        screen = self.screen
        if screen.focused is not self:
            if screen.focused is not None and screen is self.app.screen:
                event.prevent_default()
                event.stop()
                screen.focused.post_message(events.Key(event.key, event.character))
            return
        if event.key == "enter" and isinstance(screen, ComposeScreen):
            event.prevent_default()
            event.stop()
            screen.jump(self.value)


class ComposeScreen(Screen[None]):
    """The first screen: everything needed to write one action."""

    # Keys that move focus are priority bindings: the App acts on them as it reads them, before
    # it hands the next keys to the focused widget, so a burst typed after them follows the
    # focus (a plain binding acts only once the key has bubbled up from the old field).
    BINDINGS = [
        Binding("ctrl+l", "launch", "Launch", id="compose.launch"),
        Binding("ctrl+s", "sign_only", "Sign only", id="compose.sign_only"),
        Binding("ctrl+t", "focus_target", "Target", id="compose.target", priority=True),
        # the find row and the toggle line name their keys: not repeated in the footer
        Binding("ctrl+f", "find_param", "Find", id="compose.find", show=False, priority=True),
        Binding("ctrl+o", "more_params", "More", id="compose.more", show=False, priority=True),
    ]

    @dataclass
    class LaunchRequested(Message):
        """Sign ``action`` and launch it, after the confirmation; with ``until_expiry``, retry
        the hosts that cannot be reached until it expires (``run --until-expiry``)."""

        action: Action
        until_expiry: bool = False

    @dataclass
    class SignOnlyRequested(Message):
        """Sign ``action`` and save the envelope for a second approver."""

        action: Action

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.module = all_modules()[0]
        self.forms: dict[str, ParamForm] = {}
        """One form per module shown so far: its draft lives as long as the screen."""
        self.target_error: str | None = None
        self.target_count = 0
        self.action: Action | None = None
        self.problem: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="compose-body"):
            with Vertical(id="compose-left"):
                with Horizontal(classes="compose-row"):
                    yield Label("Module", classes="row-label")
                    yield Select(
                        [(f"{m.name} — {m.summary}", m.name) for m in all_modules()],
                        value=self.module.name,
                        allow_blank=False,
                        id="module",
                    )
                with Horizontal(classes="compose-row"):
                    yield Label("Find", classes="row-label")
                    yield FindField(placeholder="a parameter's name, Enter (ctrl+f)", id="jump")
                yield Static("", id="param-help")
                forms = VerticalScroll(id="forms")
                forms.can_focus = False  # a scroll container is no tab stop of its own
                with forms:
                    form = self.forms[self.module.name] = ParamForm(
                        self.module, id=f"form-{self.module.name}"
                    )
                    yield form
            with Vertical(id="compose-right"):
                with Horizontal(classes="compose-row"):
                    yield Label("Target", classes="row-label")
                    yield Input(
                        value="all", placeholder="e.g. env=prod and role in (web, db)", id="target"
                    )
                yield Static("", id="target-status")
                yield Static("", id="target-hosts")
                with Horizontal(classes="compose-row"):
                    yield Label("Expires", classes="row-label")
                    yield Input(value="5m", id="expire")
                with Horizontal(classes="compose-row"):
                    yield Label("Retry", classes="row-label")
                    yield Switch(value=False, id="until-expiry")
                    yield Label(UNTIL_EXPIRY_NOTE, id="until-expiry-note")
                with Horizontal(classes="compose-row"):
                    yield Label("Name", classes="row-label")
                    yield Input(placeholder="default: MODULE on TARGET", id="action-name")
                yield Static("", id="compose-status")
                yield Label("Action preview (what you sign)", classes="section")
                preview = VerticalScroll(id="preview-box")
                preview.can_focus = False
                with preview:
                    yield Static("", id="preview")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.title = "spyglass"
        self.sub_title = "compose"
        self._update_target()
        self._focus_first_param()

    @property
    def form(self) -> ParamForm:
        return self.forms[self.module.name]

    def _focus_first_param(self) -> None:
        for widget in self.form.query("Input, Switch, Select"):
            self.set_focus(widget)
            return

    # -- reacting ------------------------------------------------------------------------------
    @on(Select.Changed, "#module")
    async def _module_changed(self, event: Select.Changed) -> None:
        module = get_module(str(event.value))
        if module is not None and module is not self.module:
            await self.show_module(module)

    async def show_module(self, module: Module, params: dict[str, Any] | None = None) -> None:
        """Show ``module``'s form: its draft if it had one, or a form holding ``params``."""
        old = self.forms.get(module.name)
        if params is not None and old is not None:
            await old.remove()
            del self.forms[module.name]
        self.module = module
        if module.name not in self.forms:
            form = ParamForm(module, initial=params, id=f"form-{module.name}")
            self.forms[module.name] = form
            await self.query_one("#forms").mount(form)
        for name, form in self.forms.items():
            form.display = name == module.name
        self.form.recompute(post=False)
        select = self.query_one("#module", Select)
        if select.value != module.name:
            with select.prevent(Select.Changed):
                select.value = module.name
        self._refresh_preview()

    @on(ParamForm.Changed)
    def _params_changed(self, event: ParamForm.Changed) -> None:
        if event.form is self.forms.get(self.module.name):
            self._refresh_preview()
            self._show_help(self.focused)

    @on(DescendantFocus)
    def _focus_moved(self, event: DescendantFocus) -> None:
        self._show_help(event.widget)

    def _show_help(self, widget: Widget | None) -> None:
        param = self.form.param_of(widget.id if widget is not None else None)
        if param is not None:
            self.query_one("#param-help", Static).update(self.form.help_for(param))

    @on(Input.Changed, "#jump")
    def _jump_typed(self, event: Input.Changed) -> None:
        param = self.form.find(event.value)
        help_line = self.query_one("#param-help", Static)
        if param is not None:
            help_line.update(Text.assemble(("Enter: ", "dim"), self.form.help_for(param)))
        elif event.value.strip():
            help_line.update(Text(f"no parameter of {self.module.name} like that", style="red"))

    def jump(self, text: str) -> None:
        """Focus the parameter ``text`` names (Enter in the find field)."""
        param = self.form.find(text)
        if param is None:
            self.notify(f"{self.module.name} has no parameter {text.strip()!r}")
            return
        self.query_one("#jump", Input).value = ""
        self.set_focus(self.form.input_of(param))

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
            preview.update(fmt.pretty_json(readable_action(self.action.to_dict())))
            status.update(
                Text(f"ready: ctrl+l launches on {self.target_count} hosts", style="green")
            )
        else:
            status.update(Text(self.problem or "", style="bold red"))
            preview.update(Text("(fix the problem above to see the action)", style="dim"))

    def _build(self) -> tuple[Action | None, str | None]:
        """The action as it would be signed now, or the first problem that prevents it."""
        form = self.form
        if form.errors:
            name, problem = next(iter(form.errors.items()))
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
            return compose(self.module.name, form.values, target, expire, title), None
        except SpyglassError as err:
            return None, str(err)

    # -- loading a past run --------------------------------------------------------------------
    async def load(self, action: dict[str, Any]) -> bool:
        """Fill the screen with ``action``'s module, parameters, target, expiry and (unless it
        is the default) name: rerun and edit-as-new start here. False if its module is unknown
        here (the investigator has been told)."""
        ops = action.get("operations") or [{}]
        op = ops[0] if isinstance(ops[0], dict) else {}
        module = get_module(str(op.get("module")))
        if module is None:
            self.notify(f"no module {op.get('module')!r} here", severity="error")
            return False
        if len(ops) > 1:
            self.notify("only the first operation of that action was loaded", severity="warning")
        target = str(action.get("target", "all"))
        name = str(action.get("name", ""))
        with self.prevent(Input.Changed):
            self.query_one("#target", Input).value = target
            self.query_one("#expire", Input).value = expiry_text(action)
            default = f"{module.name} on {target}"
            self.query_one("#action-name", Input).value = "" if name == default else name
        self._update_target()
        await self.show_module(module, dict(op.get("params") or {}))
        self._focus_first_param()
        return True

    # -- actions ---------------------------------------------------------------------------
    def _fresh_action(self) -> Action | None:
        action, problem = self._build()  # fresh id and validity window at the moment of signing
        if action is None:
            self.notify(
                problem or "the action is not valid", severity="error", title="Nothing launched"
            )
        return action

    @property
    def until_expiry(self) -> bool:
        return self.query_one("#until-expiry", Switch).value

    def action_launch(self) -> None:
        if (action := self._fresh_action()) is not None:
            self.post_message(self.LaunchRequested(action, self.until_expiry))

    def action_sign_only(self) -> None:
        if (action := self._fresh_action()) is not None:
            self.post_message(self.SignOnlyRequested(action))

    def action_focus_target(self) -> None:
        self.set_focus(self.query_one("#target", Input))

    def action_find_param(self) -> None:
        self.set_focus(self.query_one("#jump", Input))

    def action_more_params(self) -> None:
        self.form.toggle_more()
