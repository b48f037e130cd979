"""The audit log: one JSON line per decision, accepted or rejected, flushed as it is written."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from protocol.action import Action


class AuditLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a")

    def decision(
        self,
        *,
        action: Action | None,
        action_id: str | None,
        signers: tuple[str, ...],
        peer: str,
        verdict: str,
        detail: str = "",
    ) -> None:
        self.write(
            {
                "time": round(time.time(), 3),
                "action_id": action_id,
                "signers": list(signers),
                "modules": action.modules if action else [],
                "params_digest": action.operations_digest if action else None,
                "peer": peer,
                "verdict": verdict,
                "detail": detail,
            }
        )

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
