"""Child start cost: one trivial operation through the runner's zygote, against the baseline it
replaced (a multiprocessing forkserver child per operation: Process.start pickles the arguments,
passes fds, re-runs the main module's imports, and blocks the event loop until the pid is back).

Both run the same `file` search in an empty-ish root, sequentially and then in a burst of
concurrent operations, and report per operation: wall time, CPU of this (agent) process, CPU of
the helper processes (forkserver or zygote, and the children they reaped), and the longest stall
of the event loop during the burst. The zygote runs twice: with the kernel confinement of
``agentd.confine`` (the default), and with Landlock and seccomp hidden by its test knob.

Last, the confinement's own cost: the CPU time ``confine.apply`` takes inside each of n freshly
forked children (median and 90th percentile), what every operation adds; and for a module
inspecting other processes, ``process`` with a name and a memory filter, the snapshot its child
takes before Landlock (every process's executable link, maps and memory descriptors) with it.

    .venv/bin/python bench/child_start.py [-n 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

# Run as a script, bench/ comes first on sys.path, where bench/modules.py would shadow `modules`.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from agentd import child, confine  # noqa: E402
from agentd.runner import Budget, Zygote, run_operation  # noqa: E402
from bench.measure import cpu_seconds  # noqa: E402
from modules.registry import get_module  # noqa: E402
from protocol.agent_config import LimitsSection  # noqa: E402

Launcher = Callable[[str, dict[str, Any]], Awaitable[str]]


async def zygote_op(root: str, params: dict[str, Any]) -> str:
    outcome = await run_operation(
        "file",
        params,
        root=root,
        limits=LimitsSection(),
        timeout=30,
        budget=Budget(1000, 1 << 20),
        sink=lambda kind, payload: None,
    )
    return outcome.status


def _forkserver_entry(conn: Any, request: bytes) -> None:
    fd = os.memfd_create("request")
    os.write(fd, request)
    os.lseek(fd, 0, os.SEEK_SET)
    child.run(fd, os.dup(conn.fileno()))


async def forkserver_op(root: str, params: dict[str, Any]) -> str:
    """The previous runner's launch path, reduced to what costs: Process.start and a reap."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", "agentd.child"])  # as the daemon had it
    limits = LimitsSection()
    request = {
        "module": "file",
        "params": params,
        "root": root,
        "privacy": False,
        "cpu_seconds": limits.cpu_seconds,
        "memory_mb": limits.memory_mb,
        "nice": limits.nice,
        "require_confinement": False,
    }
    reader_conn, writer_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_forkserver_entry, args=(writer_conn, json.dumps(request).encode()), daemon=True
    )
    proc.start()
    writer_conn.close()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(os.dup(reader_conn.fileno()), "rb", 0)
    reader_conn.close()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    await reader.read()
    transport.close()
    exited = loop.create_future()
    loop.add_reader(proc.sentinel, lambda: exited.done() or exited.set_result(None))
    await exited
    loop.remove_reader(proc.sentinel)
    proc.join()
    proc.close()
    return "ok"


def helper_cpu() -> float:
    return cpu_seconds(psutil.Process().children(recursive=True))


async def measure(launch: Launcher, root: str, params: dict[str, Any], n: int) -> dict[str, float]:
    await launch(root, params)  # start the helper outside the measurement
    cpu0, helper0, wall0 = time.process_time(), helper_cpu(), time.monotonic()
    for _ in range(n):
        assert await launch(root, params) == "ok"
    cpu1, helper1, wall1 = time.process_time(), helper_cpu(), time.monotonic()
    row = {
        "seq_wall_ms": (wall1 - wall0) * 1000 / n,
        "seq_agent_cpu_ms": (cpu1 - cpu0) * 1000 / n,
        "seq_helper_cpu_ms": (helper1 - helper0) * 1000 / n,
    }
    lags: list[float] = []
    done = False

    async def heartbeat() -> None:
        while not done:
            t = time.monotonic()
            await asyncio.sleep(0.001)
            lags.append(time.monotonic() - t - 0.001)

    beat = asyncio.create_task(heartbeat())
    cpu0, helper0, wall0 = time.process_time(), helper_cpu(), time.monotonic()
    statuses = await asyncio.gather(*(launch(root, params) for _ in range(n)))
    cpu1, helper1, wall1 = time.process_time(), helper_cpu(), time.monotonic()
    done = True
    await beat
    assert set(statuses) == {"ok"}, statuses
    row.update(
        burst_wall_ms=(wall1 - wall0) * 1000,
        burst_cpu_ms=((cpu1 - cpu0) + (helper1 - helper0)) * 1000 / n,
        burst_max_stall_ms=max(lags, default=0.0) * 1000,
    )
    return row


async def main(n: int) -> None:
    root = tempfile.mkdtemp(prefix="sgcs")
    for i in range(10):
        open(os.path.join(root, f"f{i}"), "w").close()
    module = get_module("file")
    assert module is not None
    params = module.validate({"paths": ["/"], "name": ["^f1$"]})
    rows = {"forkserver (before)": await measure(forkserver_op, root, params, n)}
    os.environ[confine.UNAVAILABLE_ENV] = "1"  # read by the zygote started next
    rows["zygote, caps+nnp only"] = await measure(zygote_op, root, params, n)
    Zygote.current().close()
    del os.environ[confine.UNAVAILABLE_ENV]
    rows["zygote, confined"] = await measure(zygote_op, root, params, n)
    columns = list(next(iter(rows.values())))
    print(f"{'per operation, n=' + str(n):<22}" + "".join(f"{c:>20}" for c in columns))
    for label, row in rows.items():
        print(f"{label:<22}" + "".join(f"{row[c]:>20.2f}" for c in columns))
    before, after = rows["forkserver (before)"], rows["zygote, confined"]
    print(
        f"{'before/after':<22}"
        + "".join(f"{before[c] / max(after[c], 1e-9):>19.1f}x" for c in columns)
    )
    costs, layers = apply_costs(module, root, n)
    print(
        f"confine.apply in the child, CPU: median {costs[n // 2] * 1e3:.3f} ms, "
        f"90th percentile {costs[n * 9 // 10] * 1e3:.3f} ms ({' '.join(layers)})"
    )
    process = get_module("process")
    assert process is not None
    search = process.validate({"name": ["^sshd$"], "content": ["x"]})
    costs, layers = apply_costs(process, root, n, search)
    print(
        f"process: snapshot + confine.apply in the child, CPU: median {costs[n // 2] * 1e3:.3f} "
        f"ms, 90th percentile {costs[n * 9 // 10] * 1e3:.3f} ms ({' '.join(layers)}; "
        f"{len(psutil.pids())} processes)"
    )


def apply_costs(
    module: Any, root: str, n: int, params: dict[str, Any] | None = None
) -> tuple[list[float], list[str]]:
    """CPU seconds ``confine.apply`` (after ``Module.snapshot``, for a module inspecting
    processes, as ``agentd.child`` does) takes in each of n children forked, as the zygote does,
    by a process that prepared the plans and confined itself first (sorted), and the layers."""
    read_fd, write_fd = os.pipe()
    zygote = os.fork()
    if zygote == 0:
        confine.prepare([module])
        confine.ruleset_for(module, root)  # as the zygote does when asked to run the module
        runs = []
        for _ in range(n):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                start = time.process_time()
                if module.needs.processes:
                    module.snapshot(params)
                layers = confine.apply(module, root)
                os.write(w, json.dumps([time.process_time() - start, layers]).encode())
                os._exit(0)
            os.close(w)
            with os.fdopen(r, "rb") as pipe:
                runs.append(json.loads(pipe.read()))
            os.waitpid(pid, 0)
        os.write(write_fd, json.dumps(runs).encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        runs = json.loads(pipe.read())
    os.waitpid(zygote, 0)
    return sorted(spent for spent, _ in runs), runs[0][1]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="operations per measurement")
    asyncio.run(main(parser.parse_args().n))
