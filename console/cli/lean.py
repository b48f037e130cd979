"""What the console's SSH client never uses, kept out of its start-up.

asyncssh's X.509 certificate support (``asyncssh.crypto.x509``, which loads cryptography's X.509
modules) and its UMAC MACs (libnettle through ctypes) are optional to it: marked absent in
``sys.modules`` before asyncssh is first imported, their imports raise ImportError, which
asyncssh handles. The console authenticates with plain keys, pins plain host keys in
known_hosts, and its ciphers are AEAD (``protocol.transport``); agentd/lean.py does the same for
agents. About 25 ms of CPU off every command that connects; and no search for liboqs
(``protocol.transport.skip_liboqs_probe``), 20 to 40 ms more.
"""

from __future__ import annotations

import sys

from protocol.transport import skip_liboqs_probe

UNUSED = ("asyncssh.crypto.x509", "asyncssh.crypto.umac")


def leave_out_unused() -> None:
    """Call before anything imports asyncssh; once it is loaded (a test process), nothing
    changes."""
    if "asyncssh" in sys.modules:
        return
    skip_liboqs_probe()
    for name in UNUSED:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # importing it raises
