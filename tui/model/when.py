"""Times as an investigator reads them: local wall-clock time and how long ago.

Epoch seconds are what actions, agents and the store carry; on screen they are always turned into
``2026-11-30 14:22:05`` (local time) and ``3 min ago`` / ``in 5 min``. Agents' rejection details
name epoch seconds too (``expired at 1764400300, agent time is ...``): ``humanize_epochs`` rewrites
those inside free text.
"""

from __future__ import annotations

import re
import time

clock = time.time
"""Now, in epoch seconds (one name, so that snapshot tests can stop the clock)."""

#: Ten-digit numbers between 2001 and 2286: epoch seconds in an agent's free-text detail.
_EPOCH = re.compile(r"(?<![\d.])1\d{9}(?![\d.])")


def local_time(epoch: float | None, *, zone: bool = False) -> str:
    """``2026-11-30 14:22:05`` in the console's local time (with ``CET`` if ``zone``)."""
    if epoch is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S" + (" %Z" if zone else ""), time.localtime(epoch))
    except (OverflowError, OSError, ValueError):
        return "?"


def relative(epoch: float | None, now: float | None = None) -> str:
    """``3 min ago``, ``in 5 min``, ``just now``: rounded to the largest whole unit."""
    if epoch is None:
        return ""
    delta = (clock() if now is None else now) - epoch
    seconds = abs(delta)
    if seconds < 5:
        return "just now"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size:
            amount = f"{int(seconds // size)} {unit}"
            break
    return f"{amount} ago" if delta > 0 else f"in {amount}"


def when(epoch: float | None, now: float | None = None) -> str:
    """``2026-11-30 14:22:05 (3 min ago)``."""
    if epoch is None:
        return "-"
    return f"{local_time(epoch)} ({relative(epoch, now)})"


def humanize_epochs(text: str) -> str:
    """``text`` with every epoch-seconds number written as local time."""
    return _EPOCH.sub(lambda m: local_time(int(m.group())), text) if text else text
