"""Garbage collection while hosts answer: young collections only, full ones after the run.

Why: a full collection visits every tracked object, and a console holding thousands of pooled
connections holds millions of them; CPython starts one whenever the objects promoted since the
last one exceed a quarter of the survivors, which a fan-out does every few thousand hosts. At
10,000 hosts the console's CPU per warm host was 1.55x its figure at 1,000 (``bench/fanout.py
-n 10000 --compare 1000``): the pool of the first run scanned again and again during the second.

What: while any run is in flight (runs may overlap in the TUI), generation-2 collections are
deferred; young collections still free the short-lived cycles of each answer. When the last run
ends, the thresholds are back and CPython collects as it would have. Reference counting frees
everything else as usual, so memory grows only by the cycles that die during a run.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_NEVER = 2**31 - 1
_runs = 0
_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def young_collections_only() -> Iterator[None]:
    global _runs, _saved
    if _runs == 0:
        _saved = gc.get_threshold()
        gc.set_threshold(_saved[0], _saved[1], _NEVER)
    _runs += 1
    try:
        yield
    finally:
        _runs -= 1
        if _runs == 0 and _saved is not None:
            gc.set_threshold(*_saved)
            _saved = None
