"""Real gpg homes and keys for the protocol tests (no mocks).

Homes live in short ``/tmp/gXXXX`` folders: gpg-agent's socket path is length-limited and pytest's
``tmp_path`` can exceed it (STACK-NOTES §2). Every home that may have started an agent has it killed
when the test session releases it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from protocol.signing import Signer, generate_key


def short_home(prefix: str = "g") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def kill_agent(home: Path) -> None:
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
        capture_output=True,
        check=False,
    )


@dataclass
class Investigator:
    """A person with a secret key in their own GNUPGHOME."""

    name: str
    home: Path
    fingerprint: str
    signer: Signer
    public: str


@dataclass
class KeyFactory:
    """Creates investigators and keyring homes, and removes them (agents first) at the end."""

    homes: list[Path] = field(default_factory=list)

    def investigator(self, name: str) -> Investigator:
        home = short_home()
        self.homes.append(home)
        fingerprint = generate_key(home, name=name, email=f"{name.lower()}@spyglass.invalid")
        signer = Signer(home)
        return Investigator(name, home, fingerprint, signer, signer.export_public())

    def home(self) -> Path:
        home = short_home()
        self.homes.append(home)
        return home

    def close(self) -> None:
        for home in self.homes:
            kill_agent(home)
            shutil.rmtree(home, ignore_errors=True)
