"""The console's connection pool across actions: the next action on a host rides the channel of
the last one (one `run` frame, no channel to open), whatever went away in between (the channel,
the connection) is replaced without the investigator noticing, and a connection left unused for
the inventory's ``idle_timeout`` is closed, never one that an action still uses.

The agent is a scripted asyncssh server on 127.0.0.1 port 0 that counts the channels it is
asked to open and the runs it receives, so reuse is observed from the agent's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncssh
import pytest
import tomli_w

from console.fanout.dispatch import Dispatcher
from console.fanout.ssh import Connector, Pool
from console.fanout.ssh_transport import SshTransport
from console.results.records import HostResult, Summary
from inventory.loader import load_inventory
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.frames import encode_frame, read_frame
from protocol.messages import Accepted, AgentHello, Done, ErrorMsg, Finished, Progress
from tests.support.paths import short_tmp
from tests.support.waiting import until

AGENT = {"name": "scripted", "version": "0", "platform": "linux", "modules": ["file"]}


@dataclass
class Script:
    """What the scripted agent does with the Nth run it receives (0-based) on any channel:
    ``vanish`` closes the channel unanswered, ``fail`` answers with an error frame, ``stray``
    sends one more frame after the answer."""

    vanish: set[int] = field(default_factory=set)
    fail: set[int] = field(default_factory=set)
    stray: set[int] = field(default_factory=set)
    answer_after: float = 0.0
    strayed: asyncio.Event = field(default_factory=asyncio.Event)
    channels: int = 0
    runs: list[str] = field(default_factory=list)
    connections: list[asyncssh.SSHServerConnection] = field(default_factory=list)

    async def serve(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        self.channels += 1
        try:
            while (frame := await read_frame(process.stdin)) is not None:
                if frame["type"] == "hello":
                    process.stdout.write(encode_frame(AgentHello(1, AGENT).to_frame()))
                    continue
                action_id = frame["envelope"]["action"]["id"]
                index = len(self.runs)
                self.runs.append(action_id)
                if index in self.vanish:
                    return
                if index in self.fail:
                    process.stdout.write(encode_frame(ErrorMsg(detail="scripted").to_frame()))
                    return
                await asyncio.sleep(self.answer_after)
                for message in (
                    Accepted(action_id=action_id),
                    Done(op=0, status="ok", stats={}),
                    Finished(action_id=action_id),
                ):
                    process.stdout.write(encode_frame(message.to_frame()))
                if index in self.stray:  # one frame too many, once the console has parked
                    await asyncio.sleep(0.1)
                    process.stdout.write(encode_frame(Progress(op=0, stats={}).to_frame()))
                    await process.stdout.drain()
                    self.strayed.set()
        finally:
            process.exit(0)


class _Server(asyncssh.SSHServer):
    def __init__(self, script: Script) -> None:
        self.script = script

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.script.connections.append(conn)


@asynccontextmanager
async def holding_relay(port: int, hold: float) -> AsyncIterator[int]:
    """A TCP relay to ``port`` that takes each connection at once and starts passing bytes
    after ``hold`` seconds: an agent whose handshake is slow (a busy CPU, a long path)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        relays.add(task := asyncio.current_task())
        try:
            await asyncio.sleep(hold)
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        finally:
            relays.discard(task)
            writer.close()

    relays: set[asyncio.Task[None] | None] = set()
    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(relays):  # still holding: stopped with the test
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


@asynccontextmanager
async def scripted_host(
    script: Script,
    idle_timeout: float | None = None,
    keepalive: float = 30,
    *,
    connect_timeout: float = 5,
    hold: float | None = None,
    address: str = "127.0.0.1",
) -> AsyncIterator[tuple[Pool, Dispatcher]]:
    where = short_tmp("pool")
    console_key = asyncssh.generate_private_key("ssh-ed25519")
    console_key.write_private_key(str(where / "console_ed25519"))
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(
        lambda: _Server(script),
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        authorized_client_keys=asyncssh.import_authorized_keys(
            console_key.export_public_key().decode()
        ),
        process_factory=script.serve,
        encoding=None,
        line_editor=False,
    )
    async with contextlib.AsyncExitStack() as stack:
        port = server.sockets[0].getsockname()[1]
        if hold is not None:
            port = await stack.enter_async_context(holding_relay(port, hold))
        public = host_key.export_public_key().decode().strip()
        (where / "known_hosts").write_text(f"[{address}]:{port} {public}\n")
        inventory = {
            "defaults": {
                "known_hosts": "known_hosts",
                "client_keys": ["console_ed25519"],
                "connect_timeout": connect_timeout,
            },
            "hosts": [{"name": "h", "address": address, "port": port}],
        }
        (where / "inventory.toml").write_bytes(tomli_w.dumps(inventory).encode())
        pool = Pool(Connector(load_inventory(where / "inventory.toml"), keepalive), idle_timeout)
        try:
            yield pool, Dispatcher(SshTransport(pool))
        finally:
            await pool.close()
            server.close()
            await server.wait_closed()


async def act(dispatcher: Dispatcher) -> HostResult:
    """One unsigned action (the scripted agent checks nothing); the host's result."""
    action = make_action("pool", "all", [Operation("file", {"paths": ["/"], "name": ["."]})])
    hosts = list(dispatcher.transport.pool.connector.inventory.hosts)  # type: ignore[attr-defined]
    summary: Summary = await dispatcher.run(Envelope(action), hosts, lambda _event: None)
    return summary.results["h"]


async def test_the_next_action_rides_the_channel_of_the_last() -> None:
    script = Script()
    async with scripted_host(script) as (_, dispatcher):
        results = [await act(dispatcher) for _ in range(3)]
    assert [r.status for r in results] == ["nomatch"] * 3
    assert all(r.agent == AGENT for r in results)  # the hello of the first, remembered
    assert (script.channels, len(script.runs), len(script.connections)) == (1, 3, 1)


async def test_a_parked_channel_gone_before_answering_is_replaced() -> None:
    script = Script(vanish={1})
    async with scripted_host(script) as (_, dispatcher):
        first, second = await act(dispatcher), await act(dispatcher)
    assert (first.status, second.status) == ("nomatch", "nomatch"), second.detail
    assert script.channels == 2 and script.runs[1] == script.runs[2]  # the same action, resent


async def test_a_failed_action_leaves_no_channel_behind() -> None:
    script = Script(fail={0})
    async with scripted_host(script) as (_, dispatcher):
        failed, after = await act(dispatcher), await act(dispatcher)
    assert (failed.status, failed.detail) == ("error", "agent error: scripted")
    assert after.status == "nomatch" and script.channels == 2


async def test_a_channel_that_spoke_out_of_turn_is_not_reused() -> None:
    script = Script(stray={0})
    async with scripted_host(script) as (pool, dispatcher):
        first = await act(dispatcher)
        await script.strayed.wait()
        await until(  # delivered over loopback while the channel is parked: it closes
            lambda: all(channel.is_closing() for channel, _, _ in pool._parked.values()),
            what="the parked channel closed",
        )
        second = await act(dispatcher)
    assert (first.status, second.status) == ("nomatch", "nomatch"), second.detail
    assert script.channels == 2


async def test_a_dead_connection_is_replaced_for_the_next_action() -> None:
    script = Script()
    async with scripted_host(script) as (pool, dispatcher):
        first = await act(dispatcher)
        script.connections[0].abort()  # the agent's end drops the TCP connection
        await until(
            lambda: not pool.is_warm(pool.connector.inventory.hosts[0]), what="the drop seen"
        )
        second = await act(dispatcher)
        assert pool.is_warm(pool.connector.inventory.hosts[0])
    assert (first.status, second.status) == ("nomatch", "nomatch"), second.detail
    assert len(script.connections) == 2 and script.channels == 2


async def test_an_unused_connection_is_closed_after_the_idle_timeout() -> None:
    script = Script()
    async with scripted_host(script, idle_timeout=0.3) as (pool, dispatcher):
        host = pool.connector.inventory.hosts[0]
        first = await act(dispatcher)
        await until(
            lambda: not pool.is_warm(host) and script.connections[0].is_closed(),
            what="the idle connection closed at both ends",
        )
        assert not pool.is_warm(host) and script.connections[0].is_closed()
        second = await act(dispatcher)
    assert (first.status, second.status) == ("nomatch", "nomatch")
    assert len(script.connections) == 2


async def test_a_connection_in_use_is_not_reaped_however_long_the_action() -> None:
    script = Script(answer_after=1.0)
    async with scripted_host(script, idle_timeout=0.3) as (_, dispatcher):
        result = await act(dispatcher)
    assert result.status == "nomatch", result.detail
    assert len(script.connections) == 1  # the reaper left it alone while the action ran


async def test_keepalives_watch_a_connection_only_while_an_action_uses_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    script = Script(answer_after=1.5)  # the agent is silent for 1.5 s before it answers
    asyncssh.set_debug_level(1)
    caplog.set_level(logging.DEBUG, logger="asyncssh")

    def asked() -> int:
        return sum("Sending keepalive request" in r.getMessage() for r in caplog.records)

    async with scripted_host(script, keepalive=0.3) as (_, dispatcher):
        result = await act(dispatcher)
        during = asked()
        await asyncio.sleep(1.5)  # parked and idle
        idle = asked() - during
        script.answer_after = 1.5
        again = await act(dispatcher)  # on the parked channel: watched again
        second = asked() - during - idle
    assert (result.status, again.status) == ("nomatch", "nomatch")
    assert during >= 2 and idle == 0 and second >= 2, (during, idle, second)


async def test_a_handshake_slower_than_the_connect_timeout_is_waited_for() -> None:
    """The connect timeout names hosts that do not answer; one that took the connection but is
    slow to finish the handshake (a wave of handshakes on a busy CPU) is waited for."""
    async with scripted_host(Script(), connect_timeout=0.5, hold=1.0) as (_, dispatcher):
        result = await act(dispatcher)
    assert (result.status, result.detail) == ("nomatch", "")


async def test_a_host_that_takes_the_connection_and_never_speaks_ssh_is_named() -> None:
    async with scripted_host(Script(), connect_timeout=0.25, hold=60) as (_, dispatcher):
        result = await act(dispatcher)
    assert (result.status, result.detail) == ("unreachable", "SSH handshake timed out")


async def test_a_host_named_by_a_name_is_reached_on_the_address_that_answers() -> None:
    """``localhost`` may resolve to ::1 first, where nothing listens: the next address is tried."""
    async with scripted_host(Script(), address="localhost") as (_, dispatcher):
        result = await act(dispatcher)
    assert (result.status, result.detail) == ("nomatch", "")
