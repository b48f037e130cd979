"""The signed envelope: an action plus ASCII-armored detached OpenPGP signatures over its bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol.action import Action, parse_action
from protocol.errors import ActionError

MAX_SIGNATURES = 16
MAX_SIGNATURE_CHARS = 16384
ARMOR_HEADER = "-----BEGIN PGP SIGNATURE-----"


@dataclass(frozen=True, slots=True)
class Envelope:
    action: Action
    signatures: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.to_dict(), "signatures": list(self.signatures)}

    def with_signature(self, signature: str) -> Envelope:
        return Envelope(self.action, (*self.signatures, signature))

    def save(self, path: str | Path) -> None:
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        Path(path).write_text(text, encoding="utf-8")


def parse_envelope(raw: object) -> Envelope:
    """Validate an envelope exactly; signatures are only checked for shape here, not verified."""
    if not isinstance(raw, dict):
        raise ActionError("envelope: expected a JSON object")
    if unknown := sorted(set(raw) - {"action", "signatures"}, key=str):
        raise ActionError(f"envelope: unknown field {unknown[0]!r}")
    if "action" not in raw or "signatures" not in raw:
        raise ActionError("envelope: needs 'action' and 'signatures'")
    signatures = raw["signatures"]
    if not isinstance(signatures, list) or len(signatures) > MAX_SIGNATURES:
        raise ActionError(f"envelope.signatures: expected an array of at most {MAX_SIGNATURES}")
    for i, sig in enumerate(signatures):
        if not isinstance(sig, str) or len(sig) > MAX_SIGNATURE_CHARS or not _is_unicode(sig):
            raise ActionError(f"envelope.signatures[{i}]: expected an armored signature string")
    return Envelope(parse_action(raw["action"]), tuple(signatures))


def _is_unicode(text: str) -> bool:
    """False for lone surrogates (from a JSON "\\udc80" escape), which break hashing and gpg."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def load_envelope(path: str | Path) -> Envelope:
    """Read an envelope file written by ``--sign-only`` or ``action sign``."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ActionError(f"{path}: {err.strerror}") from None
    except (ValueError, RecursionError) as err:  # JSON, UTF-8, or an int of over 4300 digits
        raise ActionError(f"{path}: not a JSON envelope ({err})") from None
    return parse_envelope(raw)
