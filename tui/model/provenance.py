"""Where a run came from, in one line each: the module with its parameters, and who signed it.

``compact_params`` is what the watch header and the history rows show (``file paths=/srv
name=\\.php$``); ``signer_ids`` reads the issuer of each armored signature without running gpg
(the history lists many runs, gpg costs a process each).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

from console.results.text import printable
from tui.model.when import local_time, relative


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(_value(v) for v in value)
    return printable(value)


def compact_params(params: dict[str, Any]) -> str:
    """``paths=/srv name=\\.php$ return_sha256``: switches by name (``no-x`` when off)."""
    parts = []
    for key, value in params.items():
        if value is True:
            parts.append(printable(key))
        elif value is False:
            parts.append(f"no-{printable(key)}")
        else:
            parts.append(f"{printable(key)}={_value(value)}")
    return " ".join(parts)


def compact_operations(action: dict[str, Any]) -> str:
    """Each operation as ``MODULE params``, joined by ``; ``."""
    ops = action.get("operations") or []
    return "; ".join(
        f"{printable(op.get('module', '?'))} {compact_params(op.get('params') or {})}".strip()
        for op in ops
        if isinstance(op, dict)
    )


def signer_ids(signatures: Iterable[Any]) -> list[str]:
    """The issuer key id (the last 16 hex digits of its fingerprint) of each signature; ``?``
    for one that cannot be read."""
    return [_issuer(s) or "?" for s in signatures]


def _armor_bytes(armored: str) -> bytes:
    body: list[str] = []
    started = False
    for line in armored.strip().splitlines():
        line = line.strip()
        if line.startswith("-----"):
            if started:
                break
            continue
        if not started:
            if not line:
                started = True
            elif ":" not in line:  # no headers: the body starts at once
                started = True
                body.append(line)
            continue
        if line.startswith("="):  # the CRC-24 line
            break
        body.append(line)
    return base64.b64decode("".join(body), validate=False)


def _issuer(armored: Any) -> str | None:
    if not isinstance(armored, str):
        return None
    try:
        data = _armor_bytes(armored)
        tag, body = _first_packet(data)
    except (binascii.Error, ValueError, IndexError):
        return None
    if tag != 2 or not body or body[0] != 4:  # a version 4 signature packet
        return None
    try:
        hashed_len = int.from_bytes(body[4:6], "big")
        hashed = body[6 : 6 + hashed_len]
        rest = body[6 + hashed_len :]
        unhashed = rest[2 : 2 + int.from_bytes(rest[0:2], "big")]
        found = _subpackets(hashed) | _subpackets(unhashed)
    except IndexError:
        return None
    if 33 in found and len(found[33]) > 1:
        return found[33][1:].hex().upper()[-16:]
    if 16 in found and len(found[16]) == 8:
        return found[16].hex().upper()
    return None


def _first_packet(data: bytes) -> tuple[int, bytes]:
    first = data[0]
    if not first & 0x80:
        raise ValueError("not an OpenPGP packet")
    if first & 0x40:  # new format
        tag = first & 0x3F
        o1 = data[1]
        if o1 < 192:
            return tag, data[2 : 2 + o1]
        if o1 < 224:
            length = ((o1 - 192) << 8) + data[2] + 192
            return tag, data[3 : 3 + length]
        if o1 == 255:
            return tag, data[6 : 6 + int.from_bytes(data[2:6], "big")]
        raise ValueError("partial body length")
    tag = (first >> 2) & 0x0F
    size = {0: 1, 1: 2, 2: 4}.get(first & 3)
    if size is None:
        return tag, data[1:]
    length = int.from_bytes(data[1 : 1 + size], "big")
    return tag, data[1 + size : 1 + size + length]


def _subpackets(data: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        o1 = data[i]
        if o1 < 192:
            length, i = o1, i + 1
        elif o1 < 255:
            length, i = ((o1 - 192) << 8) + data[i + 1] + 192, i + 2
        else:
            length, i = int.from_bytes(data[i + 1 : i + 5], "big"), i + 5
        if length == 0:
            break
        found.setdefault(data[i] & 0x7F, data[i + 1 : i + length])
        i += length
    return found


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
