"""The message types of DESIGN §3, each declared once as a dataclass.

``decode_message`` checks a frame against the declaration of its type for the direction it
travels: unknown fields, missing fields and wrong types are ``FrameError``. Fields with a default
are optional on the wire and left out when they hold it.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

from protocol.errors import FrameError

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


@dataclass(frozen=True, slots=True)
class RejectedMsg(Message):
    TYPE = "rejected"
    reason: str
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
    status: str
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
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if unknown := sorted(set(frame) - set(fields) - {"type"}):
        raise FrameError(f"{cls.TYPE}: unknown field {unknown[0]!r}")
    values = {}
    for name, f in fields.items():
        if name not in frame:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise FrameError(f"{cls.TYPE}: missing field {name!r}")
            continue
        if not _conforms(frame[name], hints[name]):
            raise FrameError(f"{cls.TYPE}.{name}: wrong type")
        values[name] = frame[name]
    if cls is Done and values["status"] not in DONE_STATUSES:
        raise FrameError(f"done.status: unknown status {values['status']!r}")
    return cls(**values)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _conforms(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_conforms(value, arg) for arg in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if origin is list:
        (item,) = get_args(hint)
        return isinstance(value, list) and all(_conforms(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)
