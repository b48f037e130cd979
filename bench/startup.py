"""Start-up: how long the console's commands take before they do their job.

`spyglass --help` and `spyglass modules list` are timed to their exit; `spyglass run` to the
moment its first connection reaches the agent (a forwarder in this process, in front of a
one-agent lab, notes when it accepts) and to its exit. The baseline, measured in the same rounds,
is the bare interpreter (`python -c pass`), which no command can beat. Medians of ``--rounds``,
each command run in turn so that a busy moment costs every row alike.

    .venv/bin/python bench/startup.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

# Run as a script, bench/ comes first on sys.path, where bench/modules.py would shadow `modules`.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from console.lab.local import Lab, lab_down, lab_up  # noqa: E402
from inventory.loader import dump_inventory  # noqa: E402

SPYGLASS = str(Path(sys.executable).with_name("spyglass"))
GOALS = {"spyglass --help": 0.150, "spyglass modules list": 0.150, "run: first connection": 0.300}


class Forwarder:
    """A TCP forwarder to the lab's agent, on its own loop and thread, that notes the moment of
    each accepted connection (``time.perf_counter``)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.accepted: list[float] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.port = 0

        async def serve() -> None:
            server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await server.serve_forever()

        threading.Thread(target=self.loop.run_until_complete, args=(serve(),), daemon=True).start()
        ready.wait()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted.append(time.perf_counter())
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))


def agent_address(lab: Lab) -> tuple[str, int]:
    [host] = tomllib.loads(lab.inventory.read_text())["hosts"]
    return host["address"], host["port"]


def probe_inventory(lab: Lab, port: int, where: Path) -> Path:
    """The lab's inventory with its one host reached through the forwarder (same host key: the
    forwarder only relays bytes, so known_hosts names the forwarder's address too)."""
    document = tomllib.loads(lab.inventory.read_text())
    [host] = document["hosts"]
    agent = f"[{host['address']}]:{host['port']} "
    host["address"], host["port"] = "127.0.0.1", port
    defaults = document["defaults"]
    for key in ("known_hosts", "client_keys"):
        value = defaults[key]
        defaults[key] = (
            [str(lab.dir / v) for v in value] if isinstance(value, list) else str(lab.dir / value)
        )
    known = (lab.dir / "known_hosts").read_text().replace(agent, f"[127.0.0.1]:{port} ")
    (where / "known_hosts").write_text(known)
    defaults["known_hosts"] = str(where / "known_hosts")
    path = where / "inventory.toml"
    dump_inventory(document, path)
    return path


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sgsu", dir="/tmp"))
    lab = lab_up(work / "lab", 1)
    try:
        forwarder = Forwarder(agent_address(lab))
        # As installed: pip compiles every module at install, so a command reads bytecode; with
        # PYTHONDONTWRITEBYTECODE set (as in some CI images), an editable checkout would compile
        # the changed sources at every start. The unmeasured first round writes the cache.
        environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env = {
            **environ,
            "GNUPGHOME": str(lab.gnupghome),
            "SPYGLASS_INVENTORY": str(probe_inventory(lab, forwarder.port, work)),
            "SPYGLASS_STORE": str(work / "results.db"),
        }
        run = [SPYGLASS, "run", "file", "--paths", "/srv", "--name", "x", "-t", "all"]

        def first_connection() -> float:
            before = len(forwarder.accepted)
            started = time.perf_counter()
            done = subprocess.run(run, env=env, capture_output=True, text=True)
            assert len(forwarder.accepted) > before, f"the run never connected: {done.stderr}"
            return forwarder.accepted[before] - started

        jobs: dict[str, Callable[[], float]] = {
            "python -c pass (baseline)": lambda: timed([sys.executable, "-c", "pass"], env),
            "spyglass --help": lambda: timed([SPYGLASS, "--help"], env),
            "spyglass modules list": lambda: timed([SPYGLASS, "modules", "list"], env),
            "run: first connection": first_connection,
            "run: to its exit": lambda: timed(run, env),
        }
        for job in jobs.values():  # once unmeasured: page cache, .pyc files
            job()
        times: dict[str, list[float]] = {name: [] for name in jobs}
        for _ in range(args.rounds):
            for name, job in jobs.items():
                times[name].append(job())
    finally:
        lab_down(lab.dir)
    base = statistics.median(times["python -c pass (baseline)"])
    print(f"{args.rounds} rounds, medians (machine: {os.cpu_count()} cores)")
    print(f"{'command':<28} {'wall':>9} {'x python':>9}  goal")
    for name, values in times.items():
        median = statistics.median(values)
        goal = GOALS.get(name)
        verdict = (
            ""
            if goal is None
            else f"< {goal * 1000:.0f} ms: " + ("met" if median < goal else "missed")
        )
        print(f"{name:<28} {median * 1000:7.1f} ms {median / base:8.1f}x  {verdict}")


if __name__ == "__main__":
    main()
