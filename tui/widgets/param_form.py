"""A form generated from a module's parameter declarations (never hand-written per module).

Each ``Param`` gives a row: its name and kind, its help line, an input chosen from its kind
(a Switch for booleans, a Select for closed choices, an Input otherwise) and a line that shows
why the value does not validate, as it is typed. Repeatable parameters take one value, or a JSON
array for several.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from modules.base import Module, Param
from modules.kinds import JSON_TYPES
from protocol.errors import ParamError

_ABSENT = object()


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


def placeholder(param: Param) -> str:
    default = param.to_json()["default"]
    hint = f"default {default}" if default not in (None, []) else param.kind
    if param.repeatable:
        return f"{hint} · one value or a JSON array"
    return hint


class ParamForm(Widget):
    """The parameters of one module; posts ``Changed`` with the current values and errors."""

    DEFAULT_CSS = """
    ParamForm { height: auto; }
    ParamForm .param { height: auto; margin-bottom: 1; }
    ParamForm .param-label { text-style: bold; }
    ParamForm .param-help { color: $text-muted; }
    ParamForm .param-error { color: $error; height: auto; }
    ParamForm Input.-invalid { border: tall $error; }
    """

    @dataclass
    class Changed(Message):
        form: ParamForm
        values: dict[str, Any]
        errors: dict[str, str]

        @property
        def control(self) -> ParamForm:
            return self.form

    def __init__(self, module: Module, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.module = module
        self.values: dict[str, Any] = {}
        self.errors: dict[str, str] = {}

    def widget_id(self, param: Param) -> str:
        return f"p-{self.module.name}-{param.name}"

    def compose(self) -> ComposeResult:
        for param in self.module.params:
            notes: list[str] = [param.kind]
            if param.repeatable:
                notes.append("repeatable")
            if param.required:
                notes.append("required")
            with Vertical(classes="param"):
                yield Label(
                    Text.assemble((param.name, "bold"), f"  ({', '.join(notes)})"),
                    classes="param-label",
                )
                yield Static(Text(param.help), classes="param-help")
                wid = self.widget_id(param)
                if param.kind == "bool":
                    yield Switch(value=bool(param.default), id=wid)
                elif param.choices and not param.repeatable:
                    yield Select(
                        [(c, c) for c in param.choices],
                        value=param.default if param.default in param.choices else Select.NULL,
                        id=wid,
                    )
                else:
                    yield Input(
                        placeholder=placeholder(param),
                        type="integer" if JSON_TYPES.get(param.kind) is int else "text",
                        id=wid,
                    )
                yield Static("", id=f"err-{self.module.name}-{param.name}", classes="param-error")

    def on_mount(self) -> None:
        self.recompute(post=True)

    def param_of(self, widget_id: str | None) -> Param | None:
        for param in self.module.params:
            if self.widget_id(param) == widget_id:
                return param
        return None

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
            shown = "" if problem == "required" else problem
            self.query_one(f"#err-{self.module.name}-{param.name}", Static).update(Text(shown))
            widget = self.query_one(f"#{self.widget_id(param)}")
            widget.set_class(bool(shown), "-invalid")
        if post:
            self.post_message(self.Changed(self, dict(values), dict(errors)))
