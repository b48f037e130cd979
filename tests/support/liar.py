"""Our own lying agent: it speaks the frame protocol (hello, accepted, matches, done, finished)
and sends as many matches as it is told, never checking the envelope; served on the console's
loopback transport, or by a real asyncssh server on 127.0.0.1 port 0; and a run of the console
in process against a fleet of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import tomli_w

from console.fanout.dispatch import Dispatcher
from console.fanout.investigation import Investigation, MatchCaps
from console.fanout.loopback import LoopbackTransport
from console.fanout.ssh import Connector, Pool
from console.fanout.ssh_transport import SshTransport
from console.results.records import Event, MatchEvent
from console.results.store import Store
from inventory.loader import load_inventory
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.frames import encode_frame, read_frame
from protocol.messages import Accepted, AgentHello, Done, Finished, Match
from tests.support.paths import short_tmp

ROW = {"size": 1, "mode": "-rw-r--r--", "mtime": 0, "matched": ["name"]}


@dataclass
class Liar:
    """How one fake agent behaves: ``rows`` matches of ``pad`` extra bytes each, then done ok."""

    rows: int
    pad: int = 0
    seen_runs: list[str] = field(default_factory=list)

    def frames(self, action_id: str) -> list[bytes]:
        return [
            encode_frame(Match(op=0, data={**ROW, "path": f"/lie/{i}{'x' * self.pad}"}).to_frame())
            for i in range(self.rows)
        ]

    async def answer(self, reader: Any, write: Callable[[bytes], Awaitable[None]]) -> None:
        """Read hello and run, then lie."""
        hello = await read_frame(reader)
        run = await read_frame(reader)
        assert hello is not None and run is not None
        action_id = run["envelope"]["action"]["id"]
        self.seen_runs.append(action_id)
        agent = {"name": "liar", "version": "0", "platform": "linux", "modules": ["file"]}
        await write(encode_frame(AgentHello(version=1, agent=agent).to_frame()))
        await write(encode_frame(Accepted(action_id=action_id).to_frame()))
        for frame in self.frames(action_id):
            await write(frame)
        stats = {"matches": self.rows}
        await write(encode_frame(Done(op=0, status="ok", stats=stats).to_frame()))
        await write(encode_frame(Finished(action_id=action_id).to_frame()))

    async def serve(
        self, reader: Any, write: Callable[[bytes], Awaitable[None]], _peer: str, _closed: Any
    ) -> None:
        """The loopback transport's view of an agent (``Agent.serve``'s signature)."""
        await self.answer(reader, write)

    async def serve_ssh(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        count = 0

        async def write(frame: bytes) -> None:
            nonlocal count
            process.stdout.write(frame)
            count += 1
            if count % 256 == 0:
                await process.stdout.drain()

        try:
            await self.answer(process.stdin, write)
            await process.stdout.drain()
        finally:
            process.exit(0)


@dataclass
class Fleet:
    inventory: Path
    store: Path
    envelope: Envelope
    loopback: LoopbackTransport | None  # None: the hosts are real asyncssh servers


@asynccontextmanager
async def lying_fleet(liars: dict[str, Liar], *, over_ssh: bool = False) -> AsyncIterator[Fleet]:
    """An inventory of the liars: served on the loopback transport, or with ``over_ssh`` by one
    real asyncssh server each, their host keys pinned."""
    where = short_tmp("lie")
    console_key = asyncssh.generate_private_key("ssh-ed25519")
    console_key.write_private_key(str(where / "console_ed25519"))
    authorized = asyncssh.import_authorized_keys(console_key.export_public_key().decode())
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    public = host_key.export_public_key().decode().strip()
    servers, hosts, known = [], [], []
    try:
        for name, liar in liars.items():
            if not over_ssh:
                hosts.append({"name": name, "address": "127.0.0.1", "port": 22})
                continue
            server = await asyncssh.create_server(
                asyncssh.SSHServer,
                "127.0.0.1",
                0,
                server_host_keys=[host_key],
                authorized_client_keys=authorized,
                process_factory=liar.serve_ssh,
                encoding=None,
                line_editor=False,
                allow_scp=False,
            )
            servers.append(server)
            port = server.sockets[0].getsockname()[1]
            hosts.append({"name": name, "address": "127.0.0.1", "port": port})
            known.append(f"[127.0.0.1]:{port} {public}\n")
        (where / "known_hosts").write_text("".join(known))
        inventory = {
            "defaults": {"known_hosts": "known_hosts", "client_keys": ["console_ed25519"]},
            "hosts": hosts,
        }
        (where / "inventory.toml").write_bytes(tomli_w.dumps(inventory).encode())
        # Unsigned: the liar never checks, and the console only forwards what it is given.
        action = make_action("lie", "all", [Operation("file", {"paths": ["/"], "name": ["."]})])
        loopback = (
            None if over_ssh else LoopbackTransport({n: liar.serve for n, liar in liars.items()})
        )
        yield Fleet(where / "inventory.toml", where / "results.db", Envelope(action), loopback)
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


async def investigate(
    fleet: Fleet, caps: MatchCaps, sink: Callable[[Event], None] = lambda e: None
) -> tuple[dict[str, Any], list[MatchEvent]]:
    """Run the fleet's envelope in process; the host results and the matches the sink saw."""
    inventory = load_inventory(fleet.inventory)
    pool = Pool(Connector(inventory))
    store = Store(fleet.store)
    shown: list[MatchEvent] = []

    def collect(event: Event) -> None:
        if isinstance(event, MatchEvent):
            shown.append(event)
        sink(event)

    try:
        dispatcher = Dispatcher(fleet.loopback or SshTransport(pool))
        investigation = Investigation(
            fleet.envelope, list(inventory.hosts), dispatcher, store, caps
        )
        summary = await investigation.run(collect)
    finally:
        await pool.close()
        store.close()
    return summary.results, shown
