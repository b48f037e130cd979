"""``spyglass``: the investigator's command line.

Parsed and dispatched here; the interactive front end is passed in by the entry point
(``spyglass_cli``), so nothing here imports the TUI.

Exit statuses: ``EXIT_STATUSES`` (the epilog of ``spyglass --help``).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable
from typing import Any

from console.cli import fleet, modules, results, run, runbook, watch
from console.cli.argv import give_back, take_repeated
from console.cli.lean import leave_out_unused
from protocol.errors import SpyglassError

#: The commands after ``tui``, in the order ``spyglass --help`` lists them; each adds its parser
#: (and its subcommands' handlers) from the module of its group.
COMMANDS: tuple[Callable[[Any], None], ...] = (
    run.add_run,
    run.add_action,
    runbook.add_runbook,
    modules.add_modules,
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
EXIT_STATUSES = (
    "Exit status of run and action launch: 0 every host answered and something matched, 1 every "
    "host answered and nothing matched, 3 some hosts failed (results still printed and stored), "
    "2 nothing was launched (one line on stderr says why), 130 interrupted (the hosts in flight "
    "are cancelled, the run is stored with its summary), 141 stdout was closed (| head)."
)
#: The shell's status for a process whose output pipe closed (128 + SIGPIPE).
EXIT_PIPE = 141


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spyglass",
        description="The investigator's console: sign actions, launch them on the fleet's "
        "agents, keep and compare the results. With no command, the interactive console.",
        epilog=EXIT_STATUSES,
    )
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


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parse_args``, but an unknown flag is answered with the closest one the command has
    (``--nmae`` -> ``--name``); repeatable flags are taken in one pass (console/cli/argv.py)."""
    rest, taken = take_repeated(parser, sys.argv[1:] if argv is None else argv)
    args, extras = parser.parse_known_args(rest)
    if extras:
        options = _options_of(parser, args)
        flags = [word.partition("=")[0] for word in extras if word.startswith("-")]
        for flag in flags:
            close = difflib.get_close_matches(flag, options, n=1, cutoff=0.6)
            if close:
                parser.error(f"unrecognized argument {flag}: did you mean {close[0]}?")
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    give_back(args, taken)
    return args


def _options_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The option strings of ``parser`` and of each subcommand the parsed ``args`` chose."""
    options: list[str] = []
    current: argparse.ArgumentParser | None = parser
    while current is not None:
        chosen = None
        for action in current._actions:
            options += [o for o in action.option_strings if o.startswith("--")]
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(args, action.dest or "", None) or "")
        current = chosen
    return options


def run_command(argv: list[str] | None = None, *, front_end: FrontEnd | None = None) -> int:
    """Parse ``argv`` and run its command; ``front_end`` serves ``tui`` (the default command) and
    ``demo`` without ``--headless``. A closed stdout ends quietly with status 141."""
    try:
        status = _dispatch(parse(build_parser(), argv), front_end)
        sys.stdout.flush()
    except BrokenPipeError:
        # Whatever is still buffered can never be written: point stdout at /dev/null so that
        # Python's own flush at exit does not print a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    return status


def _dispatch(args: argparse.Namespace, front_end: FrontEnd | None) -> int:
    args.front_end = front_end
    leave_out_unused()
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
