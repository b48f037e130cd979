"""The console's SSH path: options built once, host keys pinned, connections pooled.

Everything that costs per connection in asyncssh's defaults is set explicitly (STACK-NOTES §1.5):
no OpenSSH config, keys loaded once, known_hosts parsed once per run and matched per host, no
ssh-agent lookup when keys are given, no GSS, no compression, cheap kex and cipher first.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncssh

from inventory.model import Host, Inventory
from protocol.errors import InventoryError

SUBSYSTEM = "spyglass"
KEX = ["curve25519-sha256", "curve25519-sha256@libssh.org", "mlkem768x25519-sha256"]
CIPHERS = ["aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com"]


class Connector:
    """Opens connections to inventory hosts; one per run or per TUI session."""

    def __init__(self, inventory: Inventory, keepalive: int = 30) -> None:
        defaults = inventory.defaults
        self.inventory = inventory
        try:
            keys = [asyncssh.read_private_key(str(p)) for p in defaults.client_keys]
        except (OSError, asyncssh.KeyImportError) as err:
            raise InventoryError(f"{inventory.path}: client_keys: {err}") from None
        self.known_hosts = _read_known_hosts(defaults.known_hosts)
        self._base = asyncssh.SSHClientConnectionOptions(
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
            kex_algs=KEX,
            encryption_algs=CIPHERS,
            connect_timeout=defaults.connect_timeout,
            login_timeout=defaults.connect_timeout * 2,
            keepalive_interval=keepalive,
            keepalive_count_max=3,
        )

    def pinned_keys(self, host: Host) -> list[Any]:
        if self.known_hosts is None:
            return []
        matched = self.known_hosts.match(host.address, host.address, host.port)
        return list(matched[0])

    async def connect(self, host: Host) -> asyncssh.SSHClientConnection:
        # With no pinned key the handshake fails host-key verification: nothing is sent.
        pinned = self.pinned_keys(host)
        tunnel = None
        if host.jump:
            tunnel = await self.connect(self.inventory.by_name(host.jump))
        return await asyncssh.connect(
            host.address,
            host.port,
            options=self._base,
            config=None,
            known_hosts=(pinned, [], []),
            username=host.user,
            tunnel=tunnel,
        )


class Pool:
    """Keeps one open connection per host for the next action; a dead one is replaced."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}

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
            return conn

    def is_warm(self, host: Host) -> bool:
        conn = self._conns.get(host.name)
        return conn is not None and not conn.is_closed()

    def discard(self, host: Host) -> None:
        if (conn := self._conns.pop(host.name, None)) is not None:
            conn.close()

    async def close(self) -> None:
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
