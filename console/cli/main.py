"""``spyglass``: the investigator's command line (DESIGN §5).

Parsed and dispatched here; the interactive front end is passed in by the entry point
(``spyglass_cli``), so nothing here imports the TUI.

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

from console.cli import fleet, results, run, runbook, watch
from protocol.errors import SpyglassError

#: The commands after ``tui``, in the order ``spyglass --help`` lists them; each adds its parser
#: (and its subcommands' handlers) from the module of its group.
COMMANDS: tuple[Callable[[Any], None], ...] = (
    run.add_run,
    run.add_action,
    runbook.add_runbook,
    run.add_modules,
    fleet.add_keys,
    fleet.add_inventory,
    results.add_results,
    watch.add_alerts,
    watch.add_watchers,
    fleet.add_lab,
    fleet.add_demo,
)
#: An interactive front end: takes the parsed arguments, returns the exit status.
FrontEnd = Callable[[argparse.Namespace], int]


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


def run_command(argv: list[str] | None = None, *, front_end: FrontEnd | None = None) -> int:
    """Parse ``argv`` and run its command; ``front_end`` serves ``tui`` (the default command) and
    ``demo`` without ``--headless``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.front_end = front_end
    if args.command in (None, "tui"):
        if front_end is None:
            print("spyglass: no interactive front end in this build", file=sys.stderr)
            return 2
        return front_end(args)
    try:
        return int(args.handler(args))
    except SpyglassError as err:
        print(f"spyglass: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
