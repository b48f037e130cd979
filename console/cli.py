"""``spyglass``: the investigator's command line (DESIGN §5).

Exit statuses of ``run`` and ``action launch``: 0 every host answered and something matched;
1 every host answered and nothing matched; 3 some hosts failed (results still printed);
2 nothing was launched, with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from console import cli_fleet, cli_results, cli_run, cli_runbook
from protocol.errors import SpyglassError

#: The commands after ``tui``, in the order ``spyglass --help`` lists them; each adds its parser
#: (and its subcommands' handlers) from the module of its group.
COMMANDS: tuple[Callable[[Any], None], ...] = (
    cli_run.add_run,
    cli_run.add_action,
    cli_runbook.add_runbook,
    cli_run.add_modules,
    cli_fleet.add_keys,
    cli_fleet.add_inventory,
    cli_results.add_results,
    cli_fleet.add_lab,
    cli_fleet.add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spyglass", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-i",
        "--inventory",
        default=os.environ.get("SPYGLASS_INVENTORY"),
        help="inventory TOML (env SPYGLASS_INVENTORY)",
    )
    parser.add_argument(
        "--key",
        default=os.environ.get("SPYGLASS_KEY"),
        help="investigator key id or fingerprint (env SPYGLASS_KEY)",
    )
    parser.add_argument(
        "--store",
        default=os.environ.get("SPYGLASS_STORE"),
        help="results database (env SPYGLASS_STORE)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("tui", help="the interactive console (the default)")
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "tui"):
        return _tui(args)
    try:
        return int(args.handler(args))
    except SpyglassError as err:
        print(f"spyglass: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _tui(args: argparse.Namespace) -> int:
    # The front end is chosen here, at the very top; importing it lazily keeps textual out of
    # every headless command.
    from importlib import import_module

    try:
        app_module = import_module("tui.app")
    except ModuleNotFoundError:
        print("spyglass: the TUI is not installed in this build", file=sys.stderr)
        return 2
    return int(app_module.run_app(args))


if __name__ == "__main__":
    sys.exit(main())
