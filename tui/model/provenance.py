"""Where a run came from, in one line each: the module with its parameters, and who signed it.

``compact_operations`` is what the watch header and the history rows show (``file paths=/srv
name=\\.php$``, from ``console.results.provenance``); ``signer_ids`` reads the issuer of each
armored signature without running gpg (the history lists many runs, gpg costs a process each).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from console.results.provenance import compact_params, signature_issuer
from console.results.text import printable
from tui.model.when import local_time, relative


def compact_operations(action: dict[str, Any]) -> str:
    """Each operation as ``MODULE params`` (console's compact form, terminal-safe), joined by
    ``; ``."""
    ops = action.get("operations") or []
    return "; ".join(
        printable(f"{op.get('module', '?')} {_params(op)}".strip())
        for op in ops
        if isinstance(op, dict)
    )


def _params(op: dict[str, Any]) -> str:
    params = op.get("params")
    return compact_params(str(op.get("module")), params) if isinstance(params, dict) else ""


def signer_ids(signatures: Iterable[Any]) -> list[str]:
    """The issuer key id (the last 16 hex digits of its fingerprint) of each signature; ``?``
    for one that cannot be read."""
    issuers = (signature_issuer(s) if isinstance(s, str) else None for s in signatures)
    return [issuer[-16:] if issuer else "?" for issuer in issuers]


TIME_FIELDS = ("valid_from", "expire_after")


def readable_action(action: dict[str, Any]) -> dict[str, Any]:
    """The action for the preview: every field as signed, the times in local time (the signed
    numbers are epoch seconds, which nobody reads)."""
    shown = dict(action)
    for key in TIME_FIELDS:
        value = shown.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            shown[key] = f"{local_time(value, zone=True)} ({relative(value)})"
    return shown


def expiry_text(action: dict[str, Any]) -> str:
    """The validity window as the compose screen's expiry field takes it (``5m``, ``90s``)."""
    try:
        seconds = int(action["expire_after"]) - int(action["valid_from"])
    except (KeyError, TypeError, ValueError):
        return "5m"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{max(1, seconds)}s"
