"""The connect window over long round trips (issue 17's latency goal): handshakes that take
their round trips, not queueing for CPU, open the window; a CPU-saturated loopback does not."""

from __future__ import annotations

import asyncio

from console.fanout.ssh import ConnectWindow


async def _waiting(
    window: ConnectWindow, count: int
) -> tuple[list[asyncio.Task[None]], asyncio.Event]:
    gate = asyncio.Event()

    async def hold() -> None:
        async with window:
            await gate.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(count)]
    await asyncio.sleep(0.01)
    return tasks, gate


async def test_latency_bound_handshakes_grow_the_window() -> None:
    window = ConnectWindow(target=1.25, start=8, low=4, high=64)  # a 5 s connect timeout
    tasks, gate = await _waiting(window, 16)
    assert window.active == 8
    for _ in range(8):  # 100 ms round trips: about 0.9 s each, over half the target
        window.record(0.9)
        await asyncio.sleep(0)
    assert window.size == 16 and window.active == 16, "latency alone must not hold it closed"
    window.record(2.0)  # slower than the target, but under 3x the path's fastest: no shrink
    assert window.size == 16
    window.record(2.6)  # past half the connect timeout: shrinks whatever the latency
    assert window.size == 12
    gate.set()
    await asyncio.gather(*tasks)


async def test_saturated_loopback_keeps_the_old_limits() -> None:
    window = ConnectWindow(target=1.25, start=8, low=4, high=64)
    tasks, gate = await _waiting(window, 16)
    window.record(0.01)  # the path's own cost: 10 ms
    await asyncio.sleep(0)
    size = window.size
    window.record(0.9)  # 90 times the fastest: queueing for CPU, not round trips
    await asyncio.sleep(0)
    assert window.size == size, "a CPU-bound handshake over half the target must not grow it"
    window.record(1.3)  # over the target: shrinks, as before
    assert window.size == size * 3 // 4
    gate.set()
    await asyncio.gather(*tasks)
