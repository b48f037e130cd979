r"""Benchmark: stream 100,000 match rows and 5,000 host updates into the running TUI (headless).

Reports the longest event-loop stall while the stream is applied, and the time from the last
event's arrival until the last row has been drawn in the matches table; the baseline is the
longest stall of the same idle app measured in the same run.

    .venv/bin/python bench/tui_stream.py [--matches 100000] [--hosts 5000] [--rate 50000]
        [--filter 'path~[02468]\.php$'] [--stack size]

``--rate`` paces the producer (events per second, 0 = as fast as possible), like agents
answering over the network. Goal (issue 4): no stall over 100 ms, last row visible within 1 s.
``--filter`` sets the matches filter before the stream starts, ``--stack COLUMN`` opens the
stack view over the watch screen (issue 16: both live while the rows stream in; ``''`` turns
either off); the run then ends when the stack has counted every row, and the counts and the
filter's kept rows are checked against a count made here.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import re
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from textual.widgets import Input

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from console.results.records import HostEvent, HostResult, MatchEvent, StateEvent
from console.results.stack import stack_key
from tui.app import SpyglassApp
from tui.model.runstate import RunState
from tui.model.session import Session
from tui.screens.stack import StackScreen
from tui.screens.watch import WatchScreen
from tui.widgets.virtual_table import VirtualTable

CHUNK = 500


class StallMonitor:
    """Sleeps 5 ms at a time and records how late each wake-up was."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            self.longest = max(self.longest, time.perf_counter() - start - 0.005)

    def start(self) -> None:
        self.longest = 0.0
        self._task = asyncio.create_task(self._run())

    def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        return self.longest


class GcWatch:
    """Records how long each garbage collection took, by generation (stalls often are GCs)."""

    def __init__(self) -> None:
        self.longest = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            generation = info["generation"]
            self.count[generation] += 1
            elapsed = time.perf_counter() - self._start
            self.longest[generation] = max(self.longest[generation], elapsed)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def events(n_matches: int, n_hosts: int) -> list[list[object]]:
    """Chunks of events as agents would send them: states, matches spread over hosts, results."""
    hosts = [f"host-{i:05d}" for i in range(n_hosts)]
    stream: list[object] = [StateEvent(h, "connecting") for h in hosts]
    stream += [StateEvent(h, "running") for h in hosts]
    per_host = max(1, n_matches // n_hosts)
    for i in range(n_matches):
        host = hosts[(i // per_host) % n_hosts]
        stream.append(
            MatchEvent(
                host,
                0,
                "file",
                {
                    "path": f"/srv/www/uploads/file-{i:06d}.php",
                    "size": i % 5000,
                    "mode": "-rw-r--r--",
                    "mtime": 1764400000 + i,
                    "sha256": None,
                    "matched": ["name"],
                },
            )
        )
    stream += [HostEvent(HostResult(h, "matched", matches=per_host, elapsed_ms=900)) for h in hosts]
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]


async def bench(
    n_matches: int, n_hosts: int, rate: float, row_filter: str = "", stack: str = ""
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sgb", dir="/tmp") as tmp:
        inventory = Path(tmp) / "inventory.toml"
        inventory.write_text('[[hosts]]\nname = "host-00000"\naddress = "127.0.0.1"\n')
        app = SpyglassApp(Session(str(inventory), Path(tmp) / "results.db"))
        async with app.run_test(size=(160, 50)) as pilot:
            action = {
                "id": "BENCH0000000000000000000000",
                "name": "bench",
                "target": "all",
                "operations": [{"module": "file", "params": {}}],
            }
            state = RunState(action, [f"host-{i:05d}" for i in range(n_hosts)])
            app.current = state
            await app.push_screen(WatchScreen(state))
            await pilot.pause(0.3)
            table = app.screen.query_one("#matches", VirtualTable)
            if row_filter:
                app.screen.query_one("#filter", Input).value = row_filter
                await pilot.pause(0.1)
                assert state.match_model.filter_text, state.match_model.row_filter.error
            stack_screen: StackScreen | None = None
            if stack:
                stack_screen = StackScreen(state, app.session, stack)
                await app.push_screen(stack_screen)
                await pilot.pause(0.3)
            chunks = events(n_matches, n_hosts)
            expected_kept, expected_stack = expected(chunks, row_filter, stack)
            total = sum(len(c) for c in chunks)
            chunks.reverse()  # popped as sent: the app, not the benchmark, holds sent events

            monitor = StallMonitor()
            monitor.start()
            await asyncio.sleep(0.5)
            idle = monitor.stop()

            monitor.start()
            gc_watch = GcWatch().__enter__()
            start = time.perf_counter()
            sent = 0
            while chunks:
                chunk = chunks.pop()
                for event in chunk:
                    state.sink(event)  # type: ignore[arg-type]
                sent += len(chunk)
                if rate:
                    ahead = sent / rate - (time.perf_counter() - start)
                    await asyncio.sleep(max(0.0, ahead))
                else:
                    await asyncio.sleep(0)
            last_arrival = time.perf_counter()
            while state.pending or (
                stack_screen._fed < n_matches or len(stack_screen.model) < len(expected_stack)
                if stack_screen is not None
                else table.rendered_rows < n_matches
            ):
                await asyncio.sleep(0.005)
            visible = time.perf_counter() - last_arrival
            busy = monitor.stop()
            gc_watch.__exit__()
            await pilot.pause(0.3)
            # What a full collection costs now that the app holds every row (the best of three:
            # the first one also untracks the tuples made since the last collection).
            full_collection = float("inf")
            for _ in range(3):
                collect_start = time.perf_counter()
                gc.collect()
                full_collection = min(full_collection, time.perf_counter() - collect_start)
            assert state.counts["matched"] == n_hosts, state.counts
            if row_filter:
                assert len(state.match_model) == expected_kept, len(state.match_model)
            if stack_screen is not None:  # the view redraws its counts on its tick: let it
                deadline = time.perf_counter() + 2.0
                while (shown := {r.key: r.raw[0] for r in stack_screen.model.rows}) != (
                    expected_stack
                ) and time.perf_counter() < deadline:
                    await pilot.pause(0.05)
                assert shown == expected_stack, "stack counts differ from the bench's count"
            return {
                "kept": len(state.match_model) if row_filter else None,
                "values": len(expected_stack) if stack else None,
                "events": total,
                "stream_s": last_arrival - start,
                "idle_stall_ms": idle * 1000,
                "max_stall_ms": busy * 1000,
                "last_row_visible_s": visible,
                "full_collection_ms": full_collection * 1000,
                "gc_counts": gc_watch.count,
                "gc_longest_ms": [t * 1000 for t in gc_watch.longest],
            }


def expected(chunks: list[list[object]], row_filter: str, stack: str) -> tuple[int, dict[str, int]]:
    """What the filter must keep and the stack must count (hosts per value), computed here
    from the events, independently of the TUI's model."""
    matches = [e for chunk in chunks for e in chunk if isinstance(e, MatchEvent)]
    kept = 0
    if row_filter:
        column, _, pattern = row_filter.partition("~")
        regex = re.compile(pattern)
        kept = sum(1 for m in matches if regex.search(str(m.data[column])))
    hosts: dict[str, set[str]] = defaultdict(set)
    if stack:
        for m in matches:
            if m.data.get(stack) is not None:
                hosts[stack_key(m.data[stack]) or ""].add(m.host)
    return kept, {value: len(h) for value, h in hosts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matches", type=int, default=100_000)
    parser.add_argument("--hosts", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=50_000, help="events/s, 0 = unpaced")
    parser.add_argument(
        "--filter", default=r"path~[02468]\.php$", help="a column-scoped regex ('' = none)"
    )
    parser.add_argument("--stack", default="size", help="stack view column ('' = none)")
    args = parser.parse_args()
    r = asyncio.run(bench(args.matches, args.hosts, args.rate, args.filter, args.stack))
    print(f"events streamed:            {r['events']:,} in {r['stream_s']:.2f} s")
    if args.filter:
        print(f"{'filter ' + args.filter + ':':<28}kept {r['kept']:,} rows (as counted here)")
    if args.stack:
        print(f"{'stack by ' + args.stack + ':':<28}{r['values']:,} values (counts as here)")
    print(f"idle app, longest stall:    {r['idle_stall_ms']:.1f} ms (baseline)")
    print(
        f"streaming, longest stall:   {r['max_stall_ms']:.1f} ms "
        f"({r['max_stall_ms'] / max(r['idle_stall_ms'], 0.1):.1f}x baseline; goal < 100 ms)"
    )
    what = "stack complete after:" if args.stack else "last row visible after:"
    visible_ms = r["last_row_visible_s"] * 1000
    print(f"{what:<28}{visible_ms:.0f} ms (goal < 1000 ms)")
    gcs = ", ".join(
        f"gen{g} {n} (longest {t:.1f} ms)"
        for g, (n, t) in enumerate(zip(r["gc_counts"], r["gc_longest_ms"], strict=True))
    )
    print(f"garbage collections:        {gcs}")
    print(f"a full collection after:    {r['full_collection_ms']:.1f} ms")


if __name__ == "__main__":
    main()
