"""``spyglass modules``: what this build's modules take and return, from their declarations."""

from __future__ import annotations

import argparse
import json
from typing import Any

from console.cli.common import command, command_group, json_flag
from modules.registry import all_modules, get_module
from protocol.errors import UsageError


def add_modules(commands: Any) -> None:
    modules_cmds = command_group(commands, "modules", "the investigation modules")
    mlist = command(modules_cmds, "list", cmd_modules_list, help="name and summary of each module")
    json_flag(mlist, "one JSON array of the modules' specs")
    mshow = command(
        modules_cmds, "show", cmd_modules_show, help="a module's parameters, columns and an example"
    )
    mshow.add_argument("name")
    json_flag(mshow)


def cmd_modules_list(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([module.spec() for module in all_modules()], indent=2))
        return 0
    for module in all_modules():
        print(f"{module.name:<10} {module.summary}")
    return 0


def cmd_modules_show(args: argparse.Namespace) -> int:
    module = get_module(args.name)
    if module is None:
        raise UsageError(f"unknown module {args.name!r}; see `spyglass modules list`")
    print(json.dumps(module.spec(), indent=2) if args.json else module.describe())
    return 0
