"""A compromised agent lying to the console: it ignores its own match cap and floods rows.

The agent here is our own: it speaks the frame protocol (hello, accepted, matches, done,
finished) and sends as many matches as it is told, never checking the envelope. It is served on
the console's loopback transport, or (``over_ssh``, for the CLI) by a real asyncssh server on
127.0.0.1 port 0. The console must keep at most its own caps per host and per run,
store and show the same rows, keep the host's status and reported count honest, and say in the
host's detail that the console cap was reached.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import tomli_w

from console.fanout.dispatch import Dispatcher
from console.fanout.investigation import CAP_NOTE, Investigation, MatchCaps
from console.fanout.loopback import LoopbackTransport
from console.fanout.ssh import Connector, Pool
from console.fanout.ssh_transport import SshTransport
from console.results.records import Event, MatchEvent
from console.results.store import Store
from inventory.loader import load_inventory
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.errors import ConfigError
from protocol.frames import encode_frame, read_frame
from protocol.messages import Accepted, AgentHello, Done, Finished, Match
from tests.conftest import short_tmp
from tests.support.cli import SPYGLASS

ROW = {"size": 1, "mode": "-rw-r--r--", "mtime": 0, "matched": ["name"]}


# -- our own lying agent ---------------------------------------------------------------------
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


def stored(fleet: Fleet) -> tuple[dict[str, int], dict[str, Any]]:
    """Rows in the store per host, and the stored host records."""
    store = Store(fleet.store)
    try:
        run_id = fleet.envelope.action.id
        rows: dict[str, int] = {}
        for match in store.matches(run_id):
            rows[match["host"]] = rows.get(match["host"], 0) + 1
        return rows, {h["host"]: dict(h) for h in store.hosts(run_id)}
    finally:
        store.close()


# -- tests -----------------------------------------------------------------------------------
async def test_lying_agent_flood_is_cut_at_the_console_host_cap() -> None:
    liars = {"liar": Liar(rows=3000), "honest": Liar(rows=3)}
    async with lying_fleet(liars) as fleet:
        results, shown = await investigate(fleet, MatchCaps(host_rows=500))
    assert liars["liar"].seen_runs == [fleet.envelope.action.id]
    rows, hosts = stored(fleet)
    assert rows == {"liar": 500, "honest": 3}
    assert sum(1 for e in shown if e.host == "liar") == 500  # shown = stored, nothing more
    # The first rows are the ones kept, in the order the agent sent them.
    assert [e.data["path"] for e in shown if e.host == "liar"][:3] == ["/lie/0", "/lie/1", "/lie/2"]
    liar = hosts["liar"]
    assert (liar["status"], liar["matches"]) == ("matched", 3000)  # what the agent reported
    assert CAP_NOTE in liar["detail"] and "500 rows per host" in liar["detail"]
    assert results["liar"].detail == liar["detail"]
    assert hosts["honest"]["status"] == "matched" and hosts["honest"]["detail"] == ""


async def test_lying_agents_are_cut_at_the_console_run_cap() -> None:
    liars = {f"liar-{i}": Liar(rows=300) for i in range(3)}
    async with lying_fleet(liars) as fleet:
        _, shown = await investigate(fleet, MatchCaps(run_rows=700))
    rows, hosts = stored(fleet)
    assert sum(rows.values()) == len(shown) == 700
    capped = [h for h in hosts.values() if CAP_NOTE in h["detail"]]
    assert capped and all("700 rows per run" in h["detail"] for h in capped)
    assert all(h["status"] == "matched" and h["matches"] == 300 for h in hosts.values())


async def test_lying_agent_with_huge_rows_is_cut_at_the_console_byte_cap() -> None:
    liars = {"liar": Liar(rows=200, pad=50_000)}  # ~10 MB of rows
    async with lying_fleet(liars) as fleet:
        _, shown = await investigate(fleet, MatchCaps(host_bytes=1 << 20))
    rows, hosts = stored(fleet)
    # The row that crosses the cap is kept: at most one frame over it.
    assert rows == {"liar": len(shown)} and 20 <= len(shown) <= 22
    assert CAP_NOTE in hosts["liar"]["detail"] and "bytes per host" in hosts["liar"]["detail"]
    assert os.path.getsize(fleet.store) < 8 << 20


def test_caps_come_from_the_environment() -> None:
    assert MatchCaps.from_env({}) == MatchCaps()
    assert MatchCaps().host_rows == 100_000
    caps = MatchCaps.from_env({"SPYGLASS_HOST_MATCH_CAP": "7", "SPYGLASS_RUN_MATCH_BYTES": "9"})
    assert (caps.host_rows, caps.run_bytes) == (7, 9)
    for bad in ("0", "-1", "many"):
        with pytest.raises(ConfigError, match="SPYGLASS_RUN_MATCH_CAP"):
            MatchCaps.from_env({"SPYGLASS_RUN_MATCH_CAP": bad})


async def test_cli_cap_setting_reaches_the_json_output(lab_gnupghome: Path) -> None:
    """`spyglass run --json` with SPYGLASS_HOST_MATCH_CAP: the host line says what was cut."""
    liars = {"liar": Liar(rows=1000)}
    async with lying_fleet(liars, over_ssh=True) as fleet:
        env = {
            **os.environ,
            "GNUPGHOME": str(lab_gnupghome),
            "SPYGLASS_INVENTORY": str(fleet.inventory),
            "SPYGLASS_STORE": str(fleet.store),
            "SPYGLASS_HOST_MATCH_CAP": "10",
        }
        args = ("run", "file", "--paths", "/", "--name", ".", "-t", "all", "--json")
        proc = await asyncio.create_subprocess_exec(
            *SPYGLASS, *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 100)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode("utf-8").splitlines()]
    assert sum(1 for e in lines if e["event"] == "match") == 10
    host = next(e for e in lines if e["event"] == "host")
    assert (host["status"], host["matches"]) == ("matched", 1000)
    assert f"{CAP_NOTE} (10 rows per host)" in host["detail"]


@pytest.fixture
def lab_gnupghome(lab: Any) -> Path:
    """A key to sign with (the CLI signs before launching; the liar does not care)."""
    return Path(lab.gnupghome)
