"""What both ends of the SSH transport agree on, as plain names (no asyncssh here): the
subsystem, and the key exchanges and ciphers in order of preference, cheapest strong ones first
(handshakes are the CPU-heavy part of a fan-out, on both ends)."""

from __future__ import annotations

import sys

#: The SSH subsystem that speaks the frame protocol; the agent serves nothing else.
SUBSYSTEM = "spyglass"
#: What the console offers.
KEX = ("curve25519-sha256", "curve25519-sha256@libssh.org", "mlkem768x25519-sha256")
CIPHERS = ("aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com")
#: What the agent accepts: the console's choices first, then one widely supported fallback each
#: for other SSH clients.
AGENT_KEX = (*KEX, "ecdh-sha2-nistp256")
AGENT_CIPHERS = (*CIPHERS, "aes128-ctr")


class _NoLiboqsProbe:
    """An import hook, spent on first use: when asyncssh's post-quantum shim is imported,
    ``ctypes.util.find_library`` answers "not found" for liboqs."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name != "asyncssh.crypto.pq":
            return
        sys.meta_path.remove(self)
        import ctypes.util

        find = ctypes.util.find_library

        def find_library(name: str) -> str | None:
            return None if name in ("oqs", "liboqs") else find(name)

        ctypes.util.find_library = find_library


def skip_liboqs_probe() -> None:
    """asyncssh looks for liboqs at import, for sntrup761, which neither end offers (KEX above;
    ML-KEM comes from cryptography). The search runs ldconfig, then gcc and ld: 20 to 40 ms of
    every process that connects or serves. Call before anything imports asyncssh."""
    if "asyncssh.crypto.pq" not in sys.modules:
        sys.meta_path.insert(0, _NoLiboqsProbe())
