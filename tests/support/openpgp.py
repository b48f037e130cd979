"""ASCII armor for tests that take signatures apart and put them together again.

Written apart from ``protocol.ed25519_check`` on purpose: the two checksums check each other.
"""

from __future__ import annotations

import base64


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def dearmor(signature: str) -> bytes:
    lines = signature.strip().splitlines()
    body = lines[lines.index("") + 1 : -1]
    return base64.b64decode("".join(line for line in body if not line.startswith("=")))


def armor(packets: bytes) -> str:
    text = base64.b64encode(packets).decode()
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    crc = base64.b64encode(_crc24(packets).to_bytes(3, "big")).decode()
    body = "\n".join(lines)
    return f"-----BEGIN PGP SIGNATURE-----\n\n{body}\n={crc}\n-----END PGP SIGNATURE-----\n"
