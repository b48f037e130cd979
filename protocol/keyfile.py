"""Private key files (SSH host and client keys): created readable by their owner only, and
checked before use, as sshd does.

The mode is given at open, so the key is never readable by others, not even between a write and a
``chmod``; an existing file is never reused (its mode would be kept).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: str | Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; FileExistsError if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def too_open(path: str | Path) -> str | None:
    """Why a private key file is unsafe to use (group or others may read it), or None."""
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        return (
            f"{path}: permissions {mode:04o} are too open: "
            "a private key must be readable by its owner only (chmod 600)"
        )
    return None
