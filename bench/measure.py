"""What more than one benchmark measures about processes."""

from __future__ import annotations

from collections.abc import Iterable

import psutil


def cpu_seconds(procs: Iterable[psutil.Process]) -> float:
    """User + system CPU of ``procs`` and of the children each has reaped; processes that have
    gone since count nothing."""
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total
