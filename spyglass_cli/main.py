"""``spyglass``'s entry point: the console's command line, with the TUI as its front end."""

from __future__ import annotations

import argparse
import sys

from console.cli.main import run_command


def main(argv: list[str] | None = None) -> int:
    return run_command(argv, front_end=_tui)


def _tui(args: argparse.Namespace) -> int:
    # Imported here, when the TUI is asked for: every headless command stays free of textual.
    try:
        from tui.app import run_app
    except ModuleNotFoundError:
        print("spyglass: the TUI is not installed in this build", file=sys.stderr)
        return 2
    return int(run_app(args))


if __name__ == "__main__":
    sys.exit(main())
