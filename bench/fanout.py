"""Fan-out benchmark: a signed `file` search on N lab agents, cold then warm, against the floor.

The floor is a minimal asyncssh client doing only connect + subsystem + one frame each way against
the same agents, measured in the same run, so the printed ratios hold on any machine.

    .venv/bin/python bench/fanout.py -n 1000
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncssh
import psutil

# Run as a script, bench/ comes first on sys.path, where bench/modules.py would shadow `modules`.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from console.compose import compose  # noqa: E402
from console.dispatch import Event, HostEvent  # noqa: E402
from console.investigation import Investigation  # noqa: E402
from console.lab import Lab, lab_down, lab_up  # noqa: E402
from console.ssh import CIPHERS, KEX, SUBSYSTEM, Connector, Pool  # noqa: E402
from console.store import Store  # noqa: E402
from inventory.loader import load_inventory  # noqa: E402
from inventory.model import Host, Inventory  # noqa: E402
from protocol.envelope import Envelope  # noqa: E402
from protocol.frames import encode_frame, read_frame  # noqa: E402
from protocol.signing import Signer  # noqa: E402


class Meter:
    """Wall, per-host latency, console CPU and agent CPU of one fan-out."""

    def __init__(self, agents: list[psutil.Process]) -> None:
        self.agents = agents
        self.latencies: list[float] = []

    def __enter__(self) -> Meter:
        self.wall0 = time.monotonic()
        self.cpu0 = time.process_time()
        self.agent0 = self._agent_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.wall0
        self.cpu = time.process_time() - self.cpu0
        self.agent_cpu = self._agent_cpu() - self.agent0

    def _agent_cpu(self) -> float:
        total = 0.0
        for proc in self.agents:
            for p in [proc, *proc.children(recursive=True)]:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system + t.children_user + t.children_system
                except psutil.NoSuchProcess:
                    pass
        return total

    def row(self, label: str, hosts: int) -> dict[str, float | str]:
        lat = sorted(self.latencies) or [0.0]
        return {
            "run": label,
            "wall_s": self.wall,
            "p50_ms": statistics.median(lat) * 1000,
            "p95_ms": lat[int(len(lat) * 0.95) - 1] * 1000 if len(lat) > 1 else lat[0] * 1000,
            "console_cpu_ms_per_host": self.cpu * 1000 / hosts,
            "agent_cpu_ms_per_host": self.agent_cpu * 1000 / hosts,
        }


async def spyglass_run(
    inventory: Inventory,
    pool: Pool,
    envelope: Envelope,
    store: Store,
    meter: Meter,
    concurrency: int,
) -> int:
    start = time.monotonic()
    answered = 0

    def sink(event: Event) -> None:
        nonlocal answered
        if isinstance(event, HostEvent):
            meter.latencies.append(time.monotonic() - start)
            answered += event.result.status in ("matched", "nomatch")

    await Investigation(envelope, list(inventory.hosts), pool, store, concurrency).run(sink)
    return answered


async def floor_run(
    inventory: Inventory, connector: Connector, meter: Meter, concurrency: int
) -> int:
    """connect + subsystem + hello frame + reply, nothing else: the cost of the SSH path."""
    keys = [asyncssh.read_private_key(str(p)) for p in inventory.defaults.client_keys]
    options = asyncssh.SSHClientConnectionOptions(
        username=inventory.defaults.user,
        client_keys=keys,
        agent_path=None,
        config=None,
        gss_host=None,
        compression_algs=None,
        kex_algs=KEX,
        encryption_algs=CIPHERS,
        preferred_auth="publickey",
        connect_timeout=10,
    )
    gate = asyncio.Semaphore(concurrency)
    hello = encode_frame({"type": "hello", "versions": [1]})
    start = time.monotonic()

    async def one(host: Host) -> int:
        async with (
            gate,
            asyncssh.connect(
                host.address,
                host.port,
                options=options,
                config=None,
                known_hosts=(connector.pinned_keys(host), [], []),
            ) as c,
        ):
            proc = await c.create_process(subsystem=SUBSYSTEM, encoding=None)
            proc.stdin.write(hello)
            ok = (await read_frame(proc.stdout)) is not None
            proc.close()
        meter.latencies.append(time.monotonic() - start)
        return int(ok)

    return sum(await asyncio.gather(*(one(h) for h in inventory.hosts)))


async def bench(lab: Lab, concurrency: int) -> list[dict[str, float | str]]:
    inventory = load_inventory(lab.inventory)
    agents = [psutil.Process(pid) for pid in lab.pids]
    n = len(inventory.hosts)
    signer = Signer(lab.gnupghome)
    store = Store(Path(tempfile.mkdtemp(prefix="sgb")) / "bench.db")
    connector = Connector(inventory)
    rows = []

    def action() -> Envelope:
        act = compose("file", {"paths": ["/srv"], "name": [r"\.php$"]}, "all")
        return signer.sign(Envelope(act))

    # Warm the agents' forkservers and the verification path once, outside the measurements.
    await floor_run(inventory, connector, Meter(agents), concurrency)
    with Meter(agents) as m:
        ok = await floor_run(inventory, connector, m, concurrency)
    rows.append({**m.row("floor (raw asyncssh)", n), "answered": ok})
    pool = Pool(connector)
    envelope = action()
    with Meter(agents) as m:
        ok = await spyglass_run(inventory, pool, envelope, store, m, concurrency)
    rows.append({**m.row("spyglass cold", n), "answered": ok})
    envelope = action()
    with Meter(agents) as m:
        ok = await spyglass_run(inventory, pool, envelope, store, m, concurrency)
    rows.append({**m.row("spyglass warm (pooled)", n), "answered": ok})
    await pool.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="agents (default 1000)")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--per-process", type=int, default=250)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    directory = Path(tempfile.mkdtemp(prefix="sgf", dir="/tmp"))
    t0 = time.monotonic()
    lab = lab_up(directory, args.n, per_process=args.per_process)
    print(f"lab of {args.n} agents up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    try:
        rows = asyncio.run(bench(lab, args.concurrency))
    finally:
        lab_down(directory)
    floor = rows[0]
    print(
        f"{'run':<24}{'answered':>9}{'wall s':>8}{'p50 ms':>8}{'p95 ms':>8}"
        f"{'console ms/host':>17}{'agent ms/host':>15}{'cpu/floor':>11}"
    )
    for row in rows:
        ratio = float(row["console_cpu_ms_per_host"]) / float(floor["console_cpu_ms_per_host"])
        print(
            f"{row['run']:<24}{row['answered']:>9}{row['wall_s']:>8.2f}{row['p50_ms']:>8.0f}"
            f"{row['p95_ms']:>8.0f}{row['console_cpu_ms_per_host']:>17.2f}"
            f"{row['agent_cpu_ms_per_host']:>15.2f}{ratio:>11.2f}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak console RSS: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
