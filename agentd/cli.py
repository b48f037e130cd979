"""``spyglass-agentd``: serve one or more agents, or write a fresh agent folder with ``init``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from agentd.lean import skip_unused_asyncssh_parts

skip_unused_asyncssh_parts()  # before the first import of asyncssh, just below

import asyncssh  # noqa: E402
import tomli_w  # noqa: E402

from agentd.server import serve_forever  # noqa: E402
from protocol.agent_config import AgentSection, LimitsSection, render_config  # noqa: E402
from protocol.errors import SpyglassError  # noqa: E402


def init_agent_dir(directory: Path, name: str | None = None, listen: str = "0.0.0.0:4022") -> Path:
    """Write a host key, empty investigators folder, authorized_keys and a complete agentd.toml."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "agentd.toml"
    if config_path.exists():
        raise SpyglassError(f"{config_path} exists already; not overwriting it")
    agent = AgentSection(name=name or directory.resolve().name, listen=[listen])
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(directory / agent.host_key))
    key.write_public_key(str(directory / f"{agent.host_key}.pub"))
    (directory / agent.investigators).mkdir(exist_ok=True)
    (directory / agent.authorized_keys).touch()
    (directory / agent.state_dir).mkdir(exist_ok=True, mode=0o700)
    acl = {"default": {"minimum_weight": 1, "investigators": {}}}
    config_path.write_bytes(tomli_w.dumps(render_config(agent, LimitsSection(), acl)).encode())
    return config_path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["init"]:
            parser = argparse.ArgumentParser(prog="spyglass-agentd init")
            parser.add_argument("--dir", required=True, type=Path, help="folder to create")
            parser.add_argument("--name", help="agent name (default: the folder's name)")
            parser.add_argument("--listen", default="0.0.0.0:4022", help="HOST:PORT to listen on")
            ns = parser.parse_args(args[1:])
            path = init_agent_dir(ns.dir, ns.name, ns.listen)
            print(f"wrote {path}; add investigator keys (*.asc) and their fingerprints to [acl]")
            return 0
        parser = argparse.ArgumentParser(
            prog="spyglass-agentd", description="Serve the spyglass subsystem over SSH."
        )
        parser.add_argument(
            "--config",
            action="append",
            required=True,
            type=Path,
            help="agentd.toml; repeat to run several agents in one process",
        )
        ns = parser.parse_args(args)
        if len(ns.config) > 1:
            _install_uvloop()
        asyncio.run(serve_forever(ns.config))
        return 0
    except SpyglassError as err:
        print(f"spyglass-agentd: {err}", file=sys.stderr)
        return 2


def _install_uvloop() -> None:
    """uvloop makes a process that multiplexes many agents (the lab: 250 each) cheaper per
    channel; a one-agent endpoint spends its life idle, where uvloop's libuv thread pool and code
    would only add 2.4 MiB of resident memory on every host of the fleet."""
    try:
        import uvloop  # optional speed-up
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    sys.exit(main())
