"""Parts of asyncssh an agent never uses, kept out of every agent's memory.

asyncssh loads X.509 certificate support (``cryptography.x509``) and the UMAC MACs (libnettle,
through ctypes) whenever they are installed; both are optional to it, and an agent needs neither:
it authenticates plain keys, and its ciphers are AEAD (their own MAC) or fall back to HMAC.
Marking the two as absent before asyncssh's first import saves 1.4 MiB of resident memory in each
agent process (``bench/fanout.py``, idle single-agent process).
"""

from __future__ import annotations

import sys

UNUSED_ASYNCSSH_PARTS = ("asyncssh.crypto.x509", "asyncssh.crypto.umac")


def skip_unused_asyncssh_parts() -> None:
    """Call before anything imports asyncssh; later, it would change nothing, so it does nothing
    (a test process that already uses asyncssh keeps all of it)."""
    if "asyncssh" in sys.modules:
        return
    for name in UNUSED_ASYNCSSH_PARTS:
        sys.modules[name] = None  # type: ignore[assignment]  # importing it raises ImportError
