"""The modules this installation knows, by name.

Adding a module is one line in ``_MODULES``; each entry is imported on first use, so a module's
heavy imports cost nothing until it is asked for.
"""

from __future__ import annotations

import importlib
from functools import cache

from modules.base import Module

_MODULES = (
    "modules.file:FileModule",
    "modules.pkg:PkgModule",
    "modules.sshkey:SshKeyModule",
    "modules.agent:AgentModule",
    "modules.netstat:NetstatModule",
    "modules.process:ProcessModule",
    "modules.yara:YaraModule",
    "modules.fswatch:FswatchModule",
    "modules.fswatch:FswatchCancelModule",
    "modules.fswatch:FswatchListModule",
    "modules.fswatch:FswatchAlertsModule",
    "modules.ping:PingModule",
    "modules.timedrift:TimeDriftModule",
    "modules.check:CheckModule",
)


@cache
def _load() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for ref in _MODULES:
        path, _, cls_name = ref.partition(":")
        module = getattr(importlib.import_module(path), cls_name)()
        if module.name in found:
            raise ValueError(f"module name {module.name!r} registered twice")
        found[module.name] = module
    return found


def get_module(name: str) -> Module | None:
    """The module called ``name``, or None if this installation has no such module."""
    return _load().get(name)


def all_modules() -> list[Module]:
    """Every registered module, in registration order."""
    return list(_load().values())
