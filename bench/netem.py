"""A user-space delay-and-loss injector: a TCP relay per upstream, in its own process.

This kernel has no netem, so the benchmark puts this relay between the console and the agents.
It models what a path with round-trip time ``rtt`` and segment loss ``loss`` does to TCP:

- a connection is usable after the TCP handshake: the upstream is connected 1.5 RTT after the
  client's connect (when the server would accept it), so the client's first bytes arrive then and
  the server's first bytes half an RTT later; a lost SYN (probability ``loss``) costs the 1 s
  initial retransmission timeout;
- every chunk read is delivered half an RTT later in the other direction;
- a lost chunk (probability ``loss``) is delivered one retransmission timeout later (RTT plus
  Linux's 200 ms minimum) and, TCP delivering in order, holds back everything behind it.

    python bench/netem.py --rtt 100ms --loss 1% --map MAP.json

MAP.json lists ``[listen_host, target_host, target_port]``; once every listener is bound the
relay prints one JSON line, the listening port of each entry in order, then relays until stdin
closes. On exit it prints its counts: connections, chunks, chunks lost, SYNs lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import subprocess
import sys
from collections.abc import Awaitable
from dataclasses import dataclass, field

MIN_RTO = 0.2  # Linux's TCP_RTO_MIN
SYN_RTO = 1.0  # Linux's initial retransmission timeout (TCP_TIMEOUT_INIT)
CHUNK = 65536
QUEUED = 64  # chunks in flight per direction before the relay stops reading (back-pressure)


def seconds(text: str) -> float:
    """'100ms', '0.1s' or '0.1' as seconds."""
    match = re.fullmatch(r"([0-9.]+)\s*(ms|s)?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 100ms)")
    value = float(match[1])
    return value / 1000 if match[2] == "ms" else value


def fraction(text: str) -> float:
    """'1%' or '0.01' as a fraction in [0, 1)."""
    value = float(text.strip().rstrip("%")) / (100 if text.strip().endswith("%") else 1)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"loss must be in [0, 100%): {text!r}")
    return value


@dataclass
class Link:
    """The emulated path: round-trip time, loss rate, the loss draws and what they hit."""

    rtt: float
    loss: float
    rng: random.Random
    counts: dict[str, int] = field(
        default_factory=lambda: {"connections": 0, "chunks": 0, "lost": 0, "syn_lost": 0}
    )

    def lost(self, what: str) -> bool:
        if self.loss and self.rng.random() < self.loss:
            self.counts[what] += 1
            return True
        return False


async def _pump(
    link: Link,
    reader: asyncio.StreamReader,
    writer: Awaitable[asyncio.StreamWriter],
    not_before: float,
) -> None:
    """Relay one direction: each chunk released half an RTT after it was read (a retransmission
    timeout more when lost), never before ``not_before`` nor before the chunk ahead of it."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUED)

    async def read() -> None:
        release = not_before
        with contextlib.suppress(OSError):  # a reset ends the stream like an end of file
            while data := await reader.read(CHUNK):
                release = max(release, loop.time() + link.rtt / 2)
                link.counts["chunks"] += 1
                if link.lost("lost"):
                    release += link.rtt + MIN_RTO
                await queue.put((release, data))
        await queue.put((max(release, loop.time() + link.rtt / 2), b""))

    async def write() -> None:
        out = await writer
        while True:
            release, data = await queue.get()
            delay = release - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not data:
                if out.can_write_eof() and not out.is_closing():  # the other side may be gone
                    out.write_eof()
                return
            out.write(data)
            await out.drain()

    reading = asyncio.ensure_future(read())
    try:
        await write()
    finally:
        reading.cancel()


async def _relay(
    link: Link, target: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """One client connection: the upstream connected when the emulated handshake completes,
    the client's bytes read from the start (they were sent while the handshake ran)."""
    loop = asyncio.get_running_loop()
    link.counts["connections"] += 1
    established = loop.time() + 1.5 * link.rtt + (SYN_RTO if link.lost("syn_lost") else 0.0)
    upstream: asyncio.Future[asyncio.StreamWriter] = loop.create_future()

    async def to_target() -> None:
        await asyncio.sleep(established - loop.time())
        up_reader, up_writer = await asyncio.open_connection(*target)
        upstream.set_result(up_writer)
        await _pump(link, up_reader, _ready(writer), 0.0)

    try:
        async with asyncio.TaskGroup() as group:  # one direction failing ends the other
            group.create_task(to_target())
            group.create_task(_pump(link, reader, upstream, established))
    except* OSError:
        pass
    finally:
        writer.close()
        if upstream.done() and not upstream.cancelled() and upstream.exception() is None:
            upstream.result().close()


async def _ready(writer: asyncio.StreamWriter) -> asyncio.StreamWriter:
    return writer


async def serve(link: Link, entries: list[tuple[str, str, int]]) -> None:
    servers = []
    for listen, host, port in entries:

        async def handle(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, target: tuple[str, int] = (host, port)
        ) -> None:
            # Connections still open when the relay stops are cancelled with the loop; asyncio's
            # stream callback would print each as a traceback.
            with contextlib.suppress(asyncio.CancelledError):
                await _relay(link, target, r, w)

        servers.append(await asyncio.start_server(handle, listen, 0, backlog=4096))
    print(json.dumps([s.sockets[0].getsockname()[1] for s in servers]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(json.dumps(link.counts), flush=True)


class Relay:
    """The injector as a child process: ``ports[i]`` relays to ``entries[i]``'s target."""

    def __init__(
        self,
        entries: list[tuple[str, str, int]],
        rtt: float,
        loss: float,
        workdir: str | os.PathLike[str],
        seed: int | None = None,
    ) -> None:
        mapping = os.path.join(workdir, "netem-map.json")
        with open(mapping, "w") as f:
            json.dump(entries, f)
        args = [sys.executable, __file__, "--rtt", f"{rtt}s", "--loss", str(loss), "--map", mapping]
        if seed is not None:
            args += ["--seed", str(seed)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"the relay exited ({self.proc.returncode}) before listening")
        self.ports: list[int] = json.loads(line)
        self.counts: dict[str, int] = {}

    def stop(self) -> dict[str, int]:
        """Stop the relay; its counts (connections, chunks, lost, syn_lost)."""
        out, _ = self.proc.communicate(timeout=30)
        self.counts = json.loads(out.strip().splitlines()[-1])
        return self.counts

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt", type=seconds, default=0.0, help="round-trip time, e.g. 100ms")
    parser.add_argument("--loss", type=fraction, default=0.0, help="segment loss, e.g. 1%%")
    parser.add_argument("--seed", type=int, default=None, help="of the loss draws")
    parser.add_argument("--map", required=True, help="JSON: [[listen_host, host, port], ...]")
    args = parser.parse_args()
    with open(args.map) as f:
        entries = [(str(a), str(h), int(p)) for a, h, p in json.load(f)]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    needed = 3 * len(entries) + 64  # a listener, and two sockets per connection
    if hard != resource.RLIM_INFINITY and hard < needed:
        sys.exit(f"netem: {needed} open files are needed, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with contextlib.suppress(PermissionError):  # the network's timing should not wait for CPU
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(Link(args.rtt, args.loss, random.Random(args.seed)), entries))


if __name__ == "__main__":
    main()
