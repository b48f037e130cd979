"""The replay cache: action ids already accepted, and the recorded outcome of each.

Ids are appended to ``state_dir/replay.log`` as they are accepted, so a restarted agent still
refuses them; the events an action produced are kept in ``state_dir/outcomes/ID.frames`` until it
expires, so a console that re-sends the same envelope gets the stored outcome again. They are kept
as the frames that were sent (length-prefixed JSON): recording costs no second encoding.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from protocol.frames import FrameDecoder


class ReplayCache:
    def __init__(self, state_dir: Path) -> None:
        self.log_path = state_dir / "replay.log"
        self.outcomes = state_dir / "outcomes"
        self.outcomes.mkdir(parents=True, exist_ok=True)
        self._seen: dict[str, int] = {}
        if self.log_path.exists():
            for line in self.log_path.read_text().splitlines():
                action_id, _, expiry = line.partition(" ")
                if expiry.isdigit():
                    self._seen[action_id] = int(expiry)
        self.prune()
        self._log = self.log_path.open("a")

    def __contains__(self, action_id: str) -> bool:
        return action_id in self._seen

    def add(self, action_id: str, expire_after: int) -> None:
        self._seen[action_id] = expire_after
        self._log.write(f"{action_id} {expire_after}\n")
        self._log.flush()

    def prune(self, now: float | None = None) -> None:
        """Forget expired actions (an expired action is refused anyway) and rewrite the log."""
        now = time.time() if now is None else now
        expired = [i for i, expiry in self._seen.items() if expiry < now]
        for action_id in expired:
            del self._seen[action_id]
            (self.outcomes / f"{action_id}.frames").unlink(missing_ok=True)
        if expired or not self.log_path.exists():
            lines = "".join(f"{i} {e}\n" for i, e in self._seen.items())
            tmp = self.log_path.with_suffix(".tmp")
            tmp.write_text(lines)
            tmp.replace(self.log_path)

    def record(self, action_id: str, frames: list[bytes]) -> None:
        """Keep a finished action's encoded events; written whole, then renamed into place, so
        a partial outcome never exists."""
        tmp = os.path.join(self.outcomes, f"{action_id}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join(frames))
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(self.outcomes, f"{action_id}.frames"))

    def outcome(self, action_id: str) -> list[dict[str, Any]] | None:
        path = self.outcomes / f"{action_id}.frames"
        if not path.exists():
            return None
        return FrameDecoder(max_frame=1 << 30).feed(path.read_bytes())

    def close(self) -> None:
        self._log.close()
