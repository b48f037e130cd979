"""The actions that read and manage the agents' watchers (``modules.fswatch``), shared by
``spyglass alerts`` / ``spyglass watchers`` and the TUI's alerts screen."""

from __future__ import annotations

from typing import Any

from console.actions.compose import compose, parse_duration, validated_operation
from protocol.action import Action, make_action


def alerts_params(
    since: int = 0, follow: bool = False, watcher: str | None = None
) -> dict[str, Any]:
    """``fswatch_alerts``'s params: stored alerts numbered above ``since`` (with ``follow``,
    then new ones until the action expires), of one ``watcher`` or all."""
    params: dict[str, Any] = {"since": since, "follow": follow}
    if watcher:
        params["watcher"] = watcher
    return params


def alerts_action(target: str, expire: str, **params: Any) -> Action:
    return compose("fswatch_alerts", alerts_params(**params), target, expire)


def list_action(target: str, expire: str) -> Action:
    return compose("fswatch_list", {}, target, expire)


def cancel_action(watcher: str, target: str, expire: str) -> Action:
    return compose("fswatch_cancel", {"watcher": watcher}, target, expire)


#: The operation indexes of ``follow_action``: its rows say which one they belong to.
LIST_OP, ALERTS_OP = 0, 1


def follow_action(target: str, expire: str, since: int = 0) -> Action:
    """One action, two operations run in order on each agent: list its watchers (expiry,
    counters), then follow its alerts above ``since`` until the action expires (or the agent's
    ``module_timeout``). One signature shows a screen of both."""
    return make_action(
        f"alerts on {target}",
        target,
        [
            validated_operation("fswatch_list", {}),
            validated_operation("fswatch_alerts", alerts_params(since, follow=True)),
        ],
        expire_seconds=parse_duration(expire),
    )
