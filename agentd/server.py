"""The asyncssh side of the agent: one listener per agent, the ``spyglass`` subsystem only.

SSH access alone grants nothing here: the channel speaks the frame protocol and only signed
actions run. Anything else (shell, exec, another subsystem) gets exit status 127.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import asyncssh

from agentd.agent import Agent
from agentd.runner import Zygote
from agentd.ssh_keys import AuthorizedKeys, KeyedServer
from protocol.agent_config import load_config
from protocol.errors import ConfigError
from protocol.keyfile import too_open
from protocol.transport import AGENT_CIPHERS, AGENT_KEX, SUBSYSTEM

#: Input a channel may buffer before flow control stops the console (asyncssh's default is 2 MiB);
#: with ``max_channels`` it bounds what one connection can make the agent hold.
CHANNEL_WINDOW = 256 << 10
#: Seconds of silence before the agent asks a console whether it is still there: a dead one's
#: connection goes after three unanswered asks. Its channels go sooner (``idle_timeout``). Long,
#: because a console holding 10,000 pooled connections answers every agent's asks.
KEEPALIVE = 300
#: Seconds between two prunings of the replay caches.
PRUNE_EVERY = 5


async def start_agent(agent: Agent) -> list[tuple[str, int]]:
    """Listen on the agent's addresses; returns the bound (host, port) pairs."""
    config = agent.config
    channels: collections.Counter[object] = collections.Counter()

    async def handle(process: asyncssh.SSHServerProcess[bytes]) -> None:
        if process.subsystem != SUBSYSTEM:
            process.stderr.write(b"spyglass: only the 'spyglass' subsystem is served\n")
            process.exit(127)
            return
        # Each open channel may buffer a window of input: bound them per connection.
        conn = process.get_extra_info("connection")
        if channels[conn] >= agent.config.agent.max_channels:
            process.stderr.write(b"spyglass: too many channels on this connection\n")
            process.exit(1)
            return
        channels[conn] += 1
        try:
            await _serve_channel(agent, process)
        finally:
            channels[conn] -= 1
            if not channels[conn]:
                del channels[conn]

    bound = []
    host_key = asyncssh.read_private_key(str(config.resolve(config.agent.host_key)))
    authorized = AuthorizedKeys(config.resolve(config.agent.authorized_keys))
    for host, port in config.listen_addresses():
        server = await asyncssh.listen(
            host,
            port,
            server_host_keys=[host_key],
            authorized_client_keys=None,  # set per connection by KeyedServer
            server_factory=lambda: KeyedServer(authorized),
            process_factory=handle,
            encoding=None,
            allow_pty=False,
            line_editor=False,  # no PTY, so nothing to edit: one Python layer less per write
            agent_forwarding=False,
            x11_forwarding=False,
            allow_scp=False,
            gss_host=None,
            login_timeout=config.agent.login_timeout,
            keepalive_interval=KEEPALIVE,
            window=CHANNEL_WINDOW,
            kex_algs=AGENT_KEX,
            encryption_algs=AGENT_CIPHERS,
        )
        for sock in server.sockets:
            bound.append(sock.getsockname()[:2])
    return bound


async def _serve_channel(agent: Agent, process: asyncssh.SSHServerProcess[bytes]) -> None:
    peer = process.get_extra_info("peername") or ("?", 0)

    async def write(data: bytes) -> None:
        try:
            process.stdout.write(data)
            await process.stdout.drain()
        except asyncssh.Error as err:  # the channel is gone: one kind of error for the agent
            raise ConnectionResetError(str(err)) from None

    # If the console goes away, serve() stops following its actions, which run on; a mere end
    # of input (half-close) still gets their answers.
    # Output waits for the peer's window instead of piling up in a buffer: a follower that
    # wrote its last frame has been read up to the window, and one whose peer stopped reading
    # is still waiting when the action's expiry cuts the channel.
    process.channel.set_write_buffer_limits(high=0)
    closed = asyncio.ensure_future(process.channel.wait_closed())
    try:
        with contextlib.suppress(asyncssh.Error, BrokenPipeError, ConnectionError):
            # Closing from this end discards what the peer did not read (a clean close would
            # wait, forever, for a peer that stopped reading to take it).
            abort = process.channel.abort
            await agent.serve(process.stdin, write, f"{peer[0]}:{peer[1]}", closed, abort)
    finally:
        closed.cancel()
    process.exit(0)


async def serve_forever(config_paths: Sequence[str | Path]) -> None:
    """Start every configured agent, announce where each listens, then serve until signalled."""
    configs = [load_config(p) for p in config_paths]
    for config in configs:
        if reason := too_open(config.resolve(config.agent.host_key)):
            raise ConfigError(f"{config.agent.name}: host key {reason}")
    agents = [Agent(config) for config in configs]
    for agent in agents:
        for host, port in await start_agent(agent):
            print(f"listening {agent.name} {host}:{port}", flush=True)
    Zygote.current()  # start it now, with the code on disk at start, not at the first action
    for agent in agents:
        await agent.watchers.rearm()  # watchers armed before a restart, still valid
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(agents))
    pruning = asyncio.create_task(_prune(agents))
    await stop.wait()
    print(f"stopping: {', '.join(a.name for a in agents)}", flush=True)
    pruning.cancel()
    for agent in agents:
        agent.close()


async def _prune(agents: list[Agent]) -> None:
    """Forget expired actions and their outcomes while serving, not only at start-up."""
    while True:
        await asyncio.sleep(PRUNE_EVERY)
        for agent in agents:
            agent.prune()


def _reload(agents: list[Agent]) -> None:
    for agent in agents:
        try:
            agent.reload()
            print(f"reloaded {agent.name}", flush=True)
        except Exception as err:  # keep serving with the old configuration
            print(
                f"reload of {agent.name} failed, keeping the old configuration: {err}",
                file=sys.stderr,
                flush=True,
            )
