"""Private keys are created readable by their owner only, and refused or flagged when they are not
(issue 11, point 11): under umask 022, ``spyglass-agentd init`` and the lab used to write SSH
private keys 0644, which any local user (and spyglass's own ``sshkey`` module) could read.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from console.lab.local import Lab
from tests.support.agents import write_agent
from tests.support.cli import console_env, lab_inventory, save_inventory, spyglass
from tests.support.paths import short_tmp


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_creates_the_host_key_0600_under_umask_022() -> None:
    directory = short_tmp("ik") / "web-1"
    done = subprocess.run(
        [sys.executable, "-m", "agentd.cli", "init", "--dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.umask(0o022),
    )
    assert done.returncode == 0, done.stderr
    assert mode(directory / "ssh_host_ed25519_key") == 0o600


def test_the_lab_creates_its_private_keys_0600(lab: Lab) -> None:
    assert mode(lab.dir / "console_ed25519") == 0o600
    host_keys = sorted(lab.dir.glob("hosts/*/ssh_host_ed25519_key"))
    assert host_keys and all(mode(key) == 0o600 for key in host_keys)


def test_the_agent_refuses_a_host_key_others_can_read() -> None:
    directory = short_tmp("hk")
    write_agent(directory, investigators={}, acl={})
    (directory / "ssh_host_ed25519_key").chmod(0o640)
    done = subprocess.run(
        [sys.executable, "-m", "agentd.cli", "--config", str(directory / "agentd.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()  # one line, as sshd says it
    assert "ssh_host_ed25519_key: permissions 0640 are too open" in line


def test_the_console_warns_about_its_own_readable_key(lab: Lab, tmp_path: Path) -> None:
    inventory = lab_inventory(lab, tmp_path, (lab.dir / "known_hosts").read_text())
    key = tmp_path / "console_ed25519"
    shutil.copy(lab.dir / "console_ed25519", key)
    key.chmod(0o644)
    inventory["defaults"]["client_keys"] = [str(key)]
    env = console_env(lab, save_inventory(inventory, tmp_path), tmp_path / "results.db")
    done = spyglass(env, "run", "agent", "-t", "name=lab-001", "--json")
    assert done.returncode == 0, done.stderr  # a warning, not a refusal
    warnings = [line for line in done.stderr.splitlines() if "too open" in line]
    assert warnings == [
        f"spyglass: warning: client key {key}: permissions 0644 are too open: "
        "a private key must be readable by its owner only (chmod 600)"
    ]
