"""In-process verification of the one signature shape investigators' keys make, gpg for the rest.

Spawning gpg costs an agent 4-6 ms of CPU per verification, a fifth of a cold action on a server
with one agent. Every investigator key spyglass makes (``generate_key``) is an Ed25519 primary key
that signs itself, and gpg signs with it one v4 binary-document signature packet. That shape is
checked here, with the Ed25519 maths done by ``cryptography``; whatever strays from it in any
field, and every signature that does not verify, goes to gpg, which then has the last word. So
this path can only say "valid" where gpg says "valid" too: the facts it cannot see in the packet
(which keys are revoked, when each expires, whether a key may sign) are gpg's own listing of the
keyring, and expiry is checked at each call as gpg does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.envelope import ARMOR_HEADER

ARMOR_END = ARMOR_HEADER.replace("BEGIN", "END")
ED25519_OID = bytes.fromhex("2b06010401da470f01")  # 1.3.6.1.4.1.11591.15.1 (RFC 4880bis)
EDDSA = 22  # the public-key algorithm of gpg's ed25519 keys (RFC 4880bis "EdDSA legacy")
HASHES = {8: "sha256", 9: "sha384", 10: "sha512"}
SIGNATURE, PUBLIC_KEY = 2, 6  # packet tags
CREATED, ISSUER, ISSUER_FINGERPRINT = 2, 16, 33  # the only subpackets accepted
#: An armored v4 Ed25519 signature is about 230 characters; longer input is not that shape.
MAX_ARMORED = 1024
#: gpg's key validity letters under which it still verifies: unknown, undefined, never,
#: marginal, full, ultimate (r revoked, e expired, i invalid, d disabled go to gpg).
USABLE_VALIDITY = frozenset("-oqnmfu")


class Unusual(Exception):
    """The input leaves the accepted shape: gpg decides."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 primary key gpg lists as able to sign, not revoked."""

    fingerprint: str
    public: Ed25519PublicKey
    created: int
    expires: int | None


def signing_keys(exported: bytes, listing: Iterable[Mapping[str, object]]) -> dict[str, SigningKey]:
    """The keys of a keyring this path may use, by fingerprint: its public-key packets (gpg's
    binary export) that gpg's listing names as primary keys which may sign and are not revoked."""
    listed = {str(k["fingerprint"]).upper(): k for k in listing}
    try:
        packets = list(_packets(exported))
    except Unusual:  # not what gpg exports: no key for this path, gpg checks everything
        return {}
    keys = {}
    for tag, body in packets:
        if tag != PUBLIC_KEY:
            continue
        fingerprint = hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest()
        entry, public = listed.get(fingerprint.upper()), _ed25519_public(body)
        if entry is None or public is None:
            continue
        capabilities = str(entry.get("cap", ""))
        if "s" not in capabilities or "D" in capabilities:  # D: disabled
            continue
        if str(entry.get("trust")) not in USABLE_VALIDITY:
            continue
        expires = str(entry.get("expires") or "")
        keys[fingerprint.upper()] = SigningKey(
            fingerprint.upper(),
            public,
            int.from_bytes(body[1:5], "big"),
            int(expires) if expires.isdigit() else None,
        )
    return keys


def check(
    keys: Mapping[str, SigningKey], data: bytes, armored: str, now: int | None = None
) -> str | None:
    """The signer's fingerprint when ``armored`` is one valid signature over ``data`` in the
    accepted shape by one of ``keys`` at ``now`` (default: the clock's); None sends it to gpg."""
    try:
        return _check(keys, data, armored, int(time.time()) if now is None else now)
    except (Unusual, InvalidSignature):
        return None


def _check(keys: Mapping[str, SigningKey], data: bytes, armored: str, now: int) -> str:
    packets = list(_packets(_dearmor(armored)))
    if len(packets) != 1 or packets[0][0] != SIGNATURE:
        raise Unusual("not exactly one signature packet")
    body = packets[0][1]
    if len(body) < 6:
        raise Unusual("truncated signature packet")
    version, kind, algorithm, hash_id = body[:4]
    if (version, kind, algorithm) != (4, 0x00, EDDSA) or hash_id not in HASHES:
        raise Unusual("not a v4 EdDSA signature of a binary document with SHA-2")
    hashed_end = 6 + int.from_bytes(body[4:6], "big")
    hashed = _subpackets(body[6:hashed_end])
    unhashed_end = hashed_end + 2 + int.from_bytes(body[hashed_end : hashed_end + 2], "big")
    if unhashed_end + 2 > len(body):
        raise Unusual("subpacket areas overrun the packet")
    unhashed = _subpackets(body[hashed_end + 2 : unhashed_end])
    if set(hashed) != {CREATED, ISSUER_FINGERPRINT} or not set(unhashed) <= {ISSUER}:
        raise Unusual("subpackets other than creation time and issuer")
    issuer, created = hashed[ISSUER_FINGERPRINT], hashed[CREATED]
    if len(issuer) != 21 or issuer[0] != 4 or len(created) != 4:
        raise Unusual("issuer fingerprint or creation time of an unexpected size")
    key = keys.get(issuer[1:].hex().upper())
    if key is None or unhashed.get(ISSUER, issuer[-8:]) != issuer[-8:]:
        raise Unusual("a key this path does not hold")
    signed_at = int.from_bytes(created, "big")
    if not key.created <= min(signed_at, now) or signed_at > now + 86400:
        raise Unusual("times gpg judges: a key newer than the signature or than now")
    if key.expires is not None and now >= key.expires:
        raise Unusual("an expired key: gpg names it")
    digest = hashlib.new(HASHES[hash_id], data)
    digest.update(body[:hashed_end])
    digest.update(b"\x04\xff" + hashed_end.to_bytes(4, "big"))
    value = digest.digest()
    rest = body[unhashed_end:]
    if rest[:2] != value[:2]:
        raise Unusual("the quick check of the digest fails")
    r, rest = _mpi(rest[2:])
    s, rest = _mpi(rest)
    if rest or len(r) > 32 or len(s) > 32:
        raise Unusual("trailing bytes or oversized signature values")
    key.public.verify(r.rjust(32, b"\0") + s.rjust(32, b"\0"), value)
    return key.fingerprint


def _dearmor(armored: str) -> bytes:
    """The packets of a strictly ASCII-armored block: no armor headers, a CRC-24 that holds."""
    if len(armored) > MAX_ARMORED:
        raise Unusual("longer than one signature packet")
    lines = armored.strip().split("\n")
    if len(lines) < 5 or lines[0] != ARMOR_HEADER or lines[1] != "" or lines[-1] != ARMOR_END:
        raise Unusual("not a plain armored signature")
    if not lines[-2].startswith("="):
        raise Unusual("no CRC-24")
    try:
        packets = base64.b64decode("".join(lines[2:-2]), validate=True)
        crc = base64.b64decode(lines[-2][1:], validate=True)
    except (binascii.Error, ValueError):
        raise Unusual("not base64") from None
    if crc != _crc24(packets).to_bytes(3, "big"):
        raise Unusual("CRC-24 mismatch")
    return packets


def _crc24_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 16
        for _ in range(8):
            crc = (crc << 1) ^ (0x1864CFB if crc & 0x800000 else 0)
        table.append(crc & 0xFFFFFF)
    return tuple(table)


_CRC24 = _crc24_table()


def _crc24(data: bytes) -> int:
    """The armor checksum (RFC 4880 §6.1), a byte at a time."""
    crc = 0xB704CE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ _CRC24[(crc >> 16) ^ byte]
    return crc


def _packets(data: bytes) -> Iterable[tuple[int, bytes]]:
    """(tag, body) of each packet; partial lengths and indeterminate lengths are unusual."""
    at = 0
    while at < len(data):
        head = data[at]
        if not head & 0x80:
            raise Unusual("not a packet header")
        if head & 0x40:  # new format
            tag, size, at = head & 0x3F, *_new_length(data, at + 1)
        else:  # old format: the length's size is in the header
            tag, width = (head >> 2) & 0x0F, (1, 2, 4, 0)[head & 0x03]
            if not width or at + 1 + width > len(data):
                raise Unusual("indeterminate or truncated length")
            size, at = int.from_bytes(data[at + 1 : at + 1 + width], "big"), at + 1 + width
        if at + size > len(data):
            raise Unusual("truncated packet")
        yield tag, data[at : at + size]
        at += size


def _new_length(data: bytes, at: int) -> tuple[int, int]:
    """A new-format length at ``at``: (length, where the body starts)."""
    if at >= len(data):
        raise Unusual("truncated length")
    first = data[at]
    if first < 192:
        return first, at + 1
    if first < 224 and at + 1 < len(data):
        return ((first - 192) << 8) + data[at + 1] + 192, at + 2
    if first == 255 and at + 5 <= len(data):
        return int.from_bytes(data[at + 1 : at + 5], "big"), at + 5
    raise Unusual("partial or truncated length")


def _subpackets(area: bytes) -> dict[int, bytes]:
    """Subpackets by type; a repeated type or a truncated one is unusual."""
    found: dict[int, bytes] = {}
    at = 0
    while at < len(area):
        size, at = _new_length(area, at)
        if size < 1 or at + size > len(area):
            raise Unusual("truncated subpacket")
        kind = area[at] & 0x7F  # the critical bit does not matter: only known types pass
        if kind in found:
            raise Unusual("repeated subpacket")
        found[kind] = area[at + 1 : at + size]
        at += size
    return found


def _mpi(data: bytes) -> tuple[bytes, bytes]:
    """One multiprecision integer: (its bytes, what follows)."""
    if len(data) < 2:
        raise Unusual("truncated MPI")
    size = (int.from_bytes(data[:2], "big") + 7) // 8
    if len(data) < 2 + size:
        raise Unusual("truncated MPI")
    return data[2 : 2 + size], data[2 + size :]


def _ed25519_public(body: bytes) -> Ed25519PublicKey | None:
    """The key of a v4 EdDSA Ed25519 public-key packet body, else None."""
    oid_end = 7 + (body[6] if len(body) > 6 else 0)
    if len(body) < 7 or body[0] != 4 or body[5] != EDDSA or body[7:oid_end] != ED25519_OID:
        return None
    point, rest = body[oid_end + 2 : oid_end + 35], body[oid_end + 35 :]
    if body[oid_end : oid_end + 2] != (263).to_bytes(2, "big") or len(point) != 33 or rest:
        return None
    if point[0] != 0x40:  # the prefix of a native point encoding
        return None
    return Ed25519PublicKey.from_public_bytes(point[1:])
