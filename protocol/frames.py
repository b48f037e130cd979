"""Wire frames: a 4-byte big-endian length N (1 <= N <= max_frame), then N bytes of UTF-8 JSON.

Pure encode/decode with no I/O of its own; ``read_frame`` works over any reader with an
asyncio-style ``readexactly`` (asyncio streams and asyncssh's SSHReader both have one). No asyncio
import: the agent's zygote loads this module, and asyncio would bring threading, whose at-fork
hook then runs in every operation child (0.6 ms and 190 page faults each).
"""

from __future__ import annotations

import json
import struct
from typing import Any, Protocol

from protocol.errors import FrameError, FrameTooLarge

DEFAULT_MAX_FRAME = 1 << 20
_HEADER = struct.Struct(">I")


class ByteReader(Protocol):
    async def readexactly(self, n: int) -> bytes: ...


def encode_frame(message: dict[str, Any], max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    try:
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        # A lone surrogate (a non-UTF-8 file name decoded with surrogateescape, say) has no UTF-8
        # form; its \udcXX escape is valid JSON text and decodes back to the same string.
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=True).encode()
    if len(body) > max_frame:
        raise FrameTooLarge(f"frame of {len(body)} bytes exceeds the {max_frame}-byte limit")
    return _HEADER.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    """Parse one frame body; anything but a JSON object with a string ``type`` is a FrameError."""
    try:
        message = json.loads(body.decode("utf-8"))
    # ValueError covers JSONDecodeError, UnicodeDecodeError and Python's 4300-digit int limit.
    except (ValueError, RecursionError) as err:
        raise FrameError(f"frame is not UTF-8 JSON: {err}") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise FrameError("frame is not a JSON object with a string 'type'")
    return message


def check_length(length: int, max_frame: int) -> None:
    if length == 0:
        raise FrameError("empty frame")
    if length > max_frame:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the {max_frame}-byte limit")


async def read_frame(
    reader: ByteReader, max_frame: int = DEFAULT_MAX_FRAME
) -> dict[str, Any] | None:
    """Read one frame; ``None`` on a clean end of stream between frames."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except EOFError as err:  # asyncio.IncompleteReadError, with the bytes read before the end
        if not getattr(err, "partial", b""):
            return None
        raise FrameError("stream ended inside a frame header") from None
    (length,) = _HEADER.unpack(header)
    check_length(length, max_frame)
    try:
        body = await reader.readexactly(length)
    except EOFError:
        raise FrameError("stream ended inside a frame") from None
    return decode_body(body)


class FrameDecoder:
    """Incremental decoder for callback-style transports: feed bytes, get whole messages."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._buffer)
            check_length(length, self.max_frame)
            end = _HEADER.size + length
            if len(self._buffer) < end:
                break
            messages.append(decode_body(bytes(self._buffer[_HEADER.size : end])))
            del self._buffer[:end]
        return messages

    @property
    def pending(self) -> int:
        return len(self._buffer)
