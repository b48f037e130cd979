"""The benchmark's delay-and-loss injector (bench/netem.py), in its own process against an echo
server: bytes arrive intact and in order, never before the emulated path allows, and loss is
drawn at the configured rate and paid as retransmission timeouts."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bench.netem import MIN_RTO, Relay, fraction, seconds
from tests.support.paths import short_tmp

RTT = 0.05
MESSAGES = 20


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(4096):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def _ping_pong(port: int) -> tuple[list[bytes], float]:
    """MESSAGES sequential round trips through the relay; the echoes and the total time."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    echoes = []
    for i in range(MESSAGES):
        message = f"message {i:03d}\n".encode()
        writer.write(message)
        echoes.append(await reader.readexactly(len(message)))
    writer.write_eof()
    assert await reader.read() == b""  # the end of the stream is relayed both ways
    writer.close()
    return echoes, time.monotonic() - start


async def test_delay_is_applied_and_bytes_arrive_in_order(echo: int) -> None:
    with Relay([("127.0.0.1", "127.0.0.1", echo)], RTT, 0.0, short_tmp()) as relay:
        echoes, elapsed = await _ping_pong(relay.ports[0])
        counts = relay.stop()
    assert echoes == [f"message {i:03d}\n".encode() for i in range(MESSAGES)]
    # The handshake (1.5 RTT before the first byte reaches the server), then a round trip each.
    assert elapsed >= 1.5 * RTT + MESSAGES * RTT
    assert counts["lost"] == counts["syn_lost"] == 0
    assert counts["connections"] == 1 and counts["chunks"] >= 2 * MESSAGES


async def test_loss_is_drawn_and_paid_as_retransmission_timeouts(echo: int) -> None:
    with Relay([("127.0.0.1", "127.0.0.1", echo)], RTT, 0.3, short_tmp(), seed=7) as relay:
        echoes, elapsed = await _ping_pong(relay.ports[0])
        counts = relay.stop()
    assert echoes == [f"message {i:03d}\n".encode() for i in range(MESSAGES)]
    chunks = counts["chunks"]
    assert 0 < counts["lost"] < chunks  # some lost, not all
    # Each lost chunk waited one retransmission timeout on top of its round trip.
    assert elapsed >= MESSAGES * RTT + counts["lost"] * (RTT + MIN_RTO)


def test_durations_and_fractions_parse() -> None:
    assert seconds("100ms") == pytest.approx(0.1)
    assert seconds("0.25s") == seconds("0.25") == pytest.approx(0.25)
    assert fraction("1%") == pytest.approx(0.01)
    assert fraction("0.02") == pytest.approx(0.02)
    with pytest.raises(argparse.ArgumentTypeError):
        fraction("100%")
