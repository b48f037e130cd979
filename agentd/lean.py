"""Modules an agent process never uses, kept out of its memory on every host of the fleet.

Marking a module absent in ``sys.modules`` before its first import makes that import raise
ImportError, which each of these importers handles:

- asyncssh's X.509 certificate support (``cryptography.x509``) and UMAC MACs (libnettle through
  ctypes) are optional to it; an agent authenticates plain keys, and its ciphers are AEAD (their
  own MAC) or fall back to HMAC. 1.4 MiB.
- ``ssl`` and ``_hashlib`` load the system's libssl and libcrypto: asyncio works without TLS,
  hashlib falls back to Python's built-in SHA-2/SHA-3/BLAKE2 (the agent hashes only small
  envelopes; file hashing runs in the zygote, which keeps OpenSSL), and asyncssh's cryptography
  carries its own OpenSSL. 4.8 MiB. uvloop needs ``ssl``, so a process that serves many agents on
  uvloop keeps both.

Nor does an agent search for liboqs (``protocol.transport.skip_liboqs_probe``): 20 to 40 ms of
its start. Measured by ``bench/fanout.py`` (idle single-agent process).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from protocol.transport import skip_liboqs_probe

ASYNCSSH_EXTRAS = ("asyncssh.crypto.x509", "asyncssh.crypto.umac")
SYSTEM_OPENSSL = ("ssl", "_hashlib")


def leave_out(names: Iterable[str]) -> None:
    """Call before anything imports asyncssh or hashlib; a module some import already loaded
    stays (a test process that uses asyncssh keeps all of it)."""
    if "asyncssh" in sys.modules:
        return
    skip_liboqs_probe()
    for name in names:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]  # importing it raises ImportError
