"""The message types of DESIGN §3, each declared once as a dataclass.

``decode_message`` checks a frame against the declaration of its type for the direction it
travels: unknown fields, missing fields and wrong types are ``FrameError``. Fields with a default
are optional on the wire and left out when they hold it.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

from protocol.errors import FrameError, RejectReason

DoneStatus = Literal["ok", "limit", "timeout", "error", "cancelled"]
DONE_STATUSES: tuple[str, ...] = get_args(DoneStatus)


@dataclass(frozen=True, slots=True)
class Message:
    TYPE: ClassVar[str] = ""

    def to_frame(self) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": self.TYPE}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.default is not dataclasses.MISSING and value == f.default:
                continue
            frame[f.name] = value
        return frame


# Console -> agent
@dataclass(frozen=True, slots=True)
class ClientHello(Message):
    TYPE = "hello"
    versions: list[int]


@dataclass(frozen=True, slots=True)
class Run(Message):
    TYPE = "run"
    envelope: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Cancel(Message):
    TYPE = "cancel"


# Agent -> console
@dataclass(frozen=True, slots=True)
class AgentHello(Message):
    TYPE = "hello"
    version: int
    agent: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Accepted(Message):
    TYPE = "accepted"
    action_id: str
    replay: bool = False
    ran_at: int | None = None  # with replay: when the action was accepted (epoch seconds)


@dataclass(frozen=True, slots=True)
class RejectedMsg(Message):
    TYPE = "rejected"
    reason: RejectReason
    detail: str
    action_id: str | None = None


@dataclass(frozen=True, slots=True)
class Match(Message):
    TYPE = "match"
    op: int
    data: dict[str, Any]
    replay: bool = False


@dataclass(frozen=True, slots=True)
class Progress(Message):
    TYPE = "progress"
    op: int
    stats: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Done(Message):
    TYPE = "done"
    op: int
    status: DoneStatus
    stats: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    replay: bool = False


@dataclass(frozen=True, slots=True)
class Finished(Message):
    TYPE = "finished"
    action_id: str
    replay: bool = False


@dataclass(frozen=True, slots=True)
class ErrorMsg(Message):
    TYPE = "error"
    detail: str


TO_AGENT: dict[str, type[Message]] = {m.TYPE: m for m in (ClientHello, Run, Cancel)}
TO_CONSOLE: dict[str, type[Message]] = {
    m.TYPE: m
    for m in (AgentHello, Accepted, RejectedMsg, Match, Progress, Done, Finished, ErrorMsg)
}


def decode_message(frame: dict[str, Any], table: dict[str, type[Message]]) -> Message:
    """Build the message a frame declares, checking it strictly against its dataclass."""
    kind = frame.get("type")
    cls = table.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise FrameError(f"unexpected message type {frame.get('type')!r}")
    if (schema := _SCHEMAS.get(cls)) is None:
        schema = _SCHEMAS[cls] = _schema(cls)
    allowed, fields = schema
    if not allowed.issuperset(frame):
        raise FrameError(f"{cls.TYPE}: unknown field {sorted(set(frame) - allowed)[0]!r}")
    values = {}
    for name, required, conforms, closed in fields:
        if name not in frame:
            if required:
                raise FrameError(f"{cls.TYPE}: missing field {name!r}")
            continue
        if not conforms(frame[name]):
            value = frame[name]
            problem = f"unknown {name} {value!r}" if closed and isinstance(value, str) else ""
            raise FrameError(f"{cls.TYPE}.{name}: {problem or 'wrong type'}")
        values[name] = frame[name]
    return cls(**values)


Check = Callable[[Any], bool]
Schema = tuple[frozenset[str], tuple[tuple[str, bool, Check, bool], ...]]
_SCHEMAS: dict[type[Message], Schema] = {}


def _schema(cls: type[Message]) -> Schema:
    """A message class's wire keys, and per field: name, whether required, its type check, and
    whether its values are a closed set (``Literal``); made once per class (every frame of a
    fan-out is checked against one of eight)."""
    hints = get_type_hints(cls)
    fields = tuple(
        (
            f.name,
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            _check(hints[f.name]),
            get_origin(hints[f.name]) is Literal,  # a closed set: an unknown value says so
        )
        for f in dataclasses.fields(cls)
    )
    return frozenset({"type", *(name for name, *_ in fields)}), fields


def _check(hint: Any) -> Check:
    """A predicate for JSON values of the type ``hint`` (bool is not an int here)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        alternatives = [_check(arg) for arg in get_args(hint)]
        return lambda value: any(check(value) for check in alternatives)
    if origin is Literal:  # a closed set: one of its values
        allowed = frozenset(get_args(hint))
        return lambda value: isinstance(value, str) and value in allowed
    if hint is type(None):
        return lambda value: value is None
    if hint is Any:
        return lambda value: True
    if origin is list:
        (item_hint,) = get_args(hint)
        item = _check(item_hint)
        return lambda value: isinstance(value, list) and all(item(v) for v in value)
    if origin is dict:
        return lambda value: isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if hint is int:
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    return lambda value: isinstance(value, hint)
