"""``spyglass-agentd init``: a fresh agent folder with every setting written out."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import tomli_w

from protocol.agent_config import AgentSection, LimitsSection, render_config
from protocol.errors import SpyglassError
from protocol.keyfile import write_private


def init_agent_dir(directory: Path, name: str | None = None, listen: str = "0.0.0.0:4022") -> Path:
    """Write a host key, empty investigators folder, authorized_keys and a complete agentd.toml."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "agentd.toml"
    if config_path.exists():
        raise SpyglassError(f"{config_path} exists already; not overwriting it")
    agent = AgentSection(name=name or directory.resolve().name, listen=[listen])
    key = asyncssh.generate_private_key("ssh-ed25519")
    write_private(directory / agent.host_key, key.export_private_key())
    key.write_public_key(str(directory / f"{agent.host_key}.pub"))
    (directory / agent.investigators).mkdir(exist_ok=True)
    (directory / agent.authorized_keys).touch()
    (directory / agent.state_dir).mkdir(exist_ok=True, mode=0o700)
    acl = {"default": {"minimum_weight": 1, "investigators": {}}}
    config_path.write_bytes(tomli_w.dumps(render_config(agent, LimitsSection(), acl)).encode())
    return config_path
