"""The replay cache on disk: what a restarted agent keeps, and when it forgets (real files)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agentd.replay import ReplayCache

DIGEST = "ab" * 32
LATER = int(time.time()) + 3600


def stored(cache: ReplayCache, action_id: str, size: int, expire_after: int = LATER) -> None:
    """An action accepted and ended with an outcome of ``size`` bytes."""
    cache.add(action_id, f"{action_id:0<64}", expire_after, 50)
    os.close(cache.running(f"{action_id:0<64}"))
    (cache.outcomes / f"{action_id:0<64}.part").write_bytes(b"x" * size)
    cache.keep(action_id, f"{action_id:0<64}", size, None)


def test_ids_are_refused_in_whole_seconds_until_their_expiry_has_passed(tmp_path: Path) -> None:
    cache = ReplayCache(tmp_path, 1 << 20)
    stored(cache, "a1", 10, expire_after=100)
    cache.prune(now=100.9)  # the expiry check still accepts the action at 100.9
    assert cache.get("a1") is not None
    cache.prune(now=101.0)
    assert cache.get("a1") is None and not any(cache.outcomes.iterdir())
    assert "a1" not in (tmp_path / "replay.log").read_text()


def test_a_restart_keeps_ids_and_outcomes_and_drops_cut_runs(tmp_path: Path) -> None:
    cache = ReplayCache(tmp_path, 1 << 20)
    stored(cache, "a1", 10)
    cache.add("b2", DIGEST, LATER, 50)
    os.close(cache.running(DIGEST))  # b2 was running when the agent stopped
    cache.close()
    with (tmp_path / "replay.log").open("a") as log:
        log.write(f"old-id {LATER}\n")  # an older agent's line: no digest
    again = ReplayCache(tmp_path, 1 << 20)
    a1, b2, old = again.get("a1"), again.get("b2"), again.get("old-id")
    assert a1 is not None and a1.stored == 10 and again.stored(a1) is not None
    assert b2 is not None and again.stored(b2) is None  # refused, nothing to serve
    assert old is not None and again.stored(old) is None
    assert sorted(p.name for p in again.outcomes.iterdir()) == [f"{'a1':0<64}.frames"]


def test_stored_outcomes_stay_under_the_total_cap_oldest_first(tmp_path: Path) -> None:
    cache = ReplayCache(tmp_path, 25)
    for action_id in ("a1", "a2", "a3"):
        stored(cache, action_id, 10)
    assert [cache.get(i).stored for i in ("a1", "a2", "a3")] == [0, 10, 10]  # type: ignore[union-attr]
    assert sum(p.stat().st_size for p in cache.outcomes.iterdir()) == 20


def test_files_are_private(tmp_path: Path) -> None:
    cache = ReplayCache(tmp_path, 1 << 20)
    stored(cache, "a1", 10)
    for path in (tmp_path / "replay.log", *cache.outcomes.iterdir()):
        assert path.stat().st_mode & 0o077 == 0, path
