"""Where a run's results come from, in one place: the module, its parameters (compact), the
target, the signers and the times, read from the signed envelope itself.

``results list/show``, every export (JSON lines, CSV), ``run --json`` and the TUI's history and
watch header all call ``provenance`` (or ``default_name`` when composing), so they agree.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

from modules.registry import get_module

#: A parameter value longer than this is cut in names and compact parameters (with "…").
VALUE_CHARS = 24


def compact_params(module: str, params: dict[str, Any]) -> str:
    """``paths=/srv content=eval\\(base64_de…``: the parameters that differ from the module's
    defaults, in declaration order, lists joined by commas, long values cut."""
    declared = get_module(module)
    order = [p.name for p in declared.params] if declared else sorted(params)
    defaults = {p.name: p.default_value() for p in declared.params} if declared else {}
    parts = []
    for name in [*order, *sorted(set(params) - set(order))]:
        if name not in params or params[name] == defaults.get(name, object()):
            continue
        value = params[name]
        if isinstance(value, bool):
            parts.append(name if value else f"no-{name}")
            continue
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        if len(text) > VALUE_CHARS:
            text = text[: VALUE_CHARS - 1] + "…"
        parts.append(f"{name}={text}")
    return " ".join(parts)


def default_name(module: str, params: dict[str, Any], target: str) -> str:
    """A readable name for an action the investigator did not name:
    ``file paths=/srv content=eval\\(base64_de… on env=prod``."""
    described = compact_params(module, params)
    return f"{module} {described} on {target}" if described else f"{module} on {target}"


@dataclass(frozen=True, slots=True)
class Provenance:
    """What an investigator needs to trust a run's results at a glance."""

    action_id: str
    name: str
    modules: tuple[str, ...]
    params: str
    """Compact parameters; operations separated by `` | ``."""
    target: str
    signers: tuple[str, ...]
    """Fingerprints (or key ids) of the keys that signed the envelope, as their signatures say."""
    valid_from: int
    expire_after: int

    def to_event(self) -> dict[str, Any]:
        """The first line of ``run --json``, ``results show --json`` and JSON-lines exports."""
        return {
            "event": "action",
            "action_id": self.action_id,
            "name": self.name,
            "module": ",".join(self.modules),
            "params": self.params,
            "target": self.target,
            "signers": list(self.signers),
            "valid_from": self.valid_from,
            "expire_after": self.expire_after,
        }

    def lines(self) -> list[str]:
        """The header of ``results show`` (values still need ``printable``)."""
        return [
            f"action {self.action_id}: {self.name}",
            f"  module: {','.join(self.modules)}  params: {self.params or '(defaults)'}",
            f"  target: {self.target}",
            f"  signed by: {', '.join(self.signers) or 'nobody'}",
            f"  valid {clock(self.valid_from)} to {clock(self.expire_after)}",
        ]


def provenance(envelope: dict[str, Any]) -> Provenance:
    """The provenance of an envelope (its JSON form, as stored)."""
    action = envelope.get("action", {})
    operations = action.get("operations", [])
    return Provenance(
        action_id=str(action.get("id", "")),
        name=str(action.get("name", "")),
        modules=tuple(str(op.get("module", "")) for op in operations),
        params=" | ".join(
            compact_params(str(op.get("module", "")), op.get("params", {})) for op in operations
        ),
        target=str(action.get("target", "")),
        signers=tuple(
            issuer for s in envelope.get("signatures", []) if (issuer := signature_issuer(s))
        ),
        valid_from=int(action.get("valid_from", 0)),
        expire_after=int(action.get("expire_after", 0)),
    )


def clock(when: float | None) -> str:
    """A local time as tables show it; empty when unknown."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if when else ""


# -- the issuer of an OpenPGP signature (RFC 9580 §5.2), read without gpg ----------------------

_ISSUER_FINGERPRINT, _ISSUER_KEY_ID = 33, 16


def signature_issuer(armored: str) -> str | None:
    """The issuer fingerprint (else key id) an armored signature names, in upper-case hex; None
    if it names none or is not a signature. This says who *claims* to have signed: the agents
    verify; the console only labels its own records."""
    try:
        packet = _first_packet(_dearmor(armored))
        return _issuer(packet)
    except (ValueError, IndexError, binascii.Error):
        return None


def _dearmor(armored: str) -> bytes:
    lines = armored.strip().splitlines()
    body_start = lines.index("") + 1 if "" in lines else 1
    body = [ln for ln in lines[body_start:] if not ln.startswith(("=", "-----"))]
    return base64.b64decode("".join(body), validate=True)


def _first_packet(data: bytes) -> bytes:
    head = data[0]
    if not head & 0x80:
        raise ValueError("not an OpenPGP packet")
    if head & 0x40:  # new format: length octets follow
        tag, first = head & 0x3F, data[1]
        if first < 192:
            length, start = first, 2
        elif first < 224:
            length, start = ((first - 192) << 8) + data[2] + 192, 3
        elif first == 255:
            length, start = int.from_bytes(data[2:6], "big"), 6
        else:
            raise ValueError("partial lengths are not used for signatures")
    else:
        tag, size = (head >> 2) & 0x0F, {0: 1, 1: 2, 2: 4}.get(head & 0x03)
        if size is None:
            raise ValueError("indeterminate length")
        length, start = int.from_bytes(data[1 : 1 + size], "big"), 1 + size
    if tag != 2:
        raise ValueError("not a signature packet")
    return data[start : start + length]


def _issuer(packet: bytes) -> str | None:
    version = packet[0]
    if version not in (4, 5, 6):
        return None
    width = 4 if version == 6 else 2
    found: dict[int, bytes] = {}
    at = 4
    for _ in range(2):  # hashed, then unhashed subpackets
        size = int.from_bytes(packet[at : at + width], "big")
        at += width
        _subpackets(packet[at : at + size], found)
        at += size
    if _ISSUER_FINGERPRINT in found:
        return found[_ISSUER_FINGERPRINT][1:].hex().upper()  # after the key version octet
    if _ISSUER_KEY_ID in found:
        return found[_ISSUER_KEY_ID].hex().upper()
    return None


def _subpackets(area: bytes, found: dict[int, bytes]) -> None:
    at = 0
    while at < len(area):
        first = area[at]
        if first < 192:
            length, at = first, at + 1
        elif first < 255:
            length, at = ((first - 192) << 8) + area[at + 1] + 192, at + 2
        else:
            length, at = int.from_bytes(area[at + 1 : at + 5], "big"), at + 5
        if length == 0 or at + length > len(area):
            raise ValueError("truncated subpacket")
        found.setdefault(area[at] & 0x7F, area[at + 1 : at + length])
        at += length
