"""The agent's alert store: nothing lost below its bound, rotated above it, the drops counted,
numbers kept across a restart of the agent (a new store over the same folder)."""

from __future__ import annotations

from pathlib import Path

from agentd.watch_alerts import SEGMENTS, AlertStore


def test_below_the_bound_every_alert_is_kept_in_order(tmp_path: Path) -> None:
    store = AlertStore(tmp_path, capacity=100)
    for i in range(100):
        assert store.add({"path": f"/f{i}"}) == i + 1
    assert [a["path"] for a in store.since(0)] == [f"/f{i}" for i in range(100)]
    assert store.dropped == 0
    assert [a["seq"] for a in store.since(97)] == [98, 99, 100]


def test_above_the_bound_the_oldest_segment_goes_and_is_counted(tmp_path: Path) -> None:
    store = AlertStore(tmp_path, capacity=100)
    for i in range(1000):
        store.add({"path": f"/f{i}"})
    kept = [a["seq"] for a in store.since(0)]
    assert len(kept) <= 100 + 100 // SEGMENTS and kept == list(range(kept[0], 1001))
    assert store.dropped == kept[0] - 1 == 1000 - len(kept)
    assert len(list(tmp_path.glob("*.jsonl"))) <= SEGMENTS + 1


def test_numbers_continue_after_a_restart(tmp_path: Path) -> None:
    store = AlertStore(tmp_path, capacity=100)
    for i in range(30):
        store.add({"path": f"/f{i}"})
    store.close()
    again = AlertStore(tmp_path, capacity=100)
    assert again.last == 30
    assert again.add({"path": "/after"}) == 31
    assert [a["seq"] for a in again.since(29)] == [30, 31]
