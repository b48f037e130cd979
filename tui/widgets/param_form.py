"""A form generated from a module's parameter declarations (never hand-written per module).

One row per parameter: its name, then an input chosen from its kind (a Switch for booleans, a
Select for closed choices, an Input otherwise). The help and the current problem of the focused
parameter are shown by the screen (``help_for``), so a 48-row terminal shows twenty parameters
at once. The most-used parameters (``common_params``) come first; the rest sit behind a toggle,
opened by itself when one of them holds a value. Repeatable parameters take one value, or a JSON
array for several.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from modules.base import Module, Param
from modules.kinds import JSON_TYPES
from protocol.errors import ParamError

_ABSENT = object()

COMMON_COUNT = 7
"""Parameters shown before the toggle: the required ones, the module's example ones, and the
first ones it declares (modules declare their most-used parameters first)."""


def common_params(module: Module) -> list[Param]:
    wanted = set(module.example) | {p.name for p in module.params[:COMMON_COUNT]}
    return [p for p in module.params if p.required or p.name in wanted]


def parse_value(param: Param, text: str) -> Any:
    """The JSON value typed for ``param``; ``_ABSENT`` when empty. Raises ParamError."""
    text = text.strip()
    if not text:
        return _ABSENT
    integer = JSON_TYPES.get(param.kind) is int

    def one(item: Any) -> Any:
        if integer and isinstance(item, str):
            try:
                return int(item)
            except ValueError:
                raise ParamError(f"{param.name}: expected an integer, got {item!r}") from None
        return item

    if param.repeatable:
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                items = None
            if isinstance(items, list):
                return [one(i) for i in items]
        return [one(text)]
    return one(text)


def value_text(param: Param, value: Any) -> str:
    """What to type in ``param``'s input to get ``value`` back (the inverse of ``parse_value``)."""
    if param.repeatable and isinstance(value, list):
        if len(value) == 1 and not str(value[0]).startswith("["):
            return str(value[0])
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def placeholder(param: Param) -> str:
    default = param.to_json()["default"]
    hint = f"default {default}" if default not in (None, []) else param.kind
    if param.repeatable:
        return f"{hint} · one value or a JSON array"
    return hint


def describe(param: Param) -> str:
    notes: list[str] = [param.kind]
    if param.repeatable:
        notes.append("repeatable")
    if param.required:
        notes.append("required")
    if param.choices:
        notes.append("one of " + ", ".join(param.choices))
    return f"{param.name} ({', '.join(notes)}): {param.help}"


class _MoreToggle(Static):
    """The line that opens and closes the less-used parameters (ctrl+o, or a click)."""

    def on_click(self) -> None:
        form = self.parent
        if isinstance(form, ParamForm):
            form.toggle_more()


class ParamForm(Widget):
    """The parameters of one module; posts ``Changed`` with the current values and errors."""

    DEFAULT_CSS = """
    ParamForm { height: auto; }
    ParamForm .param-row { height: 1; }
    ParamForm .param-name { width: 18; padding: 0 1 0 0; }
    ParamForm .param-name.-required { text-style: bold; }
    ParamForm .param-name.-invalid { color: $error; text-style: bold; }
    ParamForm .param-row:focus-within .param-name { background: $accent 30%; }
    ParamForm Input { height: 1; border: none; padding: 0 1; width: 1fr; background: $boost; }
    ParamForm Input:focus { background: $accent 20%; border: none; }
    ParamForm Input.-invalid { border: none; color: $error; }
    ParamForm Switch { height: 1; border: none; padding: 0 1; width: 10; }
    ParamForm Switch:focus { border: none; background: $accent 20%; }
    ParamForm Select { height: 1; width: 1fr; }
    ParamForm Select > SelectCurrent { height: 1; border: none; padding: 0 1; }
    ParamForm Select:focus > SelectCurrent { border: none; background: $accent 20%; }
    ParamForm .param-more { height: 1; color: $text-muted; margin-top: 1; }
    ParamForm .param-rest { height: auto; display: none; }
    ParamForm.-expanded .param-rest { display: block; }
    """

    @dataclass
    class Changed(Message):
        form: ParamForm
        values: dict[str, Any]
        errors: dict[str, str]

        @property
        def control(self) -> ParamForm:
            return self.form

    def __init__(
        self, module: Module, *, initial: dict[str, Any] | None = None, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.module = module
        self.initial = dict(initial or {})
        self.values: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.common = common_params(module)
        self.rest = [p for p in module.params if p not in self.common]
        if any(p.name in self.initial for p in self.rest):
            self.add_class("-expanded")

    def widget_id(self, param: Param) -> str:
        return f"p-{self.module.name}-{param.name}"

    def compose(self) -> ComposeResult:
        yield from self._rows(self.common)
        if self.rest:
            yield _MoreToggle("", classes="param-more")
            with Vertical(classes="param-rest"):
                yield from self._rows(self.rest)

    def _rows(self, params: list[Param]) -> ComposeResult:
        for param in params:
            with Horizontal(classes="param-row"):
                label = Label(param.name, classes="param-name", id=f"l-{self.widget_id(param)}")
                label.set_class(param.required, "-required")
                yield label
                yield self._input(param)

    def _input(self, param: Param) -> Widget:
        wid = self.widget_id(param)
        initial = self.initial.get(param.name, _ABSENT)
        if param.kind == "bool":
            on = bool(param.default) if initial is _ABSENT else bool(initial)
            return Switch(value=on, id=wid)
        if param.choices and not param.repeatable:
            value = param.default if initial is _ABSENT else initial
            return Select(
                [(c, c) for c in param.choices],
                value=value if value in param.choices else Select.NULL,
                id=wid,
            )
        return Input(
            value="" if initial is _ABSENT else value_text(param, initial),
            placeholder=placeholder(param),
            type="integer"
            if JSON_TYPES.get(param.kind) is int and not param.repeatable
            else "text",
            id=wid,
        )

    def on_mount(self) -> None:
        self._show_toggle()
        self.recompute(post=True)

    # -- the toggle --------------------------------------------------------------------------
    @property
    def expanded(self) -> bool:
        return self.has_class("-expanded")

    def toggle_more(self) -> None:
        self.set_class(not self.expanded, "-expanded")
        self._show_toggle()

    def _show_toggle(self) -> None:
        if self.rest:
            arrow = "▾" if self.expanded else "▸"
            what = "fewer" if self.expanded else f"{len(self.rest)} more"
            self.query_one(_MoreToggle).update(Text(f"{arrow} {what} parameters (ctrl+o)"))

    # -- finding -------------------------------------------------------------------------------
    def find(self, text: str) -> Param | None:
        """The parameter a typed name means: an exact name, else the first whose name starts
        with it, else the first that contains it (``_`` and ``-`` alike)."""
        text = text.strip().lower().lstrip("-").replace("-", "_")
        if not text:
            return None
        params = self.module.params
        for test in (
            lambda p: p.name == text,
            lambda p: p.name.startswith(text),
            lambda p: text in p.name,
        ):
            for param in params:
                if test(param):
                    return param
        return None

    def input_of(self, param: Param) -> Widget:
        """The input of ``param``, the hidden parameters shown first if it is one of them."""
        if param in self.rest and not self.expanded:
            self.toggle_more()
        return self.query_one(f"#{self.widget_id(param)}")

    def param_of(self, widget_id: str | None) -> Param | None:
        for param in self.module.params:
            if self.widget_id(param) == widget_id:
                return param
        return None

    # -- values --------------------------------------------------------------------------------
    @on(Input.Changed)
    @on(Switch.Changed)
    @on(Select.Changed)
    def _changed(self, event: Message) -> None:
        event.stop()
        self.recompute(post=True)

    def recompute(self, *, post: bool) -> None:
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for param in self.module.params:
            widget = self.query_one(f"#{self.widget_id(param)}")
            try:
                if isinstance(widget, Switch):
                    if widget.value != bool(param.default):
                        values[param.name] = widget.value
                    continue
                if isinstance(widget, Select):
                    value = widget.value
                    if value is not Select.NULL and value != param.default:
                        values[param.name] = param.validate(value)
                    continue
                assert isinstance(widget, Input)
                value = parse_value(param, widget.value)
                if value is _ABSENT:
                    if param.required:
                        errors[param.name] = "required"
                    continue
                values[param.name] = param.validate(value)
            except ParamError as err:
                errors[param.name] = err.message
        if not errors:
            try:
                self.module.validate(values)  # rules spanning several parameters
            except ParamError as err:
                errors["*"] = err.message
        self.values, self.errors = values, errors
        for param in self.module.params:
            problem = errors.get(param.name, "")
            shown = bool(problem) and problem != "required"
            self.query_one(f"#l-{self.widget_id(param)}").set_class(shown, "-invalid")
            self.query_one(f"#{self.widget_id(param)}").set_class(shown, "-invalid")
        if post:
            self.post_message(self.Changed(self, dict(values), dict(errors)))

    def help_for(self, param: Param) -> Text:
        """The focused parameter's help line, then its problem if it has one."""
        text = Text(describe(param))
        problem = self.errors.get(param.name)
        if problem and problem != "required":
            text.append("\n" + problem, style="bold red")
        return text
