"""Runbooks: TOML files of named steps, checked without connecting, then signed and run in order.

A runbook is the habit of an incident made repeatable: the same IOC sweep every night, the same
checklist on every incident. Each step is one signed action (one signature per step, made just
before the step launches so its lifetime starts then), run through ``Investigation`` so every
result lands in the store, and all steps share one connection ``Pool``.

Format (every key of a step is checked; errors name the step and the key)::

    name = "xz backdoor sweep"          # optional, default: the file name
    description = "..."                 # optional
    target = "os=linux"                 # optional default target of the steps
    expire = "5m"                       # optional default lifetime of each step's action

    [[steps]]
    name = "packages"                   # required, unique
    module = "pkg"                      # required, a module of `spyglass modules list`
    params = { name = ["^liblzma5$"], version = ['^5\\.6\\.[01]'] }
    target = "env=prod"                 # required unless the runbook has a default
    expire = "5m"
    stop_if = "nomatch"                 # after this step: "matched", "nomatch" or "failed"
    until_expiry = true                 # retry unreachable or busy hosts until it expires

    [[steps]]
    name = "libraries"
    module = "file"
    only_hosts_matched_by = "packages"  # run only where that earlier step matched
    params = { paths = ["/usr/lib"], name = ['^liblzma\\.so'] }

``stop_if`` is read after the step it is written on has run: ``matched`` stops the runbook if any
host matched, ``nomatch`` if no host matched, ``failed`` if any host failed (unreachable,
rejected, ...). A list stops on any of its conditions. ``only_hosts_matched_by`` narrows a step to
the hosts (of its own target) that an earlier step reported as ``matched``; when there are none,
the step is skipped and nothing is signed for it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from console.actions.compose import parse_duration
from console.results.text import printable
from inventory.selector import compile_selector
from modules.registry import get_module
from protocol.action import MAX_NAME, Operation, make_action
from protocol.errors import ActionError, ParamError, SelectorError, UsageError

StopCondition = Literal["matched", "nomatch", "failed"]
STOP_CONDITIONS: tuple[StopCondition, ...] = ("matched", "nomatch", "failed")
_TOP_KEYS = {"name", "description", "target", "expire", "steps"}
_STEP_KEYS = {
    "name",
    "description",
    "target",
    "module",
    "params",
    "expire",
    "stop_if",
    "only_hosts_matched_by",
    "until_expiry",
}
MAX_STEPS = 64


class RunbookError(UsageError):
    """A runbook file that cannot be run; the message names the file, the step and the key."""


@dataclass(frozen=True)
class Step:
    index: int
    name: str
    module: str
    params: dict[str, Any]
    target: str
    expire: int
    description: str = ""
    stop_if: tuple[StopCondition, ...] = ()
    only_hosts_matched_by: str | None = None
    until_expiry: bool = False


@dataclass(frozen=True)
class Runbook:
    path: Path
    name: str
    description: str
    steps: tuple[Step, ...]


# -- loading and checking ----------------------------------------------------------------------
def load_runbook(path: str | Path) -> Runbook:
    """Read and check a runbook completely (modules, params, selectors, references)."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise RunbookError(f"{path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise RunbookError(f"{path.name}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as err:
        raise RunbookError(f"{path.name}: invalid TOML: {err}") from None
    return parse_runbook(document, path)


def parse_runbook(document: dict[str, Any], path: Path) -> Runbook:
    label = path.name
    if unknown := sorted(set(document) - _TOP_KEYS):
        raise RunbookError(f"{label}: {unknown[0]}: unknown key (expected {_keys(_TOP_KEYS)})")
    name = _string(document, "name", label, default=path.stem)
    description = _string(document, "description", label, default="")
    default_target = _string(document, "target", label, default=None)
    default_expire = _string(document, "expire", label, default="5m")
    if default_target is not None:
        _selector(default_target, f"{label}: target")
    _duration(default_expire, f"{label}: expire")
    raw_steps = document.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise RunbookError(f"{label}: steps: expected at least one [[steps]] table")
    if len(raw_steps) > MAX_STEPS:
        raise RunbookError(f"{label}: steps: at most {MAX_STEPS} steps")
    steps: list[Step] = []
    for index, raw in enumerate(raw_steps):
        steps.append(_parse_step(raw, index, label, steps, default_target, default_expire))
    return Runbook(path, name, description, tuple(steps))


def _parse_step(
    raw: Any,
    index: int,
    label: str,
    earlier: list[Step],
    default_target: str | None,
    default_expire: str,
) -> Step:
    where = f"{label}: steps[{index}]"
    if not isinstance(raw, dict):
        raise RunbookError(f"{where}: expected a table")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RunbookError(f"{where}: name: expected a non-empty string")
    where = f'{where} (name "{printable(name)}")'
    if unknown := sorted(set(raw) - _STEP_KEYS):
        raise RunbookError(f"{where}: {unknown[0]}: unknown key (expected {_keys(_STEP_KEYS)})")
    if len(name) > MAX_NAME // 2:
        raise RunbookError(f"{where}: name: longer than {MAX_NAME // 2} characters")
    if any(step.name == name for step in earlier):
        raise RunbookError(f"{where}: name: another step is already called {name!r}")
    module_name = raw.get("module")
    if not isinstance(module_name, str):
        raise RunbookError(f"{where}: module: expected a module name")
    module = get_module(module_name)
    if module is None:
        raise RunbookError(
            f"{where}: module: unknown module {module_name!r}; see `spyglass modules list`"
        )
    params = raw.get("params", {})
    if not isinstance(params, dict):
        raise RunbookError(f"{where}: params: expected a table")
    try:
        module.validate(params)
        make_action(name, "all", [Operation(module_name, params)])  # the action schema itself
    except ParamError as err:
        raise RunbookError(f"{where}: params.{err.in_params}") from None
    except ActionError as err:
        problem = err.message.split("params", 1)[-1].lstrip(".:")
        raise RunbookError(f"{where}: params.{problem}") from None
    target = _string(raw, "target", where, default=default_target)
    if target is None:
        raise RunbookError(f"{where}: target: missing (and the runbook sets no default target)")
    _selector(target, f"{where}: target")
    expire = _duration(_string(raw, "expire", where, default=default_expire), f"{where}: expire")
    description = _string(raw, "description", where, default="")
    stop_if = _stop_if(raw.get("stop_if", []), f"{where}: stop_if")
    until_expiry = raw.get("until_expiry", False)
    if not isinstance(until_expiry, bool):
        raise RunbookError(f"{where}: until_expiry: expected true or false")
    after = raw.get("only_hosts_matched_by")
    if after is not None:
        if not isinstance(after, str):
            raise RunbookError(f"{where}: only_hosts_matched_by: expected a step name")
        if not any(step.name == after for step in earlier):
            later = " (steps run in order: it must come earlier)" if after == name else ""
            raise RunbookError(
                f"{where}: only_hosts_matched_by: no earlier step is called {after!r}{later}"
            )
    return Step(
        index,
        name,
        module_name,
        params,
        target,
        expire,
        description or "",
        stop_if,
        after,
        until_expiry,
    )


def _string(table: dict[str, Any], key: str, where: str, *, default: Any) -> Any:
    value = table.get(key, default)
    if value is not default and not isinstance(value, str):
        raise RunbookError(f"{where}: {key}: expected a string")
    return value


def _selector(text: str, where: str) -> None:
    try:
        compile_selector(text)
    except SelectorError as err:
        raise RunbookError(f"{where}: {err.message}") from None


def _duration(text: str, where: str) -> int:
    try:
        return parse_duration(text)
    except UsageError as err:
        raise RunbookError(f"{where}: {err.message}") from None


def _stop_if(value: Any, where: str) -> tuple[StopCondition, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise RunbookError(f"{where}: expected one of {', '.join(STOP_CONDITIONS)} or a list")
    for item in items:
        if item not in STOP_CONDITIONS:
            raise RunbookError(f"{where}: {item!r} is not one of {', '.join(STOP_CONDITIONS)}")
    return tuple(items)


def _keys(keys: set[str]) -> str:
    return ", ".join(sorted(keys))
