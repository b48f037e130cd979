"""Full collections wait while any run is in flight, and come back when the last one ends."""

from __future__ import annotations

import gc

from console.fanout.gcpolicy import young_collections_only


def test_overlapping_runs_defer_full_collections_until_the_last_ends() -> None:
    before = gc.get_threshold()
    with young_collections_only():
        assert gc.get_threshold()[:2] == before[:2] and gc.get_threshold()[2] == 2**31 - 1
        with young_collections_only():  # a second run (the TUI's alerts beside a watch)
            pass
        assert gc.get_threshold()[2] == 2**31 - 1  # the first still runs
    assert gc.get_threshold() == before


def test_a_run_that_fails_gives_the_thresholds_back() -> None:
    before = gc.get_threshold()
    try:
        with young_collections_only():
            raise ConnectionError
    except ConnectionError:
        pass
    assert gc.get_threshold() == before
