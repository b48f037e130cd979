"""`spyglass-agentd init --dir` writes a complete, loadable agent folder that serves as written."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import asyncssh
import tomli_w

from protocol.agent_config import AgentSection, LimitsSection, load_config
from tests.support.agents import start_agent, stop_agent
from tests.support.paths import short_tmp


def init(directory: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentd.cli", "init", "--dir", directory, *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_writes_every_setting_and_the_agent_starts() -> None:
    directory = short_tmp("in") / "web-1"
    done = init(str(directory), "--listen", "127.0.0.1:0")
    assert done.returncode == 0, done.stderr
    for name in ("agentd.toml", "ssh_host_ed25519_key", "authorized_keys", "investigators"):
        assert (directory / name).exists(), name
    written = tomllib.loads((directory / "agentd.toml").read_text())
    assert set(written["agent"]) == set(AgentSection.__dataclass_fields__)
    assert set(written["limits"]) == set(LimitsSection.__dataclass_fields__)
    config = load_config(directory / "agentd.toml")
    assert config.agent.name == "web-1" and config.root.as_posix() == "/"
    # the folder is usable as it is: point the root at a test folder and serve
    written["agent"]["root"] = "root"
    (directory / "root").mkdir()
    (directory / "agentd.toml").write_bytes(tomli_w.dumps(written).encode())
    key = asyncssh.generate_private_key("ssh-ed25519")  # a console that may connect
    key.write_private_key(str(directory / "console_key"))
    (directory / "authorized_keys").write_text(key.export_public_key().decode())
    agent = start_agent(directory)
    try:
        assert agent.proc.poll() is None
    finally:
        stop_agent(agent)


def test_init_refuses_to_overwrite() -> None:
    directory = short_tmp("in")
    assert init(str(directory)).returncode == 0
    again = init(str(directory))
    assert again.returncode == 2 and "exists already" in again.stderr
    assert again.stderr.count("\n") == 1
