"""Messages of DESIGN §3: every type round-trips, and the declarations are enforced strictly."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import FrameError
from protocol.frames import FrameDecoder, encode_frame
from protocol.messages import (
    DONE_STATUSES,
    TO_AGENT,
    TO_CONSOLE,
    Accepted,
    AgentHello,
    Cancel,
    ClientHello,
    Done,
    ErrorMsg,
    Finished,
    Match,
    Message,
    Progress,
    RejectedMsg,
    Run,
    decode_message,
)

ENVELOPE = {"action": {"id": "01JD3M8Q7K2Y5V0C4T6N9P1R3S"}, "signatures": ["sig"]}
AGENT = {"name": "web-01", "version": "0.1.0", "platform": "linux", "modules": ["file"]}

TO_AGENT_SAMPLES: list[Message] = [
    ClientHello(versions=[1]),
    ClientHello(versions=[]),
    Run(envelope=ENVELOPE),
    Cancel(),
]
TO_CONSOLE_SAMPLES: list[Message] = [
    AgentHello(version=1, agent=AGENT),
    Accepted(action_id="A1"),
    Accepted(action_id="A1", replay=True),
    RejectedMsg(reason="acl", detail="needs weight 2"),
    RejectedMsg(reason="malformed", detail="bad", action_id="A1"),
    Match(op=0, data={"path": "/etc/passwd", "size": 1234}),
    Match(op=3, data={}, replay=True),
    Progress(op=1, stats={"files": 10}),
    *(Done(op=0, status=status) for status in DONE_STATUSES),
    Done(op=2, status="error", stats={"files": 1}, errors=["/x: denied"], replay=True),
    Finished(action_id="A1"),
    Finished(action_id="A1", replay=True),
    ErrorMsg(detail="frame too large"),
]


def over_the_wire(message: Message, table: dict[str, type[Message]]) -> Message:
    (frame,) = FrameDecoder().feed(encode_frame(message.to_frame()))
    return decode_message(frame, table)


@pytest.mark.parametrize("message", TO_AGENT_SAMPLES, ids=repr)
def test_to_agent_round_trip(message: Message) -> None:
    assert over_the_wire(message, TO_AGENT) == message


@pytest.mark.parametrize("message", TO_CONSOLE_SAMPLES, ids=repr)
def test_to_console_round_trip(message: Message) -> None:
    assert over_the_wire(message, TO_CONSOLE) == message


def test_every_type_is_covered() -> None:
    assert {type(m) for m in TO_AGENT_SAMPLES} == set(TO_AGENT.values())
    assert {type(m) for m in TO_CONSOLE_SAMPLES} == set(TO_CONSOLE.values())
    assert set(DONE_STATUSES) == {"ok", "limit", "timeout", "error", "cancelled"}


@pytest.mark.parametrize(
    ("message", "frame"),
    [
        (Cancel(), {"type": "cancel"}),
        (ClientHello(versions=[1]), {"type": "hello", "versions": [1]}),
        (Accepted(action_id="A"), {"type": "accepted", "action_id": "A"}),
        (
            Accepted(action_id="A", replay=True),
            {"type": "accepted", "action_id": "A", "replay": True},
        ),
        (
            RejectedMsg(reason="busy", detail="d"),
            {"type": "rejected", "reason": "busy", "detail": "d"},
        ),
        (
            Done(op=0, status="ok"),
            {"type": "done", "op": 0, "status": "ok", "stats": {}, "errors": []},
        ),
    ],
    ids=repr,
)
def test_wire_form(message: Message, frame: dict[str, Any]) -> None:
    """Optional fields holding their default stay off the wire; the type comes first."""
    assert message.to_frame() == frame
    assert next(iter(message.to_frame())) == "type"


def test_direction_matters() -> None:
    frame = ClientHello(versions=[1]).to_frame()
    assert decode_message(frame, TO_AGENT) == ClientHello(versions=[1])
    with pytest.raises(FrameError, match="hello: unknown field 'versions'"):
        decode_message(frame, TO_CONSOLE)
    with pytest.raises(FrameError, match="unexpected message type 'accepted'"):
        decode_message(Accepted(action_id="A").to_frame(), TO_AGENT)


@pytest.mark.parametrize(
    ("frame", "table", "message"),
    [
        ({"type": "nope"}, TO_AGENT, "unexpected message type 'nope'"),
        ({}, TO_AGENT, "unexpected message type None"),
        ({"type": ["run"]}, TO_AGENT, "unexpected message type ['run']"),
        ({"type": {"a": 1}}, TO_CONSOLE, "unexpected message type {'a': 1}"),
        ({"type": "cancel", "now": True}, TO_AGENT, "cancel: unknown field 'now'"),
        ({"type": "run"}, TO_AGENT, "run: missing field 'envelope'"),
        ({"type": "run", "envelope": []}, TO_AGENT, "run.envelope: wrong type"),
        ({"type": "run", "envelope": {1: 2}}, TO_AGENT, "run.envelope: wrong type"),
        ({"type": "hello", "versions": 1}, TO_AGENT, "hello.versions: wrong type"),
        ({"type": "hello", "versions": [True]}, TO_AGENT, "hello.versions: wrong type"),
        ({"type": "hello", "versions": ["1"]}, TO_AGENT, "hello.versions: wrong type"),
        ({"type": "hello", "versions": [1.0]}, TO_AGENT, "hello.versions: wrong type"),
        ({"type": "hello", "version": 1}, TO_CONSOLE, "hello: missing field 'agent'"),
        ({"type": "hello", "version": "1", "agent": {}}, TO_CONSOLE, "hello.version: wrong type"),
        ({"type": "accepted"}, TO_CONSOLE, "accepted: missing field 'action_id'"),
        ({"type": "accepted", "action_id": 7}, TO_CONSOLE, "accepted.action_id: wrong type"),
        (
            {"type": "accepted", "action_id": "A", "replay": 1},
            TO_CONSOLE,
            "accepted.replay: wrong type",
        ),
        ({"type": "rejected", "reason": "acl"}, TO_CONSOLE, "rejected: missing field 'detail'"),
        (
            {"type": "rejected", "reason": "acl", "detail": "d", "action_id": 1},
            TO_CONSOLE,
            "rejected.action_id: wrong type",
        ),
        ({"type": "match", "op": 0}, TO_CONSOLE, "match: missing field 'data'"),
        ({"type": "match", "op": "0", "data": {}}, TO_CONSOLE, "match.op: wrong type"),
        ({"type": "match", "op": False, "data": {}}, TO_CONSOLE, "match.op: wrong type"),
        ({"type": "match", "op": 0, "data": [1]}, TO_CONSOLE, "match.data: wrong type"),
        ({"type": "progress", "op": 0, "stats": None}, TO_CONSOLE, "progress.stats: wrong type"),
        ({"type": "done", "status": "ok"}, TO_CONSOLE, "done: missing field 'op'"),
        ({"type": "done", "op": 0, "status": 1}, TO_CONSOLE, "done.status: wrong type"),
        (
            {"type": "done", "op": 0, "status": "ok", "errors": "x"},
            TO_CONSOLE,
            "done.errors: wrong type",
        ),
        (
            {"type": "done", "op": 0, "status": "ok", "errors": [1]},
            TO_CONSOLE,
            "done.errors: wrong type",
        ),
        (
            {"type": "done", "op": 0, "status": "ok", "extra": 1},
            TO_CONSOLE,
            "done: unknown field 'extra'",
        ),
        ({"type": "finished", "action_id": None}, TO_CONSOLE, "finished.action_id: wrong type"),
        ({"type": "error"}, TO_CONSOLE, "error: missing field 'detail'"),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, dict) else "",
)
def test_bad_frames(frame: dict[str, Any], table: dict[str, type[Message]], message: str) -> None:
    with pytest.raises(FrameError) as caught:
        decode_message(frame, table)
    assert str(caught.value) == message


@pytest.mark.parametrize("status", ["OK", "", "done", "failed", "ok "])
def test_bad_done_status(status: str) -> None:
    with pytest.raises(FrameError) as caught:
        decode_message({"type": "done", "op": 0, "status": status}, TO_CONSOLE)
    assert str(caught.value) == f"done.status: unknown status {status!r}"


def test_rejected_action_id_may_be_null() -> None:
    frame = {"type": "rejected", "reason": "malformed", "detail": "d", "action_id": None}
    assert decode_message(frame, TO_CONSOLE) == RejectedMsg(reason="malformed", detail="d")


# --- garbage -------------------------------------------------------------------------------------

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELD_NAMES = st.sampled_from(
    [
        "type",
        "versions",
        "envelope",
        "version",
        "agent",
        "action_id",
        "replay",
        "reason",
        "detail",
        "op",
        "data",
        "stats",
        "status",
        "errors",
    ]
)
TYPES = st.sampled_from(sorted(set(TO_AGENT) | set(TO_CONSOLE))) | VALUES
GARBAGE = st.builds(
    lambda kind, rest: {**rest, "type": kind},
    TYPES,
    st.dictionaries(
        FIELD_NAMES | st.text(max_size=6), VALUES | st.sampled_from(DONE_STATUSES), max_size=6
    ),
) | st.dictionaries(FIELD_NAMES, VALUES, max_size=4)


@settings(max_examples=400, deadline=None)
@given(GARBAGE, st.sampled_from([TO_AGENT, TO_CONSOLE]))
def test_garbage_ends_in_a_message_or_frame_error(frame: dict[str, Any], table: Any) -> None:
    try:
        message = decode_message(frame, table)
    except FrameError:
        return
    assert isinstance(message, Message)
    assert frame["type"] == message.TYPE
    assert decode_message(message.to_frame(), table) == message
