"""Fan-out benchmark: a signed `file` search on N lab agents, cold then warm, against the floor.

The floor is a minimal asyncssh client doing only connect + subsystem + one frame each way against
the same agents, measured in the same run, so the printed ratios hold on any machine. Each run
also reports the agents' peak resident memory (agent processes and their zygotes); a separate
one-agent lab gives the idle memory of a single-agent process. Last comes a projection for a
16-core console and 10,000 remote endpoints, from the measured console CPU and memory per host.
Floor, cold and warm run ``--rounds`` times (default 3) and the table shows each figure's median,
with the per-round ratios below it: on a 2-core machine shared with 1,000 agents, one round's
console CPU varies by about 10%.

    .venv/bin/python bench/fanout.py -n 1000 [--workers 2] [--rounds 3]
    .venv/bin/python bench/fanout.py -n 10000 --compare 1000    # linearity in the fleet size
    .venv/bin/python bench/fanout.py -n 1000 --rtt 100ms --loss 1%  # through bench/netem.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import resource
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import psutil

# Run as a script, bench/ comes first on sys.path, where bench/modules.py would shadow `modules`.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.measure import cpu_seconds  # noqa: E402
from bench.netem import Relay, fraction, seconds  # noqa: E402
from console.actions.compose import compose  # noqa: E402
from console.fanout import DEFAULT_CONCURRENCY  # noqa: E402
from console.fanout.dispatch import Dispatcher, FanOut  # noqa: E402
from console.fanout.investigation import Investigation  # noqa: E402
from console.fanout.shard import ShardedDispatcher  # noqa: E402
from console.fanout.ssh import Connector, Pool  # noqa: E402
from console.fanout.ssh_transport import SshTransport  # noqa: E402
from console.lab.local import Lab, lab_down, lab_up, raise_fd_limit  # noqa: E402
from console.lab.local import host_tags as lab_tags  # noqa: E402
from console.results.records import Event, HostEvent  # noqa: E402
from console.results.store import Store  # noqa: E402
from inventory.loader import dump_inventory, load_inventory  # noqa: E402
from inventory.model import Host, Inventory  # noqa: E402
from protocol.envelope import Envelope  # noqa: E402
from protocol.frames import encode_frame, read_frame  # noqa: E402
from protocol.signing import Signer  # noqa: E402
from protocol.transport import SUBSYSTEM  # noqa: E402


class Meter:
    """Wall, per-host latency, console CPU (with any worker processes) and agent CPU of one
    fan-out, and the agents' peak RSS (sampled by a thread)."""

    def __init__(self, agents: list[psutil.Process]) -> None:
        self.agents = agents
        self.latencies: list[float] = []
        self.agent_rss_peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> Meter:
        self.wall0 = time.monotonic()
        self.cpu0 = time.process_time() + _children_cpu()
        self.agent0 = self._agent_cpu()
        self.agent_rss_peak = agents_rss(self._resident())
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.wall0
        self.cpu = time.process_time() + _children_cpu() - self.cpu0
        self.agent_cpu = self._agent_cpu() - self.agent0
        self._stop.set()
        self._sampler.join()
        self.agent_rss_peak = max(self.agent_rss_peak, agents_rss(self._resident()))

    def _tree(self) -> list[psutil.Process]:
        procs = []
        for proc in self.agents:
            procs.append(proc)
            with contextlib.suppress(psutil.NoSuchProcess):
                procs += proc.children(recursive=True)
        return procs

    def _agent_cpu(self) -> float:
        return cpu_seconds(self._tree())

    def _resident(self) -> list[psutil.Process]:
        """The agent processes and their zygotes; operation children are short-lived forks
        whose RSS mostly counts pages they share with their zygote."""
        procs = []
        for proc in self.agents:
            procs.append(proc)
            with contextlib.suppress(psutil.NoSuchProcess):
                procs += proc.children()
        return procs

    def _sample(self) -> None:
        while not self._stop.wait(0.25):
            self.agent_rss_peak = max(self.agent_rss_peak, agents_rss(self._resident()))

    def row(self, label: str, hosts: int) -> dict[str, float | str]:
        lat = sorted(self.latencies) or [0.0]
        return {
            "run": label,
            "wall_s": self.wall,
            "p50_ms": statistics.median(lat) * 1000,
            "p95_ms": lat[int(len(lat) * 0.95) - 1] * 1000 if len(lat) > 1 else lat[0] * 1000,
            "console_cpu_ms_per_host": self.cpu * 1000 / hosts,
            "agent_cpu_ms_per_host": self.agent_cpu * 1000 / hosts,
            "agent_rss_mib": self.agent_rss_peak / (1 << 20),
        }


def agents_rss(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def _children_cpu() -> float:
    """CPU of reaped child processes: the sharded runs' console workers (the lab's agents are
    children too, but they are reaped only at the end)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def console_rss() -> int:
    return psutil.Process().memory_info().rss


async def spyglass_run(
    inventory: Inventory,
    pool: Pool,
    envelope: Envelope,
    store: Store,
    meter: Meter,
    concurrency: int,
    workers: int = 1,
) -> int:
    start = time.monotonic()
    answered = 0

    def sink(event: Event) -> None:
        nonlocal answered
        if isinstance(event, HostEvent):
            meter.latencies.append(time.monotonic() - start)
            answered += event.result.status in ("matched", "nomatch")

    dispatcher: FanOut = (
        ShardedDispatcher(inventory, workers, concurrency=concurrency)
        if workers > 1
        else Dispatcher(SshTransport(pool), concurrency=concurrency)
    )
    investigation = Investigation(envelope, list(inventory.hosts), dispatcher, store)
    await investigation.run(sink)
    return answered


async def floor_run(
    inventory: Inventory, connector: Connector, meter: Meter, concurrency: int
) -> int:
    """connect + subsystem + hello frame + reply, nothing else: the cost of the SSH path, with
    the console's connection options (keys, algorithms, timeouts) but none of its machinery."""
    gate = asyncio.Semaphore(concurrency)
    hello = encode_frame({"type": "hello", "versions": [1]})
    start = time.monotonic()

    async def one(host: Host) -> int:
        try:
            async with (
                gate,
                asyncssh.connect(
                    host.address,
                    host.port,
                    options=connector.options,
                    config=None,
                    known_hosts=(connector.pinned_keys(host), [], []),
                ) as c,
            ):
                proc = await c.create_process(subsystem=SUBSYSTEM, encoding=None)
                proc.stdin.write(hello)
                ok = (await read_frame(proc.stdout)) is not None
                proc.close()
        except (OSError, asyncssh.Error):  # a timeout too: the host counts as not answered
            return 0
        meter.latencies.append(time.monotonic() - start)
        return int(ok)

    return sum(await asyncio.gather(*(one(h) for h in inventory.hosts)))


async def bench(
    lab: Lab, view: View, concurrency: int, workers: int, rounds: int, warm_up: bool = True
) -> tuple[list[list[dict[str, float | str]]], int]:
    """Each round's rows (floor, cold, warm, [sharded cold]) on ``view``'s hosts, and the
    console's memory per open connection (bytes, from the first round)."""
    path = view.label
    inventory = load_inventory(view.inventory)
    if view.limit:
        inventory = dataclasses.replace(inventory, hosts=inventory.hosts[: view.limit])
    agents = [psutil.Process(pid) for pid in lab.pids]
    n = len(inventory.hosts)
    signer = Signer(lab.gnupghome)
    store = Store(Path(tempfile.mkdtemp(prefix="sgb")) / "bench.db")
    connector = Connector(inventory)

    def action() -> Envelope:
        act = compose("file", {"paths": ["/srv"], "name": [r"\.php$"]}, "all")
        return signer.sign(Envelope(act))

    if warm_up:  # the verification path and the agents' code, outside the measurements
        await floor_run(inventory, connector, Meter(agents), concurrency)
    per_connection = 0
    all_rows = []
    for round_index in range(rounds):
        rows = []
        with Meter(agents) as m:
            ok = await floor_run(inventory, connector, m, concurrency)
        rows.append({**m.row(f"floor (raw asyncssh){path}", n), "answered": ok})
        pool = Pool(connector)
        envelope = action()
        rss0 = console_rss()
        with Meter(agents) as m:
            ok = await spyglass_run(inventory, pool, envelope, store, m, concurrency)
        if round_index == 0:  # the pool holds n open connections
            per_connection = max(0, console_rss() - rss0) // n
        rows.append({**m.row(f"spyglass cold{path}", n), "answered": ok})
        envelope = action()
        with Meter(agents) as m:
            ok = await spyglass_run(inventory, pool, envelope, store, m, concurrency)
        rows.append({**m.row(f"spyglass warm (pooled){path}", n), "answered": ok})
        await pool.close()
        if workers > 1:
            envelope = action()
            with Meter(agents) as m:
                ok = await spyglass_run(
                    inventory, Pool(connector), envelope, store, m, concurrency, workers
                )
            rows.append({**m.row(f"spyglass cold, {workers} workers{path}", n), "answered": ok})
        all_rows.append(rows)
    return all_rows, per_connection


def medians(rounds: list[list[dict[str, float | str]]]) -> list[dict[str, float | str]]:
    """Per row, the median of each figure over the rounds (and the fewest hosts answered)."""
    table = []
    for same_row in zip(*rounds, strict=True):
        row: dict[str, float | str] = {"run": same_row[0]["run"]}
        for key, value in same_row[0].items():
            if key == "answered":
                row[key] = min(int(r[key]) for r in same_row)
            elif isinstance(value, float | int):
                row[key] = statistics.median(float(r[key]) for r in same_row)
        table.append(row)
    return table


def idle_agent_rss() -> tuple[float, float, float]:
    """A one-agent process, idle: RSS and USS (MiB, USS leaves out pages shared with other
    processes, such as libcrypto's); and the RSS of its zygote, started by the first operation."""
    directory = Path(tempfile.mkdtemp(prefix="sgi", dir="/tmp"))
    lab = lab_up(directory, 1)
    try:
        agent = psutil.Process(lab.pids[0])
        time.sleep(1.0)
        idle = agent.memory_full_info()

        async def one_operation() -> None:
            inventory = load_inventory(lab.inventory)
            pool = Pool(Connector(inventory))
            act = compose("file", {"paths": ["/etc"], "name": ["^passwd$"]}, "all")
            envelope = Signer(lab.gnupghome).sign(Envelope(act))
            store = Store(directory / "idle.db")
            dispatcher = Dispatcher(SshTransport(pool))
            investigation = Investigation(envelope, list(inventory.hosts), dispatcher, store)
            await investigation.run(lambda e: None)
            await pool.close()
            store.close()

        asyncio.run(one_operation())
        zygotes = [p for p in agent.children() if "agentd.zygote" in " ".join(p.cmdline())]
        zygote = sum(p.memory_info().rss for p in zygotes)
        return idle.rss / (1 << 20), idle.uss / (1 << 20), zygote / (1 << 20)
    finally:
        lab_down(directory)


def projection(
    rows: list[dict[str, float | str]], per_connection: int, peak_rss: float
) -> list[str]:
    """What the measured console costs imply for 16 cores and 10,000 remote endpoints.

    With the agents elsewhere the console has every core: one worker process per core, hosts
    split evenly. CPU time per worker bounds the run from below; round trips to remote agents
    add their own latency on top (a handshake is about 4 round trips; a warm action one, a frame
    each way on the parked channel).
    """
    endpoints, cores = 10_000, 16
    cold = float(rows[1]["console_cpu_ms_per_host"])
    warm = float(rows[2]["console_cpu_ms_per_host"])
    per_worker = endpoints // cores
    baseline = peak_rss - per_connection * float(rows[1]["answered"]) / (1 << 20)
    memory = baseline + per_worker * per_connection / (1 << 20)
    return [
        f"projection: {cores}-core console, {endpoints:,} remote endpoints, --workers {cores}"
        f" ({per_worker} hosts per worker):",
        f"  cold: {endpoints:,} x {cold:.2f} ms / {cores} cores ="
        f" {endpoints * cold / cores / 1000:.1f} s of CPU per worker,"
        " plus ~4 network round trips per handshake",
        f"  warm: {endpoints:,} x {warm:.2f} ms / {cores} cores ="
        f" {endpoints * warm / cores / 1000:.1f} s of CPU per worker, plus 1 round trip",
        f"  memory: ~{memory:.0f} MiB per worker ({per_connection / 1024:.0f} KiB per open"
        f" connection), ~{memory * cores:.0f} MiB in all; {per_worker} sockets per worker",
    ]


def relayed(lab: Lab, rtt: float, loss: float) -> tuple[Relay, Path]:
    """The delay-and-loss injector in front of every agent, and an inventory (with its
    known_hosts) that reaches the agents through it."""
    inventory = load_inventory(lab.inventory)
    hosts = list(inventory.hosts)
    relay = Relay([(h.address, h.address, h.port) for h in hosts], rtt, loss, lab.dir, seed=1)
    keys = {}
    for line in (lab.dir / "known_hosts").read_text().splitlines():
        endpoint, key = line.split(" ", 1)
        keys[endpoint] = key
    known = [
        f"[{h.address}]:{port} {keys[f'[{h.address}]:{h.port}']}\n"
        for h, port in zip(hosts, relay.ports, strict=True)
    ]
    (lab.dir / "known_hosts_relayed").write_text("".join(known))
    path = lab.dir / "inventory-relayed.toml"
    dump_inventory(
        {
            "defaults": {
                "user": inventory.defaults.user,
                "known_hosts": "known_hosts_relayed",
                "client_keys": [str(k) for k in inventory.defaults.client_keys],
                "connect_timeout": inventory.defaults.connect_timeout,
            },
            "hosts": [
                {"name": h.name, "address": h.address, "port": port, "tags": lab_tags(i)}
                for i, (h, port) in enumerate(zip(hosts, relay.ports, strict=True))
            ],
        },
        path,
    )
    return relay, path


@dataclass(frozen=True)
class View:
    """The hosts one set of rounds runs on: an inventory (direct or through the injector), its
    first ``limit`` hosts if set, and the label suffix of its rows."""

    inventory: Path
    label: str = ""
    limit: int = 0


async def bench_views(
    lab: Lab, args: argparse.Namespace
) -> tuple[list[list[dict[str, float | str]]], int, dict[str, int], int]:
    """Loopback rounds; with --compare K the same rounds on the first K hosts; with --rtt or
    --loss the same rounds through the injector. Views alternate within each round, so that a
    busy machine weighs on each alike. Each round's rows side by side, and the number of rows
    per view."""
    views = [View(lab.inventory)]
    if 0 < args.compare < args.n:
        views.append(View(lab.inventory, f" ({args.compare} hosts)", args.compare))
    relay = None
    if args.rtt or args.loss:
        relay, inventory = relayed(lab, args.rtt, args.loss)
        views.append(View(inventory, f" @{args.rtt * 1000:.0f}ms/{args.loss * 100:g}%"))
    rounds: list[list[dict[str, float | str]]] = []
    per_connection = 0
    try:
        for index in range(args.rounds):
            rows: list[dict[str, float | str]] = []
            for view in views:
                (view_rows,), per = await bench(
                    lab, view, args.concurrency, args.workers, 1, warm_up=index == 0
                )
                per_connection = per_connection or per
                rows += view_rows
            rounds.append(rows)
            print(f"round {index + 1}/{args.rounds} done:", file=sys.stderr)
            for row in rows:  # kept in the log should a later round fail
                figures = (f"{k} {v:.2f}" for k, v in row.items() if isinstance(v, float))
                print(
                    f"  {row['run']}: answered {row['answered']}, {', '.join(figures)}",
                    file=sys.stderr,
                )
    finally:
        counts = relay.stop() if relay is not None else {}
    return rounds, per_connection, counts, len(rounds[0]) // len(views)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="agents (default 1000)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"hosts in flight (default {DEFAULT_CONCURRENCY}, as the CLI)",
    )
    parser.add_argument("--per-process", type=int, default=250)
    parser.add_argument(
        "--workers", type=int, default=1, help="also a cold run sharded over N console workers"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="floor, cold and warm this many times; the table shows medians (default 3)",
    )
    parser.add_argument(
        "--compare",
        type=int,
        default=1000,
        help="also the same rounds on the first K hosts (linearity; default 1000, 0: none)",
    )
    parser.add_argument(
        "--rtt", type=seconds, default=0.0, help="also run through a relay adding this RTT"
    )
    parser.add_argument(
        "--loss", type=fraction, default=0.0, help="... and losing this share of segments"
    )
    args = parser.parse_args()
    raise_fd_limit(args.n + 1024)  # a connection per host (the relay has its own process)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    idle, idle_uss, zygote = idle_agent_rss()
    directory = Path(tempfile.mkdtemp(prefix="sgf", dir="/tmp"))
    t0 = time.monotonic()
    lab = lab_up(directory, args.n, per_process=args.per_process)
    print(f"lab of {args.n} agents up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    try:
        rounds, per_connection, counts, per_view = asyncio.run(bench_views(lab, args))
    finally:
        lab_down(directory)
    rows = medians(rounds)
    print(f"median of {args.rounds} rounds (each: floor, cold, warm)")
    print(
        f"{'run':<36}{'answered':>9}{'wall s':>8}{'p50 ms':>8}{'p95 ms':>8}"
        f"{'console ms/host':>17}{'agent ms/host':>15}{'agent RSS MiB':>15}{'cpu/floor':>11}"
    )
    for index, row in enumerate(rows):
        floor = rows[index - index % per_view]
        ratio = float(row["console_cpu_ms_per_host"]) / float(floor["console_cpu_ms_per_host"])
        print(
            f"{row['run']:<36}{row['answered']:>9}{row['wall_s']:>8.2f}{row['p50_ms']:>8.0f}"
            f"{row['p95_ms']:>8.0f}{row['console_cpu_ms_per_host']:>17.2f}"
            f"{row['agent_cpu_ms_per_host']:>15.2f}{row['agent_rss_mib']:>15.0f}{ratio:>11.2f}"
        )
    cpu = "console_cpu_ms_per_host"
    for label, index in (("cold", 1), ("warm", 2)):
        for at in range(index + per_view, len(rows), per_view):
            other = rows[at]
            if "hosts)" in str(other["run"]):
                linear = float(rows[index][cpu]) / float(other[cpu])
                paired = " ".join(f"{float(r[index][cpu]) / float(r[at][cpu]):.2f}" for r in rounds)
                print(
                    f"{label}: console CPU per host at {args.n} / at {args.compare}: {linear:.2f}"
                    f" (medians; per round: {paired})"
                )
            else:
                extra = float(other["wall_s"]) - float(rows[index]["wall_s"])
                paired = " ".join(
                    f"{float(r[at]['wall_s']) - float(r[index]['wall_s']):+.2f}" for r in rounds
                )
                print(
                    f"{label}: {other['run']} took {extra:+.2f} s over loopback"
                    f" (medians; per round: {paired} s)"
                )
    if counts:
        print(
            f"injector: {counts['connections']} connections, {counts['chunks']} chunks,"
            f" {counts['lost']} lost, {counts['syn_lost']} SYNs lost"
        )
    for label, index in (("cold", 1), ("warm", 2)):
        ratios = [
            float(r[index]["console_cpu_ms_per_host"]) / float(r[0]["console_cpu_ms_per_host"])
            for r in rounds
        ]
        walls = [float(r[index]["wall_s"]) for r in rounds]
        print(
            f"{label} per round: cpu/floor {' '.join(f'{x:.2f}' for x in ratios)};"
            f" wall s {' '.join(f'{x:.2f}' for x in walls)}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak console RSS: {peak:.0f} MiB")
    print(
        f"idle single-agent process: RSS {idle:.1f} MiB, USS {idle_uss:.1f} MiB"
        f" (its zygote, started by the first operation: RSS {zygote:.1f} MiB)"
    )
    print("\n".join(projection(rows, per_connection, peak)))


if __name__ == "__main__":
    main()
