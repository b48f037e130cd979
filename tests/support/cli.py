"""Test helpers for the `spyglass` command: running it, its environment and inventories made from
the lab's, and the JSON lines it prints."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import asyncssh
import tomli_w

from console.lab.local import Lab

#: The command line that starts the console (what the `spyglass` script runs).
SPYGLASS = (sys.executable, "-m", "spyglass_cli")


def spyglass(
    env: dict[str, str], *args: str, timeout: float = 120, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run `spyglass ARGS` to the end (``prefix`` runs it under another command, e.g. in a
    network namespace); stdin is closed, so nothing can wait for a person."""
    return subprocess.run(
        [*prefix, *SPYGLASS, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def events(stdout: str) -> list[dict[str, Any]]:
    """The JSON lines of `run --json` or `results show --json`."""
    return [json.loads(line) for line in stdout.splitlines()]


def console_env(lab: Lab, inventory: Path, store: Path) -> dict[str, str]:
    """Environment for the console: the lab's investigator key, ``inventory`` and ``store``."""
    return {
        **os.environ,
        "GNUPGHOME": str(lab.gnupghome),
        "SPYGLASS_INVENTORY": str(inventory),
        "SPYGLASS_STORE": str(store),
    }


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def gone_host() -> dict[str, Any]:
    """An inventory host (role web) that never answers."""
    return {"name": "gone", "address": "127.0.0.1", "port": closed_port(), "tags": {"role": "web"}}


def lab_inventory(lab: Lab, where: Path, known_hosts: str) -> dict[str, Any]:
    """The lab's inventory with its own known_hosts file (holding ``known_hosts``) in ``where``,
    and a 2 s connect timeout."""
    inventory = tomllib.loads(lab.inventory.read_text())
    inventory["defaults"]["known_hosts"] = str(where / "known_hosts")
    inventory["defaults"]["client_keys"] = [str(lab.dir / "console_ed25519")]
    inventory["defaults"]["connect_timeout"] = 2
    (where / "known_hosts").write_text(known_hosts)
    return inventory


def save_inventory(inventory: dict[str, Any], where: Path) -> Path:
    path = where / "inv.toml"
    path.write_bytes(tomli_w.dumps(inventory).encode())
    return path


def known_hosts_with_wrong_key(lab: Lab, index: int) -> tuple[str, str]:
    """The lab's known_hosts with line ``index`` pinning a key its host does not hold: the file's
    text and that line."""
    known = (lab.dir / "known_hosts").read_text().splitlines()
    wrong = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known[index] = f"{known[index].split()[0]} {wrong}"
    return "\n".join(known) + "\n", known[index]
