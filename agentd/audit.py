"""The audit log: one JSON line per decision, accepted or rejected, flushed as it is written.

Every line names what was known when the decision was made, whatever the verdict: the action id
and the digest of its canonical bytes, its modules and params digest (once the envelope parsed),
and the trusted keys that signed it (once signatures were verified: an ``acl`` refusal names its
signers, a time refusal, checked before any signature, names none)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.action import Action


@dataclass(slots=True)
class Known:
    """What a request has revealed so far, for its audit line: whatever the verdict, the line
    names the action (id, digest, modules, params) once it parsed, and its trusted signers once
    they were verified."""

    action_id: str | None
    action: Action | None = None
    digest: str = ""  # SHA-256 of the canonical action bytes: what an outcome is keyed by
    signers: tuple[str, ...] = ()

    def learn(self, action: Action) -> None:
        self.action, self.action_id = action, action.id
        self.digest = hashlib.sha256(action.canonical).hexdigest()


class AuditLog:
    """The agent's audit file, and one line per decision in its log (stdout, the journal under
    systemd) so that an operator following the journal sees each action as it is decided."""

    def __init__(self, path: Path, name: str = "") -> None:
        self.name = name
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "a")

    def decision(self, known: Known, *, peer: str, verdict: str, detail: str = "") -> None:
        action, signers = known.action, known.signers
        self.write(
            {
                "time": round(time.time(), 3),
                "action_id": known.action_id,
                "action_digest": known.digest or None,
                "signers": list(signers),
                "modules": action.modules if action else [],
                "params_digest": action.operations_digest if action else None,
                "peer": peer,
                "verdict": verdict,
                "detail": detail,
            }
        )
        modules = ",".join(action.modules) if action else "?"
        who = " ".join(s[-16:] for s in signers) or "no verified signer"
        print(
            f"{self.name}: {verdict} {known.action_id or '?'} ({modules}) by {who} from {peer}",
            flush=True,
        )

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
