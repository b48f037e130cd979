"""What both ends of the SSH transport agree on, as plain names (no asyncssh here): the
subsystem, and the key exchanges and ciphers in order of preference, cheapest strong ones first
(handshakes are the CPU-heavy part of a fan-out, on both ends)."""

from __future__ import annotations

#: The SSH subsystem that speaks the frame protocol; the agent serves nothing else.
SUBSYSTEM = "spyglass"
#: What the console offers.
KEX = ("curve25519-sha256", "curve25519-sha256@libssh.org", "mlkem768x25519-sha256")
CIPHERS = ("aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com")
#: What the agent accepts: the console's choices first, then one widely supported fallback each
#: for other SSH clients.
AGENT_KEX = (*KEX, "ecdh-sha2-nistp256")
AGENT_CIPHERS = (*CIPHERS, "aes128-ctr")
