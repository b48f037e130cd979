"""``spyglass-agentd``: serve one or more agents, or write a fresh agent folder with ``init``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agentd import lean
from protocol.errors import SpyglassError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["init"]:
            parser = argparse.ArgumentParser(prog="spyglass-agentd init")
            parser.add_argument("--dir", required=True, type=Path, help="folder to create")
            parser.add_argument("--name", help="agent name (default: the folder's name)")
            parser.add_argument("--listen", default="0.0.0.0:4022", help="HOST:PORT to listen on")
            ns = parser.parse_args(args[1:])
            from agentd.initdir import init_agent_dir

            path = init_agent_dir(ns.dir, ns.name, ns.listen)
            print(f"wrote {path}; add investigator keys (*.asc) and their fingerprints to [acl]")
            return 0
        parser = argparse.ArgumentParser(
            prog="spyglass-agentd",
            description="Serve the spyglass subsystem over SSH.",
            epilog="spyglass-agentd init --dir DIR [--name NAME] [--listen HOST:PORT] writes a "
            "complete agent folder (agentd.toml, host key, authorized_keys, investigators/).",
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
            lean.leave_out(lean.ASYNCSSH_EXTRAS)
            _install_uvloop()
        else:
            lean.leave_out(lean.ASYNCSSH_EXTRAS + lean.SYSTEM_OPENSSL)
        # Imported only now, after lean.leave_out (asyncio would load ssl, the server asyncssh).
        import asyncio

        from agentd.server import serve_forever

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
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


if __name__ == "__main__":
    sys.exit(main())
