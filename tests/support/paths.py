"""Short temporary folders, and stopping the gpg-agent a temporary GNUPGHOME started.

Paths are short (``/tmp/sgXXXX``) because gpg-agent's socket path is length-limited.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def short_tmp(prefix: str = "sg") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def kill_gpg_agent(home: Path) -> None:
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, check=False
    )
