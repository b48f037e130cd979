"""Test helpers: a dedicated agent process with a chosen ACL and limits, and a raw SSH client.

The pipeline tests need agents configured unlike the lab's (two approvers, one slot, a short
timeout), and a client that can send crafted envelopes and garbage frames.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import tomli_w

from console.lab.local import stop_process
from protocol.frames import encode_frame, read_frame
from protocol.keyfile import write_private
from protocol.signing import Signer

#: Params of a yara operation that spins on /srv/slow.txt (hosts without it answer at once) until
#: a limit of the agent stops it (a regex no longer can: RE2 matches in linear time).
SPIN_YARA = {
    "paths": ["/srv"],
    "name": ["^slow\\.txt$"],
    "rules": "rule spin { condition: for all i in (0..0x7fffffffffffffff) : (i >= 0) }",
    "timeout_per_target": 3600,
}


@dataclass
class AgentProc:
    dir: Path
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    host_key: asyncssh.SSHKey
    console_key: asyncssh.SSHKey

    @property
    def audit(self) -> list[dict[str, Any]]:
        path = self.dir / "audit.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def write_agent(
    directory: Path,
    *,
    investigators: dict[str, str],
    acl: dict[str, Any],
    limits: dict[str, Any] | None = None,
    root: Path | None = None,
    agent: dict[str, Any] | None = None,
) -> Path:
    """An agent folder: ``investigators`` maps a file name to an armored public key; ``agent``
    adds settings to its ``[agent]`` table."""
    (directory / "investigators").mkdir(parents=True, exist_ok=True)
    for name, armored in investigators.items():
        (directory / "investigators" / f"{name}.asc").write_text(armored)
    console = asyncssh.generate_private_key("ssh-ed25519")
    console.write_private_key(str(directory / "console_key"))
    (directory / "authorized_keys").write_text(console.export_public_key().decode())
    host_key = asyncssh.generate_private_key("ssh-ed25519").export_private_key()
    write_private(directory / "ssh_host_ed25519_key", host_key)
    config = {
        "agent": {
            "name": directory.name,
            "listen": ["127.0.0.1:0"],
            "root": str(root or directory / "root"),
            "idle_timeout": 5,
            **(agent or {}),
        },
        "limits": limits or {},
        "acl": acl,
    }
    (directory / "root").mkdir(exist_ok=True)
    path = directory / "agentd.toml"
    path.write_bytes(tomli_w.dumps(config).encode())
    return path


def write_trusting_agent(
    directory: Path, signer: Signer, name: str = "me", **settings: Any
) -> Path:
    """An agent folder (``write_agent``) trusting ``signer`` alone, whose one signature suffices
    for every module."""
    return write_agent(
        directory,
        investigators={name: signer.export_public()},
        acl={"default": {"minimum_weight": 1, "investigators": {signer.fingerprint: 1}}},
        **settings,
    )


def start_agent(
    directory: Path, *, prefix: tuple[str, ...] = (), startup_timeout: float = 30
) -> AgentProc:
    """Start the agent of ``directory`` (under ``prefix``, e.g. in a network namespace) and wait
    until it listens."""
    return start_agents([directory], prefix=prefix, startup_timeout=startup_timeout)[0]


def start_agents(
    directories: list[Path], *, prefix: tuple[str, ...] = (), startup_timeout: float = 30
) -> list[AgentProc]:
    """One process serving the agents of ``directories`` (their log is the first one's)."""
    log_path = directories[0] / "agentd.log"
    configs = [arg for d in directories for arg in ("--config", str(d / "agentd.toml"))]
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "agentd.cli", *configs],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + startup_timeout
    while True:
        text = log_path.read_text()
        if "ready" in text.split():
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"agent did not start: {text[-500:]}")
        time.sleep(0.05)
    lines = text.splitlines()
    addresses = dict(line.split()[1:3] for line in lines if line.startswith("listening"))
    started = []
    for directory in directories:
        name = tomllib.loads((directory / "agentd.toml").read_text())["agent"]["name"]
        host, _, port = addresses[name].rpartition(":")
        started.append(
            AgentProc(
                directory,
                proc,
                host,
                int(port),
                asyncssh.read_private_key(str(directory / "ssh_host_ed25519_key")),
                asyncssh.read_private_key(str(directory / "console_key")),
            )
        )
    return started


def stop_agent(agent: AgentProc) -> None:
    stop_process(agent.proc)


@contextmanager
def running_agent(directory: Path) -> Iterator[AgentProc]:
    agent = start_agent(directory)
    try:
        yield agent
    finally:
        stop_agent(agent)


async def connect(agent: AgentProc, key: asyncssh.SSHKey | None = None) -> Any:
    """An SSH connection to the agent (with the console's key unless ``key``), host key pinned."""
    return await asyncssh.connect(
        agent.host,
        agent.port,
        username="t",
        client_keys=[key or agent.console_key],
        known_hosts=([agent.host_key.convert_to_public()], [], []),
        config=None,
        agent_path=None,
    )


async def converse(agent: AgentProc, raw: bytes, *, timeout: float = 30) -> list[dict[str, Any]]:
    """Send raw bytes on a fresh channel; collect frames until the agent ends or closes."""
    async with await connect(agent) as conn:
        process = await conn.create_process(subsystem="spyglass", encoding=None)
        process.stdin.write(raw)
        frames = []
        try:
            async with asyncio.timeout(timeout):
                while (frame := await read_frame(process.stdout)) is not None:
                    frames.append(frame)
                    if frame["type"] in ("finished", "rejected", "error"):
                        break
        finally:
            process.close()
        return frames


def run_frames(envelope: dict[str, Any]) -> bytes:
    return encode_frame({"type": "run", "envelope": envelope})
