"""Garbage-collector policy while events stream in: pause full collections during a burst.

Why: a full collection scans every tracked object and, through the lists that hold them, visits
every row. With 100,000 match rows a full collection costs 150 ms on the 2-core target
(``bench/tui_stream.py`` prints it), and CPython starts one whenever the objects promoted since
the last one exceed a quarter of the survivors: during a burst, that is every few seconds.

What (process-wide, so kept in one place and bounded in time):

- ``burst()`` while a watch screen has a backlog: automatic collection is off, and each tick
  runs a young collection (``collect_young``), which frees young reference cycles and untracks
  the new row tuples, in a few milliseconds.
- ``settle()`` when the backlog is gone: ``gc.freeze()`` moves the survivors (the rows and the
  lists holding them) to the permanent generation, where full collections no longer scan them,
  then collection is back on. Frozen objects are still freed by reference counting as usual
  (rows hold no cycles); only a reference *cycle* that was alive at the freeze and dies later
  waits for ``release()``.
- ``release()`` when the investigation is replaced or the app ends: ``gc.unfreeze()``, so the
  next full collection reclaims whatever cycles died among the frozen objects.

Nothing happens if collection was already off when the burst started (someone else owns it).
"""

from __future__ import annotations

import gc

_paused = False
_frozen = False


def burst() -> None:
    """A backlog exists: stop automatic collection (idempotent)."""
    global _paused
    if not _paused and gc.isenabled():
        gc.disable()
        _paused = True


def collect_young() -> None:
    """A young collection during a burst: cheap, bounded by what the last tick allocated."""
    if _paused:
        gc.collect(0)


def settle() -> None:
    """The backlog is gone: freeze the survivors and turn collection back on."""
    global _paused, _frozen
    if _paused:
        gc.collect(0)
        gc.freeze()
        _frozen = True
        gc.enable()
        _paused = False


def release() -> None:
    """Let full collections see everything again (frozen cycles that died get reclaimed)."""
    global _frozen
    settle()
    if _frozen:
        gc.unfreeze()
        _frozen = False


def paused() -> bool:
    return _paused
