"""Fan-out over several console processes, when one event loop is the bottleneck.

SSH handshakes and packet crypto run on one core per event loop (asyncssh#573), so
``spyglass run --workers N`` splits the hosts over N worker processes, each with its own event
loop, ``Pool`` and ``Dispatcher``. Workers send their events to the parent as JSON lines on
their stdout; the parent merges them in order of arrival and hands them to its sink (for the CLI,
an ``Investigation``'s, which stores each event before it is shown). ``ShardedDispatcher`` has
the ``Dispatcher``'s interface (``FanOut``), so an ``Investigation`` takes either.

A worker is ``python -m console.fanout.shard``: its job (inventory path, host names, envelope,
concurrency) is the first line on its stdin; a later ``cancel`` line cancels it. Its hosts keep
inventory order between workers (host i goes to worker i mod N).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import sys
from typing import Any

from console.fanout.dispatch import DEFAULT_CONCURRENCY, Dispatcher
from console.fanout.loop import run_async
from console.fanout.retry import RetryPolicy
from console.fanout.ssh import Connector, Pool
from console.fanout.ssh_transport import SshTransport
from console.results.records import (
    Event,
    HostEvent,
    HostResult,
    HostStatus,
    Sink,
    StateEvent,
    Summary,
    decode_event,
    encode_event,
)
from inventory.loader import load_inventory
from inventory.model import Host, Inventory
from protocol.envelope import Envelope, parse_envelope

#: Longest JSON line a worker may send (a match row is capped far below by the agents).
MAX_LINE = 256 << 20


def parse_workers(value: str) -> int:
    """``--workers``: a positive integer, or ``auto`` for one per usable CPU core."""
    if value == "auto":
        return len(os.sched_getaffinity(0))
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', not {value!r}")
    return int(value)


class ShardedDispatcher:
    """Runs one envelope on hosts split over ``workers`` processes, each with its own
    ``Dispatcher``: ``run`` returns the merged ``Summary``, ``cancel`` cancels every worker.
    ``concurrency`` (hosts in flight) is shared out between the workers; each opens its own
    connections to the hosts of ``inventory`` (read again from its file)."""

    def __init__(
        self,
        inventory: Inventory,
        workers: int,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.inventory = inventory
        self.workers = workers
        self.concurrency = concurrency
        self.retry = retry
        self._procs: list[asyncio.subprocess.Process] = []
        self._cancelled = False

    async def run(self, envelope: Envelope, hosts: list[Host], sink: Sink) -> Summary:
        loop = asyncio.get_running_loop()
        start = loop.time()
        summary = Summary(envelope.action.id)
        slices = [hosts[i :: self.workers] for i in range(self.workers)]
        slices = [s for s in slices if s]
        per_worker = max(1, -(-self.concurrency // len(slices)))
        for host in hosts:
            sink(StateEvent(host.name, "queued"))
        try:
            for part in slices:
                self._procs.append(await self._spawn(envelope, part, per_worker))
            if self._cancelled:
                self.cancel()
            await asyncio.gather(
                *(
                    self._relay(p, part, summary, sink)
                    for p, part in zip(self._procs, slices, strict=True)
                )
            )
        finally:
            for proc in self._procs:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
        summary.elapsed_ms = int((loop.time() - start) * 1000)
        return summary

    def cancel(self) -> None:
        self._cancelled = True
        for proc in self._procs:
            if proc.stdin is not None and not proc.stdin.is_closing():
                proc.stdin.write(b"cancel\n")

    async def _spawn(
        self, envelope: Envelope, hosts: list[Host], concurrency: int
    ) -> asyncio.subprocess.Process:
        job = {
            "inventory": str(self.inventory.path),
            "hosts": [h.name for h in hosts],
            "envelope": envelope.to_dict(),
            "concurrency": concurrency,
            "retry": dataclasses.asdict(self.retry) if self.retry is not None else None,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "console.fanout.shard",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=MAX_LINE,
        )
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(job).encode() + b"\n")
        return proc

    async def _relay(
        self,
        proc: asyncio.subprocess.Process,
        hosts: list[Host],
        summary: Summary,
        sink: Sink,
    ) -> None:
        """Hand a worker's events on as they arrive; hosts it never reported become errors."""
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            event = decode_event(json.loads(line))
            if isinstance(event, HostEvent):
                summary.results[event.result.host] = event.result
            sink(event)
        code = await proc.wait()
        for host in hosts:
            if host.name not in summary.results:
                detail = f"its console worker process died (exit status {code})"
                status: HostStatus = "cancelled" if self._cancelled else "error"
                result = HostResult(host.name, status, detail=detail)
                summary.results[host.name] = result
                sink(HostEvent(result))


async def _work(job: dict[str, Any], control: asyncio.StreamReader) -> None:
    """A worker: run the job's hosts, write each event as a JSON line, stop on ``cancel``."""
    inventory = load_inventory(job["inventory"])
    hosts = [inventory.by_name(name) for name in job["hosts"]]
    envelope = parse_envelope(job["envelope"])
    out = sys.stdout.buffer
    pending: list[bytes] = []
    loop = asyncio.get_running_loop()

    def flush() -> None:
        out.write(b"".join(pending))
        out.flush()
        pending.clear()

    def sink(event: Event) -> None:
        if isinstance(event, StateEvent) and event.state == "queued":
            return  # the parent announced every host as queued already
        if not pending:
            loop.call_soon(flush)  # one write per loop turn, whatever the burst
        # ASCII escapes keep lone surrogates (non-UTF-8 names an agent sent) intact on the way
        pending.append(json.dumps(encode_event(event), ensure_ascii=True).encode() + b"\n")

    pool = Pool(Connector(inventory))
    retry = RetryPolicy(**job["retry"]) if job["retry"] is not None else None
    dispatcher = Dispatcher(SshTransport(pool), concurrency=job["concurrency"], retry=retry)

    async def watch() -> None:
        while line := await control.readline():
            if line.strip() == b"cancel":
                dispatcher.cancel()
        # The parent closed our stdin without a word: it is gone, nobody wants the results.
        dispatcher.cancel()

    watcher = asyncio.create_task(watch())
    try:
        await dispatcher.run(envelope, hosts, sink)
    finally:
        watcher.cancel()
        await pool.close()
        if pending:
            flush()


async def _worker_main() -> None:
    loop = asyncio.get_running_loop()
    control = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(control), sys.stdin)
    job = json.loads(await control.readline())
    await _work(job, control)


def main() -> None:
    try:
        import uvloop  # optional speed-up
    except ImportError:
        run_async(_worker_main())
    else:
        uvloop.run(_worker_main())


if __name__ == "__main__":
    main()
