"""The agent's alert store: what its watchers raised, on disk, bounded, rotated.

Alerts are numbered from 1 without gaps and appended, one JSON line each, to segment files named
after their first number. When the segments hold more than ``capacity`` alerts the oldest segment
is deleted: nothing below the bound is lost, and what went above it is counted (the first number
still kept, minus one). Readers wait on ``changed`` to stream new alerts as they are written.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Segments the capacity is split into: rotation drops one of them at a time.
SEGMENTS = 5


class AlertStore:
    def __init__(self, directory: Path, capacity: int) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self.per_segment = max(1, capacity // SEGMENTS)
        self._segments = sorted(int(p.stem) for p in directory.glob("*.jsonl"))
        self._count = 0  # alerts in the last segment
        self.last = 0
        if self._segments:
            lines = self._path(self._segments[-1]).read_bytes().splitlines()
            self._count = len(lines)
            self.last = self._segments[-1] + len(lines) - 1
        self._fd: int | None = None
        self._changed = asyncio.Event()

    @property
    def dropped(self) -> int:
        """Alerts rotated out of the store."""
        return self._segments[0] - 1 if self._segments else 0

    def _path(self, first: int) -> Path:
        return self.directory / f"{first:012d}.jsonl"

    def add(self, alert: dict[str, Any]) -> int:
        """Store an alert (an ``fswatch_alerts`` row but ``seq`` and ``dropped``); its number."""
        if self._fd is None or self._count >= self.per_segment:
            self._rotate()
        assert self._fd is not None
        self.last += 1
        line = json.dumps({"seq": self.last, **alert}, separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode())
        self._count += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return self.last

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        if not self._segments or self._count >= self.per_segment:
            self._segments.append(self.last + 1)
            self._count = 0
        while len(self._segments) > SEGMENTS:
            self._path(self._segments.pop(0)).unlink(missing_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self._path(self._segments[-1]), flags, 0o600)

    def changed(self) -> asyncio.Event:
        """Set at the next ``add``; take it before reading, so no alert is missed."""
        return self._changed

    def since(self, seq: int) -> Iterator[dict[str, Any]]:
        """The stored alerts numbered above ``seq``, oldest first."""
        starts = list(self._segments)
        for i, first in enumerate(starts):
            if i + 1 < len(starts) and starts[i + 1] <= seq + 1:
                continue
            try:
                data = self._path(first).read_bytes()
            except FileNotFoundError:  # rotated out while reading
                continue
            for line in data.splitlines():
                alert = json.loads(line)
                if alert["seq"] > seq:
                    yield alert

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
