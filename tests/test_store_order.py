"""Stored before shown: a front end only ever sees events already committed to the store.

The faults test kills a real console and compares what it printed with what it stored, which can
only catch the race by chance. Here the sink itself checks, through a second SQLite connection,
that each event it is handed is already committed, for every event of a real SSH run.
"""

from __future__ import annotations

import sqlite3

import pytest

from console.fanout.investigation import MatchCaps
from console.results.records import Event, HostEvent, MatchEvent
from tests.support.liar import Liar, investigate, lying_fleet


async def test_every_event_is_committed_before_the_sink_sees_it() -> None:
    liars = {"a": Liar(rows=1500), "b": Liar(rows=700), "c": Liar(rows=0)}
    async with lying_fleet(liars) as fleet:
        run_id = fleet.envelope.action.id
        reader = sqlite3.connect(fleet.store)
        seen: dict[str, int] = {}
        hosts_seen: list[str] = []

        def check(event: Event) -> None:
            if isinstance(event, MatchEvent):
                seen[event.host] = seen.get(event.host, 0) + 1
                (committed,) = reader.execute(
                    "SELECT count(*) FROM matches WHERE run_id = ? AND host = ?",
                    (run_id, event.host),
                ).fetchone()
                assert committed >= seen[event.host], (event.host, committed, seen)
            elif isinstance(event, HostEvent):
                row = reader.execute(
                    "SELECT status, matches FROM hosts WHERE run_id = ? AND host = ?",
                    (run_id, event.result.host),
                ).fetchone()
                assert row == (event.result.status, event.result.matches), row
                hosts_seen.append(event.result.host)

        try:
            await investigate(fleet, MatchCaps(), check)
        finally:
            reader.close()
    assert seen == {"a": 1500, "b": 700}
    assert sorted(hosts_seen) == ["a", "b", "c"]


async def test_a_failing_sink_ends_the_run_with_its_error() -> None:
    """The sink runs in a loop callback now; its error still reaches the caller of ``run``."""

    def explode(event: Event) -> None:
        if isinstance(event, MatchEvent):
            raise RuntimeError("front end broke")

    async with lying_fleet({"a": Liar(rows=50)}) as fleet:
        with pytest.raises(RuntimeError, match="front end broke"):
            await investigate(fleet, MatchCaps(), explode)
