"""Turning an investigator's request into an action, validated on the console as on the agent."""

from __future__ import annotations

import re
from typing import Any

from modules.registry import get_module
from protocol.action import Action, Operation, make_action
from protocol.errors import UsageError

_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``5m``, ``2h``, ``1d`` → seconds."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match[1]) <= 0:
        raise UsageError(f"invalid duration {text!r}: use e.g. 90s, 5m, 2h, 1d")
    return int(match[1]) * _UNITS[match[2]]


def validated_operation(module_name: str, params: dict[str, Any]) -> Operation:
    module = get_module(module_name)
    if module is None:
        raise UsageError(f"unknown module {module_name!r}; see `spyglass modules list`")
    params = module.stamp(params)  # what the console fills in (timedrift's send time), signed
    module.validate(params)  # raises ParamError with the parameter named
    return Operation(module_name, params)


def compose(
    module_name: str,
    params: dict[str, Any],
    target: str,
    expire: str = "5m",
    name: str | None = None,
) -> Action:
    """A one-operation action; params are checked here so that a typo never reaches the fleet
    (a ParamError names the module once: ``file: paths[0]: ...``)."""
    operation = validated_operation(module_name, params)
    return make_action(
        name or f"{module_name} on {target}",
        target,
        [operation],
        expire_seconds=parse_duration(expire),
    )
