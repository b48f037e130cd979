"""Fleet operations: is every agent reachable, pinned and healthy; pin a new agent's host key.

``inventory check`` connects to every targeted host in parallel through the same pinned path as
an investigation (a host-key mismatch is reported, never accepted), says hello, and measures the
clock skew from the agent's hello (agents reject actions from consoles whose clocks are off by
more than their ``skew``). When the agents have the ``agent`` module and a signing key is at hand,
it then runs that module as a signed action over the same connections: host name, OS, kernel,
uptime, and whether this investigator's key is accepted there at all.

``inventory trust`` fetches the key a host presents (key exchange only: nothing is authenticated
or sent) and pins it only after a confirmation or a matching ``--fingerprint``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from console.fanout.dispatch import DEFAULT_CONCURRENCY, Dispatcher
from console.fanout.ssh import HANDSHAKE_TIMEOUTS, Connector, Pool
from console.fanout.ssh_transport import SshTransport, ssh_failure
from console.results.records import Event, HostEvent, MatchEvent
from inventory.model import Host, Inventory
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.errors import FrameError, SpyglassError, UsageError
from protocol.frames import encode_frame, read_frame
from protocol.messages import TO_CONSOLE, AgentHello, ClientHello, decode_message
from protocol.signing import Signer
from protocol.transport import KEX, SUBSYSTEM

#: Above this skew the report warns: agents refuse actions valid further in the future than
#: their ``skew`` setting (60 s by default), and expiry checks drift by as much.
SKEW_WARNING_MS = 30_000


@dataclass
class HostHealth:
    host: str
    address: str
    status: str = "ok"  # ok / unreachable / hostkey-mismatch / auth-failed / error
    detail: str = ""
    version: str | None = None
    platform: str | None = None
    modules: list[str] = field(default_factory=list)
    skew_ms: int | None = None
    rtt_ms: int | None = None
    agent: dict[str, Any] | None = None  # the agent module's row
    action: str | None = None  # outcome of the agent-module action: matched / rejected:acl ...

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        """``inventory check --json``: every field, in declaration order."""
        return {"event": "host", **dataclasses.asdict(self)}


async def check_fleet(
    inventory: Inventory,
    hosts: list[Host],
    *,
    signer: Signer | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    on_host: Callable[[HostHealth], None] | None = None,
) -> list[HostHealth]:
    """Hello (and, with a signer, the ``agent`` module) on every host; one HostHealth each."""
    pool = Pool(Connector(inventory))
    gate = asyncio.Semaphore(concurrency)
    try:

        async def one(host: Host) -> HostHealth:
            async with gate:
                return await _hello(pool, host)

        results = await asyncio.gather(*(one(h) for h in hosts))
        by_name = {r.host: r for r in results}
        with_module = [
            h for h in hosts if by_name[h.name].ok and "agent" in by_name[h.name].modules
        ]
        if signer is not None and with_module:
            await _agent_module(pool, signer, with_module, by_name, concurrency)
        for result in results:
            if on_host is not None:
                on_host(result)
        return list(results)
    finally:
        await pool.close()


async def _hello(pool: Pool, host: Host) -> HostHealth:
    health = HostHealth(host.name, f"{host.address}:{host.port}")
    try:
        # the TCP connection, the handshake, then a channel and a hello
        timeout = pool.connector.inventory.defaults.connect_timeout * (HANDSHAKE_TIMEOUTS + 2)
        async with asyncio.timeout(timeout):
            conn = await pool.get(host)
            process = await conn.create_process(subsystem=SUBSYSTEM, encoding=None)
            try:
                sent = time.time()
                process.stdin.write(encode_frame(ClientHello(versions=[1]).to_frame()))
                frame = await read_frame(process.stdout)
                received = time.time()
            finally:
                process.close()
        if frame is None:
            raise FrameError("the agent closed the channel without a hello")
        message = decode_message(frame, TO_CONSOLE)
        if not isinstance(message, AgentHello):
            raise FrameError(f"expected a hello, got {frame.get('type')!r}")
    except TimeoutError:
        return _failed(health, "unreachable", "no answer in time")
    except (asyncssh.Error, OSError, SpyglassError) as err:
        pool.discard(host)
        failure = ssh_failure(err, pool.connector, host)
        return _failed(health, failure.status, failure.detail)
    agent = message.agent
    health.version = str(agent.get("version"))
    health.platform = str(agent.get("platform"))
    modules = agent.get("modules")
    health.modules = [str(m) for m in modules] if isinstance(modules, list) else []
    health.rtt_ms = int((received - sent) * 1000)
    clock = agent.get("time_ms")
    if isinstance(clock, int) and not isinstance(clock, bool):
        health.skew_ms = clock - int((sent + received) / 2 * 1000)
    return health


def _failed(health: HostHealth, status: str, detail: str) -> HostHealth:
    health.status, health.detail = status, detail
    return health


async def _agent_module(
    pool: Pool,
    signer: Signer,
    hosts: list[Host],
    by_name: dict[str, HostHealth],
    concurrency: int,
) -> None:
    action = make_action("inventory check", "all", [Operation("agent", {})], expire_seconds=120)
    envelope = await asyncio.to_thread(signer.sign, Envelope(action))

    def sink(event: Event) -> None:
        if isinstance(event, MatchEvent):
            by_name[event.host].agent = event.data
        elif isinstance(event, HostEvent):
            r = event.result
            by_name[r.host].action = f"{r.status}:{r.reason}" if r.reason else r.status

    await Dispatcher(SshTransport(pool), concurrency=concurrency).run(envelope, hosts, sink)


# -- trust -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Presented:
    host: Host
    key: asyncssh.SSHKey
    pinned: list[str]  # fingerprints already pinned for this host

    @property
    def fingerprint(self) -> str:
        return str(self.key.get_fingerprint("sha256"))

    @property
    def already_trusted(self) -> bool:
        return self.fingerprint in self.pinned


async def fetch_host_key(inventory: Inventory, host: Host) -> Presented:
    """The key ``host`` presents. Key exchange only (no authentication, nothing sent); a jump
    host on the way is reached through its own pinned key."""
    connector = Connector(inventory)
    tunnel = await connector.connect(inventory.by_name(host.jump)) if host.jump else None
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(
                host.address,
                host.port,
                tunnel=tunnel if tunnel is not None else (),
                config=None,
                kex_algs=KEX,
            ),
            timeout=inventory.defaults.connect_timeout * 2,
        )
    except TimeoutError:
        raise UsageError(f"{host.name}: no answer from {host.address}:{host.port}") from None
    except (OSError, asyncssh.Error) as err:
        reason = getattr(err, "reason", None) or getattr(err, "strerror", None) or str(err)
        raise UsageError(
            f"{host.name}: cannot reach {host.address}:{host.port}: {reason}"
        ) from None
    finally:
        if tunnel is not None:
            tunnel.close()
    if key is None:
        raise UsageError(f"{host.name}: the server presented no host key")
    pinned = [str(k.get_fingerprint("sha256")) for k in connector.pinned_keys(host)]
    return Presented(host, key, pinned)


def known_hosts_pattern(host: Host) -> str:
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def pin(known_hosts: Path, presented: Presented) -> None:
    """Append the presented key for the host; lines pinning another key for exactly the same
    host pattern are removed (the investigator confirmed the change)."""
    pattern = known_hosts_pattern(presented.host)
    public = presented.key.export_public_key().decode().split()
    line = f"{pattern} {public[0]} {public[1]}\n"
    kept = []
    if known_hosts.exists():
        for old in known_hosts.read_text().splitlines(keepends=True):
            if old.split(maxsplit=1)[:1] == [pattern]:
                continue
            kept.append(old if old.endswith("\n") else old + "\n")
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    tmp = known_hosts.with_name(known_hosts.name + ".tmp")
    tmp.write_text("".join(kept) + line)
    tmp.replace(known_hosts)


def format_skew(skew_ms: int | None) -> str:
    if skew_ms is None:
        return "?"
    return f"{skew_ms / 1000:+.3f}s"


def check_exit_status(results: list[HostHealth]) -> int:
    """0 every host healthy; 3 some host failed (as `spyglass run`)."""
    return 0 if all(r.ok for r in results) else 3


__all__ = [
    "SKEW_WARNING_MS",
    "HostHealth",
    "Presented",
    "check_exit_status",
    "check_fleet",
    "fetch_host_key",
    "format_skew",
    "known_hosts_pattern",
    "pin",
]
