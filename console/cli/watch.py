"""``spyglass alerts`` and ``spyglass watchers``: read what the agents' watchers raised, list and
cancel the watchers. Each is a signed action of an ``fswatch_*`` module (``modules.fswatch``),
launched like ``spyglass run``: reading alerts is reading findings, and the console's SSH key
alone grants nothing (docs/security.md). Arming a watcher is ``spyglass run fswatch``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from console.actions.watchers import alerts_action, cancel_action, list_action
from console.cli.common import command, command_group, launch, launch_flags, signer
from protocol.envelope import Envelope

if TYPE_CHECKING:
    from protocol.action import Action


def add_alerts(commands: Any) -> None:
    alerts = command(
        commands,
        "alerts",
        cmd_alerts,
        help="the alerts the agents' watchers raised (a signed fswatch_alerts action)",
        description="Stored alerts above --since; with --follow, new ones as they are raised, "
        "until the action expires (--expire) or the agent's module_timeout.",
    )
    alerts.add_argument("--follow", action="store_true", help="keep printing new alerts")
    alerts.add_argument("--since", type=int, default=0, help="only alerts numbered above this")
    alerts.add_argument("--watcher", help="only this watcher's alerts (its action id)")
    _flags(alerts, "5m")


def add_watchers(commands: Any) -> None:
    sub = command_group(commands, "watchers", "list or cancel the agents' watchers")
    listing = command(sub, "list", cmd_list, help="the armed watchers and their counters")
    _flags(listing, "5m")
    cancel = command(
        sub, "cancel", cmd_cancel, help="stop a watcher before its expiry (a signed action)"
    )
    cancel.add_argument("id", help="the watcher's id: the id of the action that armed it")
    _flags(cancel, "5m")


def _flags(parser: argparse.ArgumentParser, expire: str) -> None:
    launch_flags(parser, target_required=False)
    parser.add_argument("--expire", default=expire, help=f"lifetime of the action ({expire})")


def _launch(args: argparse.Namespace, action: Action) -> int:
    return launch(args, signer(args).sign(Envelope(action)), action.target)


def cmd_alerts(args: argparse.Namespace) -> int:
    target = args.target or "all"
    action = alerts_action(
        target, args.expire, since=args.since, follow=args.follow, watcher=args.watcher
    )
    return _launch(args, action)


def cmd_list(args: argparse.Namespace) -> int:
    return _launch(args, list_action(args.target or "all", args.expire))


def cmd_cancel(args: argparse.Namespace) -> int:
    return _launch(args, cancel_action(args.id, args.target or "all", args.expire))
