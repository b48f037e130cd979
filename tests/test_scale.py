"""Fan-out at scale, by behaviour (no wall-clock asserts): known_hosts is parsed once per run,
never per connection; the connect window bounds and adapts how many handshakes run at once; a
run sharded over worker processes gives the same statuses, matches and store as one process.
"""

from __future__ import annotations

import asyncio
import builtins
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from console.actions.compose import compose
from console.fanout.dispatch import Dispatcher
from console.fanout.shard import ShardedDispatcher, parse_workers
from console.fanout.ssh import Connector, ConnectWindow, Pool
from console.fanout.ssh_transport import SshTransport
from console.lab.local import Lab
from console.results.records import Event, HostEvent, decode_event, encode_event
from console.results.store import Store
from inventory.loader import load_inventory
from protocol.envelope import Envelope
from protocol.signing import Signer
from tests.support.cli import console_env, events, spyglass
from tests.support.lab import running_lab
from tests.support.waiting import until

pytestmark = pytest.mark.xdist_group("scale")

FLEET = 20
PLANTED = (2, 7, 11, 19)  # 0-based lab indexes holding /srv/drop/ioc-*.bin
NAME = "^(ioc-|passwd$)"  # every host has /etc/passwd, so every host answers "matched"


@pytest.fixture(scope="module")
def fleet() -> Iterator[Lab]:
    """Twenty agents (in one process); four hold /srv/drop/ioc-N.bin."""
    drops = {index: (f"ioc-{index}.bin", b"x") for index in PLANTED}
    with running_lab(FLEET, drops, prefix="sgs") as started:
        yield started


def envelope(lab: Lab) -> Envelope:
    action = compose("file", {"paths": ["/srv", "/etc"], "name": [NAME]}, "all")
    return Signer(lab.gnupghome).sign(Envelope(action))


# -- known_hosts -------------------------------------------------------------------------------
async def test_known_hosts_is_read_once_per_run_not_per_connection(
    fleet: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = load_inventory(fleet.inventory)
    known_hosts = inventory.defaults.known_hosts
    assert known_hosts is not None and len(inventory.hosts) == FLEET
    reads: list[str] = []
    real_open = builtins.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(file, str | os.PathLike) and Path(file).resolve() == known_hosts.resolve():
            reads.append(str(file))
        return real_open(file, *args, **kwargs)

    # builtins.open is io.open; pathlib (read_text) calls io.open, asyncssh calls open.
    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    pool = Pool(Connector(inventory))
    assert len(reads) == 1, "the connector parses known_hosts when it is built"
    results: list[HostEvent] = []

    def sink(event: Event) -> None:
        if isinstance(event, HostEvent):
            results.append(event)

    try:
        dispatcher = Dispatcher(SshTransport(pool), concurrency=8)
        await dispatcher.run(envelope(fleet), list(inventory.hosts), sink)
    finally:
        await pool.close()
    assert {e.result.status for e in results} == {"matched"}, [e.result for e in results]
    assert len(results) == FLEET
    assert len(reads) == 1, f"known_hosts read again during the run: {reads}"


# -- the connect window ------------------------------------------------------------------------
async def test_connect_window_bounds_concurrent_handshakes_and_survives_cancellation() -> None:
    window = ConnectWindow(target=1.0, start=4, low=2, high=8)
    peak = 0
    release = asyncio.Event()

    async def handshake() -> None:
        nonlocal peak
        async with window:
            peak = max(peak, window.active)
            await release.wait()

    tasks = [asyncio.create_task(handshake()) for _ in range(20)]
    await until(lambda: window.active + len(window._waiters) == 20, what="all 20 at the window")
    assert window.active == 4 and peak == 4
    for task in tasks[4:10]:  # cancel some that wait for their turn
        task.cancel()
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert peak == 4 and window.active == 0
    assert sum(t.cancelled() for t in tasks) == 6


async def test_connect_window_shrinks_on_slow_handshakes_and_grows_back_when_fast() -> None:
    window = ConnectWindow(target=1.0, start=64, low=8, high=100)
    window.record(3.0)  # a handshake four times slower than the target: saturated
    assert window.size == 48
    window.record(3.0)  # at most one decrease per target period
    assert window.size == 48
    window._shrunk_at -= 2.0
    for _ in range(20):
        window.record(3.0)
        window._shrunk_at -= 2.0
    assert window.size == 8, "never below low"
    window.record(0.1)  # fast, but nobody waits: no reason to grow
    assert window.size == 8

    gate = asyncio.Event()

    async def hold() -> None:
        async with window:
            await gate.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(12)]
    await until(lambda: window.active + len(window._waiters) == 12, what="all 12 at the window")
    assert window.active == 8
    for _ in range(4):
        window.record(0.1)  # fast while four wait: each completion opens one more slot
        await asyncio.sleep(0)  # the woken one takes it
    assert window.size == 12 and window.active == 12
    gate.set()
    await asyncio.gather(*tasks)


# -- sharding ----------------------------------------------------------------------------------
def test_parse_workers() -> None:
    assert parse_workers("3") == 3
    assert parse_workers("auto") == len(os.sched_getaffinity(0))
    for bad in ("0", "-1", "two", ""):
        with pytest.raises(Exception, match="positive integer or 'auto'"):
            parse_workers(bad)


def test_events_cross_the_worker_pipe_intact() -> None:
    from console.results.records import HostResult, MatchEvent, ProgressEvent, StateEvent

    events: list[Event] = [
        StateEvent("h", "running"),
        MatchEvent("h", 0, "file", {"path": "/srv/\udcff\u202ex", "size": 3}),
        ProgressEvent("h", 0, {"files": 7}),
        HostEvent(HostResult("h", "rejected", "acl", "no", 0, 12, {"name": "h"})),
    ]
    for event in events:
        line = json.dumps(encode_event(event), ensure_ascii=True)
        assert decode_event(json.loads(line)) == event


def spyglass_run(lab: Lab, store: Path, workers: str) -> tuple[int, list[dict[str, Any]]]:
    args = ["run", "file", "--paths", "/srv", "--paths", "/etc", "--name", NAME]
    done = spyglass(
        console_env(lab, lab.inventory, store), *args, "-t", "all", "--json", "--workers", workers
    )
    return done.returncode, events(done.stdout)


def outcome(events: list[dict[str, Any]]) -> tuple[Any, ...]:
    hosts = {
        e["host"]: (e["status"], e["reason"], e["matches"]) for e in events if e["event"] == "host"
    }
    matches = sorted(
        json.dumps([e["host"], e["op"], e["data"]], sort_keys=True)
        for e in events
        if e["event"] == "match"
    )
    summary = {
        k: v for k, v in events[-1].items() if k not in ("action_id", "run_id", "elapsed_ms")
    }
    return hosts, matches, summary


def stored(store_path: Path, run_id: str) -> tuple[Any, ...]:
    store = Store(store_path)
    try:
        hosts = {r["host"]: (r["status"], r["matches"]) for r in store.hosts(run_id)}
        matches = sorted(
            json.dumps([m["host"], m["op"], m["data"]], sort_keys=True)
            for m in store.matches(run_id)
        )
        run = store.run(run_id)
        assert run is not None
        return hosts, matches, (run["hosts"], run["matched"], run["nomatch"], run["failed"])
    finally:
        store.close()


def test_sharded_run_gives_the_same_results_as_one_process(fleet: Lab, tmp_path: Path) -> None:
    store = tmp_path / "results.db"
    code_one, one = spyglass_run(fleet, store, "1")
    code_two, two = spyglass_run(fleet, store, "2")
    assert code_one == code_two == 0
    assert outcome(one) == outcome(two)
    hosts, matches, _ = outcome(two)
    assert len(hosts) == FLEET and {s for s, _, _ in hosts.values()} == {"matched"}
    ioc_hosts = {json.loads(m)[0] for m in matches if "ioc-" in m}
    assert ioc_hosts == {f"lab-{i + 1:03d}" for i in PLANTED}
    # The parent stored what the workers sent, as the single process did.
    assert stored(store, one[-1]["action_id"]) == stored(store, two[-1]["action_id"])
    # Every host's events arrive before its host line, whichever worker ran it.
    seen_done: set[str] = set()
    for event in two:
        if event["event"] == "match":
            assert event["host"] not in seen_done
        elif event["event"] == "host":
            seen_done.add(event["host"])


async def test_sharded_dispatcher_reports_hosts_of_a_dead_worker(
    fleet: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = load_inventory(fleet.inventory)
    hosts = list(inventory.hosts)
    dispatcher = ShardedDispatcher(inventory, 2)
    # A worker that dies at once: an interpreter that cannot import the worker module.
    monkeypatch.setenv("PYTHONPATH", "/nonexistent")
    monkeypatch.setattr(sys, "executable", "/bin/false")
    results: dict[str, str] = {}

    def sink(event: Event) -> None:
        if isinstance(event, HostEvent):
            results[event.result.host] = event.result.status

    summary = await dispatcher.run(envelope(fleet), hosts, sink)
    assert set(results) == {h.name for h in hosts}
    assert set(results.values()) == {"error"}
    assert summary.failed == FLEET
    assert "worker process died" in summary.results[hosts[0].name].detail
