"""The replay cache: which action ids ran, the digest of the action that ran under each, and the
outcomes kept on disk for the identical action.

The id is the replay key: an id seen once never runs again. An outcome is keyed by the SHA-256 of
the canonical action bytes, so it can only be served to an envelope carrying those exact bytes;
an action that reuses a seen id with other content finds nothing (DESIGN §2).

On disk, under ``state_dir``:
- ``replay.log``: one line per accepted action, ``ID DIGEST EXPIRE_AFTER RAN_AT``;
- ``outcomes/DIGEST.part``: the frames of an action as it runs (length-prefixed JSON, as sent);
- ``outcomes/DIGEST.frames``: the outcome of an action that ended, renamed from its ``.part``, or
  only its summary frames when it outgrew ``[limits] outcome_bytes``.

Expired entries are pruned while the agent runs, and the stored outcomes together stay under
``[limits] outcome_disk_bytes``: past it the oldest are dropped (their ids stay refused).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Seen:
    """An accepted action: the digest of its canonical bytes, its expiry, when it was accepted
    (epoch seconds) and the size of its stored outcome (0 while it runs, or when none is held)."""

    digest: str
    expire_after: int
    ran_at: int
    stored: int = 0


def _create(path: Path) -> int:
    """A new private file (mode set at open, never widened by the umask): outcomes are results."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)


class ReplayCache:
    def __init__(self, state_dir: Path, total_cap: int) -> None:
        self.log_path = state_dir / "replay.log"
        self.outcomes = state_dir / "outcomes"
        self.outcomes.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.total_cap = total_cap
        self._seen: dict[str, Seen] = {}
        if self.log_path.exists():
            for line in self.log_path.read_text().splitlines():
                self._load(line)
        kept = {f"{s.digest}.frames": s for s in self._seen.values()}
        for path in self.outcomes.iterdir():  # runs cut by a restart, strays, left-overs
            if (seen := kept.get(path.name)) is None:
                path.unlink(missing_ok=True)
            else:
                seen.stored = path.stat().st_size
        self._log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.prune()

    def _load(self, line: str) -> None:
        fields = line.split(" ")
        if len(fields) == 4 and fields[2].isdigit() and fields[3].isdigit():
            self._seen[fields[0]] = Seen(fields[1], int(fields[2]), int(fields[3]))
        elif (
            len(fields) == 2 and fields[1].isdigit()
        ):  # an older agent's line: no digest, no outcome
            self._seen[fields[0]] = Seen("", int(fields[1]), 0)

    def get(self, action_id: str) -> Seen | None:
        return self._seen.get(action_id)

    def add(self, action_id: str, digest: str, expire_after: int, ran_at: int) -> None:
        self._seen[action_id] = Seen(digest, expire_after, ran_at)
        os.write(self._log, f"{action_id} {digest} {expire_after} {ran_at}\n".encode())

    def running(self, digest: str) -> int:
        """A descriptor for the outcome of an action that starts now (read and append)."""
        return _create(self.outcomes / f"{digest}.part")

    def keep(self, action_id: str, digest: str, size: int, summary: bytes | None) -> None:
        """An action ended: keep its outcome (``summary`` instead when the whole is too big)."""
        part = self.outcomes / f"{digest}.part"
        seen = self._seen.get(action_id)
        if seen is None or seen.digest != digest:  # it expired while it ran: serve nothing
            part.unlink(missing_ok=True)
            return
        final = self.outcomes / f"{digest}.frames"
        if summary is None:
            part.rename(final)
            seen.stored = size
        else:
            fd = _create(self.outcomes / f"{seen.digest}.tmp")
            try:
                os.write(fd, summary)
            finally:
                os.close(fd)
            (self.outcomes / f"{seen.digest}.tmp").rename(final)
            part.unlink(missing_ok=True)
            seen.stored = len(summary)
        self._bound()

    def discard(self, digest: str) -> None:
        """An action that did not run to its end (the agent stopped, or failed) keeps nothing."""
        (self.outcomes / f"{digest}.part").unlink(missing_ok=True)

    def stored(self, seen: Seen) -> int | None:
        """A read descriptor on the stored outcome of ``seen``, or None if none is held."""
        if not seen.stored:
            return None
        try:
            return os.open(self.outcomes / f"{seen.digest}.frames", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None

    def _bound(self) -> None:
        """Drop the oldest stored outcomes until all of them fit ``total_cap``."""
        held = sorted((s for s in self._seen.values() if s.stored), key=lambda s: s.ran_at)
        total = sum(s.stored for s in held)
        for seen in held:
            if total <= self.total_cap:
                break
            (self.outcomes / f"{seen.digest}.frames").unlink(missing_ok=True)
            total -= seen.stored
            seen.stored = 0

    def prune(self, now: float | None = None) -> None:
        """Forget expired actions (an expired action is refused anyway), delete their stored
        outcomes and rewrite the log without them."""
        # Whole seconds, as the expiry check counts them: at 100.5 an action expiring at 100
        # is still accepted, so its id must still be refused as a replay.
        now = int(time.time() if now is None else now)
        expired = [i for i, seen in self._seen.items() if seen.expire_after < now]
        for action_id in expired:
            seen = self._seen.pop(action_id)
            (self.outcomes / f"{seen.digest}.frames").unlink(missing_ok=True)
        if expired:
            lines = "".join(
                f"{i} {s.digest} {s.expire_after} {s.ran_at}\n" for i, s in self._seen.items()
            )
            tmp = self.log_path.with_suffix(".tmp")
            fd = _create(tmp)
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)
            tmp.replace(self.log_path)
            os.close(self._log)
            self._log = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self._log)
