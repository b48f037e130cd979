"""The console's SSH path: options built once, host keys pinned, connections pooled.

Everything that costs per connection in asyncssh's defaults is set explicitly (STACK-NOTES §1.5):
no OpenSSH config, keys loaded once, known_hosts parsed once per run and matched per host, no
ssh-agent lookup when keys are given, no GSS, no compression, cheap kex and cipher first.

Handshakes are the CPU-heavy part of a fan-out, on both ends. A ``ConnectWindow`` bounds how many
run at once, adapting so that one completes well within the connect timeout: the timeout's
clock starts only when a handshake gets its turn, so a saturated CPU slows a run down instead of
failing hosts as unreachable. The inventory's ``connect_timeout`` bounds the TCP connection,
which the kernel completes however busy the agent is; the SSH handshake that follows gets
``HANDSHAKE_TIMEOUTS`` times as long, so a wave of handshakes slowed by a busy CPU (the agent's or
ours) or a long path is waited for, while a host that does not answer at all is still named
within the connect timeout. Through a jump host, the connect timeout covers the channel to the
host and the handshake together, as before.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import getpass
import ipaddress
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh

from inventory.model import Host, Inventory
from protocol.errors import InventoryError
from protocol.keyfile import too_open
from protocol.transport import CIPHERS, KEX

#: The SSH handshake's time limit, in connect timeouts, once the TCP connection is made.
HANDSHAKE_TIMEOUTS = 4


class HandshakeTimeout(TimeoutError):
    """The host took the TCP connection but did not finish the SSH handshake in time."""


class ConnectWindow:
    """How many SSH handshakes may run at once, adapted to how long they take.

    A handshake that takes longer than ``target`` (a quarter of the connect timeout) means the
    CPU (ours or the agents') is saturated: the window shrinks by a quarter, at most once per
    ``target``. While handshakes complete in under half of ``target`` and others wait, it grows
    by one per completion. On a fast network with CPU to spare it opens up to ``high``.

    Over long round trips a handshake takes its round trips however idle the CPU is, so both
    limits are also measured against the fastest handshake seen (the path's own latency, with no
    queueing): it grows while a handshake takes under twice that, and shrinks only past three
    times that (never past half the connect timeout). Latency is then paid once per doubling
    wave, not once per ``start`` hosts. It starts at 256: at 100 ms a round trip, 1,000 hosts
    finished cold 1.2 s after their loopback time where a start of 64 took 2.4 s, and on
    loopback both keep the CPU busy alike (``bench/fanout.py --rtt 100ms``).
    """

    def __init__(self, target: float, *, start: int = 256, low: int = 8, high: int = 512) -> None:
        self.target = target
        self.size = start
        self.low, self.high = low, high
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shrunk_at = 0.0
        self._fastest = float("inf")

    async def __aenter__(self) -> None:
        while self.active >= self.size:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.cancelled():
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                else:
                    self._wake()  # woken, then cancelled: pass the turn on
                raise
        self.active += 1

    async def __aexit__(self, *exc: object) -> None:
        self.active -= 1
        self._wake()

    def record(self, seconds: float) -> None:
        """One handshake (or a failed attempt) took ``seconds``."""
        now = time.monotonic()
        self._fastest = min(self._fastest, seconds)
        slow = max(self.target, min(3 * self._fastest, 2 * self.target))
        if seconds > slow:
            if now - self._shrunk_at > self.target:
                self._shrunk_at = now
                self.size = max(self.low, self.size * 3 // 4)
        elif (
            seconds < max(self.target / 2, 2 * self._fastest)
            and self._waiters
            and self.size < self.high
        ):
            self.size += 1
            self._wake()

    def _wake(self) -> None:
        """Hand free turns to the oldest waiters (O(turns), whatever the queue's length)."""
        free = self.size - self.active
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1


class Connector:
    """Opens connections to inventory hosts; one per run or per TUI session."""

    def __init__(self, inventory: Inventory, keepalive: float = 30) -> None:
        defaults = inventory.defaults
        self.inventory = inventory
        self.keepalive = keepalive
        self.window = ConnectWindow(target=defaults.connect_timeout / 4)
        try:
            keys = [asyncssh.read_private_key(str(p)) for p in defaults.client_keys]
            for reason in filter(None, map(too_open, defaults.client_keys)):
                print(f"spyglass: warning: client key {reason}", file=sys.stderr)
        except (OSError, asyncssh.KeyImportError) as err:
            raise InventoryError(f"{inventory.path}: client_keys: {err}") from None
        self.known_hosts = _read_known_hosts(defaults.known_hosts)
        _name_the_local_user()
        self.options = asyncssh.SSHClientConnectionOptions(
            username=defaults.user,
            client_keys=keys or None,
            agent_path=None if keys else (),
            config=None,
            gss_host=None,
            gss_kex=False,
            gss_auth=False,
            preferred_auth="publickey",
            password=None,
            kbdint_auth=False,
            compression_algs=None,
            x509_trusted_certs=None,  # else ~/.ssh/ca-bundle.crt and ~/.ssh/crt are looked up
            x509_trusted_cert_paths=None,  # on every connection
            kex_algs=KEX,
            encryption_algs=CIPHERS,
            connect_timeout=defaults.connect_timeout * HANDSHAKE_TIMEOUTS,  # with TCP in hand
            login_timeout=defaults.connect_timeout * HANDSHAKE_TIMEOUTS,
            keepalive_interval=keepalive,
            keepalive_count_max=3,
        )

    def pinned_keys(self, host: Host) -> list[Any]:
        if self.known_hosts is None:
            return []
        # by the inventory's address as written: asyncssh wants an IP as its second argument
        # and takes it from the first when that is one; a host name is matched as a name
        matched = self.known_hosts.match(host.address, "", host.port)
        return list(matched[0])

    async def connect(self, host: Host) -> asyncssh.SSHClientConnection:
        tunnel = None
        if host.jump:  # connected first, outside the window: a host never holds a slot waiting
            tunnel = await self.connect(self.inventory.by_name(host.jump))
        timeout = self.inventory.defaults.connect_timeout
        async with self.window:  # the connect timeout's clock starts here
            start = time.monotonic()
            try:
                if tunnel is not None:  # the channel through the jump host and the handshake
                    return await self._handshake(host, tunnel=tunnel, connect_timeout=timeout)
                sock = await asyncio.wait_for(_tcp_connect(host.address, host.port), timeout)
                try:
                    return await self._handshake(host, sock=sock)
                except BaseException as err:
                    if sock.fileno() != -1:  # asyncssh failed before it took the socket
                        sock.close()
                    if isinstance(err, TimeoutError):
                        raise HandshakeTimeout("SSH handshake timed out") from None
                    raise
            finally:
                self.window.record(time.monotonic() - start)

    async def _handshake(self, host: Host, **how: Any) -> asyncssh.SSHClientConnection:
        # With no pinned key the handshake fails host-key verification: nothing is sent.
        return await asyncssh.connect(
            host.address,
            host.port,
            options=self.options,
            config=None,
            known_hosts=(self.pinned_keys(host), [], []),
            username=host.user,
            **how,
        )


async def _tcp_connect(address: str, port: int) -> socket.socket:
    """A connected TCP socket to the first of ``address``'s addresses that takes it."""
    loop = asyncio.get_running_loop()
    failure: OSError = OSError(f"no address for {address}")
    for family, where in await _addresses(address, port):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, where)
            return sock
        except OSError as err:
            sock.close()
            failure = err
        except BaseException:  # cancelled by the connect timeout
            sock.close()
            raise
    raise failure


async def _addresses(address: str, port: int) -> list[tuple[int, Any]]:
    """(family, socket address) pairs; an IP literal skips the resolver's thread hop."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(address, port, type=socket.SOCK_STREAM)
        return [(family, where) for family, _, _, _, where in infos]
    return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, (address, port))]


def _name_the_local_user() -> None:
    """asyncssh asks ``getpass.getuser()`` on every connection; with no LOGNAME or USER in the
    environment (cron, systemd units, containers) each ask is a passwd lookup: 5% of a cold
    fan-out's console CPU. Ask once, and leave the answer where getuser looks first."""
    if not any(os.environ.get(name) for name in ("LOGNAME", "USER", "LNAME", "USERNAME")):
        with contextlib.suppress(KeyError, OSError):  # no passwd entry: asyncssh will say so
            os.environ["LOGNAME"] = getpass.getuser()


#: How long a parked channel stays reusable: within the 300 s an agent keeps a silent channel
#: after its last action (by default: agentd.agent.PARKED times its 60 s ``idle_timeout``, then
#: it closes the channel without a word) and within the pool's own ``idle_timeout``. A channel
#: an agent closed first is noticed before use, or, in a race, before any answer, and the action
#: goes out on a new channel (``SshTransport.converse``).
PARK_SECONDS = 240.0


class Pool:
    """Keeps one open connection per host for the next action (a dead one is replaced), and the
    channel of the host's last action if it ended cleanly: the next action on that host is then
    one frame, with no channel to open or close (a third of a warm action's CPU on both ends)."""

    def __init__(self, connector: Connector, idle_timeout: float | None = None) -> None:
        self.connector = connector
        self.idle_timeout = idle_timeout or connector.inventory.defaults.idle_timeout
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._parked: dict[str, tuple[asyncssh.SSHClientChannel[bytes], Any, float]] = {}
        self._last_used: dict[str, float] = {}
        self._in_use: collections.Counter[str] = collections.Counter()
        self._reaper: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def using(self, host: Host) -> Iterator[None]:
        """Mark the host's connection busy (an action of any length) so it is never reaped.

        Keepalives watch a connection only while an action uses it (a silent agent is then
        noticed): an idle pool of 10,000 connections would otherwise exchange 333 keepalives a
        second, a tenth of a core, and a dead idle connection is replaced at its next use."""
        self._in_use[host.name] += 1
        self._watch(host.name, self.connector.keepalive)
        try:
            yield
        finally:
            self._in_use[host.name] -= 1
            self._last_used[host.name] = time.monotonic()
            if not self._in_use[host.name]:
                self._watch(host.name, 0)

    def _watch(self, name: str, keepalive: float) -> None:
        conn = self._conns.get(name)
        if conn is not None and not conn.is_closed():
            conn.set_keepalive(keepalive)

    async def _reap_idle(self) -> None:
        """Close connections (and parked channels) unused for ``idle_timeout`` seconds."""
        while True:
            await asyncio.sleep(max(0.1, self.idle_timeout / 4))
            cutoff = time.monotonic() - self.idle_timeout
            for name, used in list(self._last_used.items()):
                if used < cutoff and not self._in_use[name]:
                    self._drop(name)

    def park(self, host: Host, channel: asyncssh.SSHClientChannel[bytes], session: Any) -> None:
        """Keep an idle channel (and its session) for the host's next action; one per host."""
        if channel.is_closing() or host.name in self._parked or host.name not in self._conns:
            channel.close()
            return
        self._parked[host.name] = (channel, session, time.monotonic() + PARK_SECONDS)

    def unpark(self, host: Host) -> tuple[asyncssh.SSHClientChannel[bytes], Any] | None:
        """The host's parked channel, if it is still open and fresh enough; the caller owns it."""
        entry = self._parked.pop(host.name, None)
        if entry is None:
            return None
        channel, session, reusable_until = entry
        if channel.is_closing() or time.monotonic() > reusable_until:
            channel.close()
            return None
        return channel, session

    async def get(self, host: Host, *, fresh: bool = False) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(host.name, asyncio.Lock())
        async with lock:
            conn = self._conns.get(host.name)
            if conn is not None and (fresh or conn.is_closed()):
                conn.close()
                conn = None
            if conn is None:
                conn = await self.connector.connect(host)
                self._conns[host.name] = conn
            self._last_used[host.name] = time.monotonic()
            if self._reaper is None:
                self._reaper = asyncio.create_task(self._reap_idle())
            return conn

    def is_warm(self, host: Host) -> bool:
        conn = self._conns.get(host.name)
        return conn is not None and not conn.is_closed()

    def discard(self, host: Host) -> None:
        self._drop(host.name)

    def _drop(self, name: str) -> None:
        self._last_used.pop(name, None)
        if (parked := self._parked.pop(name, None)) is not None:
            parked[0].close()
        if (conn := self._conns.pop(name, None)) is not None:
            conn.close()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for channel, _, _ in self._parked.values():
            channel.close()
        self._parked.clear()
        conns = list(self._conns.values())
        self._conns.clear()
        for conn in conns:
            conn.close()
        await asyncio.gather(*(c.wait_closed() for c in conns), return_exceptions=True)


def _read_known_hosts(path: Path | None) -> asyncssh.SSHKnownHosts | None:
    if path is None:
        return None
    try:
        return asyncssh.import_known_hosts(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise InventoryError(f"{path}: cannot read known_hosts: {err}") from None
