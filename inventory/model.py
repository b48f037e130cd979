"""The inventory as data: defaults, hosts, and the lookups the console needs.

Each TOML key is declared once, here, as a dataclass field whose metadata names its kind
(``inventory.fields``); ``loader.py`` derives validation and writing from these declarations.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from inventory.fields import (
    ADDRESS,
    HOST_NAME,
    HOST_PATTERN,
    PATH,
    PATHS,
    PORT,
    SECONDS,
    TAGS,
    TEXT,
    spec,
)
from inventory.selector import compile_selector
from protocol.errors import InventoryError


@dataclass(frozen=True, slots=True)
class Defaults:
    """Connection settings every host inherits unless it sets its own ``port`` or ``user``."""

    port: int = field(default=4022, metadata=spec(PORT))
    """SSH port of the agents; spyglass-agentd does not take over the system sshd's 22."""
    user: str = field(default="spyglass", metadata=spec(TEXT))
    """SSH user the console logs in as."""
    known_hosts: Path | None = field(default=None, metadata=spec(PATH))
    """Pinned host keys, relative to the inventory folder; host keys are never auto-accepted."""
    client_keys: tuple[Path, ...] = field(default=(), metadata=spec(PATHS))
    """The console's private keys, relative to the inventory folder; empty means the ssh-agent."""
    connect_timeout: float = field(default=5.0, metadata=spec(SECONDS))
    """Seconds before an unreachable host is reported as such instead of stalling a run."""
    idle_timeout: float = field(default=300.0, metadata=spec(SECONDS))
    """Seconds an open connection stays pooled unused (a TUI session, a runbook) before closing."""


@dataclass(frozen=True, slots=True)
class Host:
    """One agent the console can reach; ranges in the file are already expanded."""

    name: str = field(metadata=spec(HOST_PATTERN))
    """Unique name, also the implicit tag ``name``; in the file it may hold a range ``[01-40]``."""
    address: str = field(metadata=spec(ADDRESS))
    """Host name or IP to connect to; in the file it may hold a range in step with the name."""
    port: int = field(metadata=spec(PORT, inherit=True))
    """SSH port, from ``[defaults]`` unless set on the host."""
    user: str = field(metadata=spec(TEXT, inherit=True))
    """SSH user, from ``[defaults]`` unless set on the host."""
    tags: dict[str, str] = field(default_factory=dict, hash=False, metadata=spec(TAGS))
    """Free-form labels for target selectors; always holds ``name`` (the host name) too."""
    jump: str | None = field(default=None, metadata=spec(HOST_NAME))
    """Name of another inventory host to tunnel through (a bastion), or None to connect directly."""


@dataclass(frozen=True, slots=True)
class Inventory:
    """A loaded, validated inventory file: its defaults and its hosts in file order."""

    path: Path
    defaults: Defaults
    hosts: tuple[Host, ...]
    _by_name: dict[str, Host] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {host.name: host for host in self.hosts})

    def by_name(self, name: str) -> Host:
        """The host called ``name``; an InventoryError (with a suggestion) if there is none."""
        host = self._by_name.get(name)
        if host is not None:
            return host
        close = difflib.get_close_matches(name, self._by_name, n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise InventoryError(f'{self.path}: no host named "{name}"{hint}')

    def select(self, selector: str) -> list[Host]:
        """Hosts matching a target selector, in file order; SelectorError if it does not parse."""
        compiled = compile_selector(selector)
        return [host for host in self.hosts if compiled.matches(host)]
