"""Wire frames: golden bytes, limits, broken streams, incremental decoding, garbage input."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import FrameError, FrameTooLarge
from protocol.frames import (
    DEFAULT_MAX_FRAME,
    FrameDecoder,
    check_length,
    decode_body,
    encode_frame,
    read_frame,
)

GOLDEN = Path(__file__).parent / "data" / "protocol"


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


async def read_all(data: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> list[dict[str, Any]]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    out = []
    while (message := await read_frame(reader, max_frame)) is not None:
        out.append(message)
    return out


# --- golden frames -------------------------------------------------------------------------------


def test_golden_conversation() -> None:
    frames = json.loads((GOLDEN / "conversation.json").read_text(encoding="utf-8"))
    data = (GOLDEN / "conversation.bin").read_bytes()
    assert b"".join(encode_frame(f) for f in frames) == data
    assert FrameDecoder().feed(data) == frames


def test_golden_hello_literal() -> None:
    assert encode_frame({"type": "hello", "versions": [1]}) == (
        b'\x00\x00\x00\x1f{"type":"hello","versions":[1]}'
    )
    # non-ASCII goes out as UTF-8, and the length counts bytes, not characters
    assert encode_frame({"type": "error", "detail": "é"}) == (
        b'\x00\x00\x00\x1e{"type":"error","detail":"\xc3\xa9"}'
    )


# --- encode / decode -----------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
MESSAGES = st.builds(
    lambda kind, rest: {**rest, "type": kind},
    st.text(max_size=10),
    st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(MESSAGES, min_size=1, max_size=4), st.integers(min_value=1, max_value=64))
def test_encode_decode_round_trip(messages: list[dict[str, Any]], chunk: int) -> None:
    data = b"".join(encode_frame(m) for m in messages)
    for m in messages:
        assert decode_body(encode_frame(m)[4:]) == m
    decoder = FrameDecoder()
    out = []
    for i in range(0, len(data), chunk):
        out += decoder.feed(data[i : i + chunk])
    assert out == messages
    assert decoder.pending == 0
    assert asyncio.run(read_all(data)) == messages


def test_lone_surrogates_survive_the_wire() -> None:
    # os.scandir hands non-UTF-8 file names over as lone surrogates (surrogateescape)
    message = {"type": "match", "op": 0, "data": {"path": "/tmp/\udcff\udcfe", "name": "é"}}
    encoded = encode_frame(message)
    encoded[4:].decode("utf-8")  # still valid UTF-8 on the wire
    assert decode_body(encoded[4:]) == message


def test_encode_refuses_oversize() -> None:
    message = {"type": "x", "data": "a" * 100}
    size = len(encode_frame(message)) - 4
    assert len(encode_frame(message, max_frame=size)) == size + 4
    with pytest.raises(
        FrameTooLarge, match=f"frame of {size} bytes exceeds the {size - 1}-byte limit"
    ):
        encode_frame(message, max_frame=size - 1)


def test_check_length() -> None:
    check_length(1, 1)
    with pytest.raises(FrameError, match=r"^empty frame$"):
        check_length(0, 10)
    with pytest.raises(FrameTooLarge):
        check_length(11, 10)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe{}", "frame is not UTF-8 JSON"),
        (b'{"type": "x", "s": "\xed\xa0\x80"}', "frame is not UTF-8 JSON"),  # encoded surrogate
        (b"{not json", "frame is not UTF-8 JSON"),
        (b'{"type":"x"} trailing', "frame is not UTF-8 JSON"),
        (b"", "frame is not UTF-8 JSON"),
        (b'{"type":"x","n":' + b"9" * 5000 + b"}", "frame is not UTF-8 JSON"),  # int digit limit
        (b"[" * 100000 + b"]" * 100000, "frame is not UTF-8 JSON"),  # recursion
        (b"[]", "frame is not a JSON object with a string 'type'"),
        (b'"hello"', "frame is not a JSON object with a string 'type'"),
        (b"42", "frame is not a JSON object with a string 'type'"),
        (b"null", "frame is not a JSON object with a string 'type'"),
        (b"{}", "frame is not a JSON object with a string 'type'"),
        (b'{"versions":[1]}', "frame is not a JSON object with a string 'type'"),
        (b'{"type":1}', "frame is not a JSON object with a string 'type'"),
        (b'{"type":null}', "frame is not a JSON object with a string 'type'"),
    ],
    ids=lambda v: v[:24].decode("latin-1") if isinstance(v, bytes) else "",
)
def test_bad_bodies(body: bytes, message: str) -> None:
    with pytest.raises(FrameError) as caught:
        decode_body(body)
    assert str(caught.value).startswith(message)
    assert not isinstance(caught.value, FrameTooLarge)


def test_utf8_bom_is_refused() -> None:
    with pytest.raises(FrameError, match="not UTF-8 JSON"):
        decode_body(b'\xef\xbb\xbf{"type":"x"}')


# --- read_frame over an asyncio stream -----------------------------------------------------------


async def test_read_frame_sequence_then_clean_eof() -> None:
    data = encode_frame({"type": "a"}) + encode_frame({"type": "b", "n": 1})
    assert await read_all(data) == [{"type": "a"}, {"type": "b", "n": 1}]


async def test_read_frame_empty_stream_is_a_clean_end() -> None:
    assert await read_all(b"") == []


async def test_read_frame_waits_for_data() -> None:
    reader = asyncio.StreamReader()
    task = asyncio.create_task(read_frame(reader))
    data = encode_frame({"type": "slow"})
    for byte in data:
        await asyncio.sleep(0)
        assert not task.done()
        reader.feed_data(bytes([byte]))
    assert await task == {"type": "slow"}


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"\x00\x00", FrameError, "stream ended inside a frame header"),
        (frame(b'{"type":"x"}')[:-3], FrameError, "stream ended inside a frame"),
        (struct.pack(">I", 100), FrameError, "stream ended inside a frame"),
        (struct.pack(">I", 0) + b"{}", FrameError, "empty frame"),
        (struct.pack(">I", 2**32 - 1), FrameTooLarge, "frame of 4294967295 bytes exceeds"),
        (frame(b"[1]"), FrameError, "frame is not a JSON object with a string 'type'"),
        (frame(b"\x80"), FrameError, "frame is not UTF-8 JSON"),
    ],
    ids=["header", "body", "no-body", "zero", "huge", "array", "not-utf8"],
)
async def test_read_frame_errors(data: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        await read_all(encode_frame({"type": "ok"}) + data)
    assert str(caught.value).startswith(message)


async def test_read_frame_respects_max_frame() -> None:
    data = encode_frame({"type": "x", "pad": "a" * 50})
    assert await read_all(data, max_frame=len(data) - 4) == [{"type": "x", "pad": "a" * 50}]
    with pytest.raises(FrameTooLarge):
        await read_all(data, max_frame=len(data) - 5)


# --- FrameDecoder --------------------------------------------------------------------------------


def test_decoder_byte_by_byte() -> None:
    messages: list[dict[str, Any]] = [
        {"type": "hello", "versions": [1]},
        {"type": "cancel"},
        {"type": "x", "s": "日本"},
    ]
    data = b"".join(encode_frame(m) for m in messages)
    decoder = FrameDecoder()
    out: list[dict[str, Any]] = []
    pending = []
    for byte in data:
        got = decoder.feed(bytes([byte]))
        out += got
        pending.append(decoder.pending)
    assert out == messages
    assert decoder.pending == 0
    assert max(pending) == max(len(encode_frame(m)) for m in messages) - 1


def test_decoder_several_frames_in_one_chunk() -> None:
    data = encode_frame({"type": "a"}) * 3 + encode_frame({"type": "b"})[:6]
    decoder = FrameDecoder()
    assert decoder.feed(data) == [{"type": "a"}] * 3
    assert decoder.pending == 6
    assert decoder.feed(encode_frame({"type": "b"})[6:]) == [{"type": "b"}]


def test_decoder_refuses_oversize_from_the_header_alone() -> None:
    decoder = FrameDecoder(max_frame=16)
    with pytest.raises(FrameTooLarge, match="frame of 17 bytes exceeds the 16-byte limit"):
        decoder.feed(struct.pack(">I", 17))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (struct.pack(">I", 0), "empty frame"),
        (frame(b"nope"), "frame is not UTF-8 JSON"),
        (frame(b"\xc3\x28"), "frame is not UTF-8 JSON"),
        (frame(b'["type"]'), "frame is not a JSON object with a string 'type'"),
        (frame(b'{"typo":"x"}'), "frame is not a JSON object with a string 'type'"),
    ],
    ids=["zero", "json", "utf8", "array", "no-type"],
)
def test_decoder_errors(data: bytes, message: str) -> None:
    with pytest.raises(FrameError) as caught:
        FrameDecoder().feed(data)
    assert str(caught.value).startswith(message)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=6), st.integers(min_value=1, max_value=64))
def test_decoder_garbage_ends_in_messages_or_frame_error(chunks: list[bytes], limit: int) -> None:
    decoder = FrameDecoder(max_frame=limit)
    try:
        for chunk in chunks:
            for message in decoder.feed(chunk):
                assert isinstance(message, dict) and isinstance(message["type"], str)
    except FrameError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_decoder_garbage_with_a_valid_length(body: bytes) -> None:
    try:
        messages = FrameDecoder().feed(frame(body))
    except FrameError:
        return
    assert len(messages) == 1 and isinstance(messages[0]["type"], str)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=60))
def test_read_frame_garbage_ends_in_messages_or_frame_error(data: bytes) -> None:
    try:
        messages = asyncio.run(read_all(data, max_frame=64))
    except FrameError:
        return
    assert all(isinstance(m["type"], str) for m in messages)
