"""The agent's configuration file (DESIGN §4), loaded strictly.

Each setting is declared once, as a dataclass field with a default and a docstring-like comment;
the loader checks types from the annotations and ``init`` writes a complete file from the same
declarations, so the file, the defaults and the checks cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from protocol.acl import Acl, acl_from_table
from protocol.errors import ConfigError


@dataclass(frozen=True, slots=True)
class AgentSection:
    name: str = "agent"
    listen: list[str] = field(default_factory=lambda: ["0.0.0.0:4022"])
    host_key: str = "ssh_host_ed25519_key"
    authorized_keys: str = "authorized_keys"
    investigators: str = "investigators"
    state_dir: str = "state"
    audit_log: str = "audit.log"
    root: str = "/"
    skew: int = 60  # seconds an action's valid_from may lie in the future
    max_lifetime: int = 86400  # longest expire_after - valid_from accepted
    max_frame: int = 1 << 20
    idle_timeout: int = 60  # close a channel that sends nothing this long (5x after actions)
    write_timeout: int = 30  # close a channel whose console reads nothing for this long
    login_timeout: int = 10
    max_channels: int = 128  # channels one SSH connection may hold open at once
    tags: dict[str, str] = field(default_factory=dict)  # this host's tags, as in the inventory
    enforce_target: bool = False  # refuse (reason acl) actions whose signed target skips this host


@dataclass(frozen=True, slots=True)
class LimitsSection:
    module_timeout: int = 300
    max_concurrent: int = 4
    cpu_seconds: int = 120
    memory_mb: int = 512
    match_limit: int = 10000
    result_bytes: int = 16 << 20
    outcome_bytes: int = 32 << 20  # a stored outcome past this keeps only its summary frames
    outcome_disk_bytes: int = 256 << 20  # all stored outcomes; past it the oldest are dropped
    privacy: bool = False
    nice: int = 10
    require_confinement: bool = False  # refuse operations the kernel cannot fully confine


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """A loaded configuration; paths are absolute, resolved against the file's folder."""

    path: Path
    agent: AgentSection
    limits: LimitsSection
    acl: Acl

    def resolve(self, relative: str) -> Path:
        return (self.path.parent / relative).resolve()

    @property
    def root(self) -> Path:
        return self.resolve(self.agent.root)

    @property
    def state_dir(self) -> Path:
        return self.resolve(self.agent.state_dir)

    def listen_addresses(self) -> list[tuple[str, int]]:
        pairs = []
        for item in self.agent.listen:
            host, _, port = item.rpartition(":")
            pairs.append((host.strip("[]") or "0.0.0.0", int(port)))
        return pairs


def load_config(path: str | Path) -> AgentConfig:
    path = Path(path).resolve()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
    where = path.name
    if unknown := sorted(set(data) - {"agent", "limits", "acl"}):
        raise ConfigError(f"{where}: unknown section [{unknown[0]}]")
    agent = _section(AgentSection, data.get("agent", {}), f"{where}: agent")
    limits = _section(LimitsSection, data.get("limits", {}), f"{where}: limits")
    for item in agent.listen:
        _host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"{where}: agent.listen: {item!r} is not HOST:PORT")
    return AgentConfig(path, agent, limits, acl_from_table(data.get("acl", {}), f"{where}: acl"))


def _section(cls: type[Any], table: Any, where: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(table) - names):
        raise ConfigError(f"{where}.{unknown[0]}: unknown key")
    for key, value in table.items():
        if not _conforms(value, hints[key]):
            raise ConfigError(f"{where}.{key}: expected {_type_name(hints[key])}, got {value!r}")
    return cls(**table)


def _conforms(value: Any, hint: Any) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint == list[str]:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if hint == dict[str, str]:
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    names = {list[str]: "a list of strings", dict[str, str]: "a table of strings"}
    return names.get(hint) or f"a {hint.__name__}"


def acl_strangers(acl: Acl, fingerprints: Iterable[str]) -> list[str]:
    """The ACL entries naming a key that is not among the investigators' keys, one line each:
    such an entry grants nothing, and is most often a key someone meant to revoke, or to add."""
    known = {fpr.upper() for fpr in fingerprints}
    return [
        f"acl.{module} names {fpr}, whose key is not in the investigators folder"
        for module, rule in sorted(acl.rules.items())
        for fpr in rule.investigators
        if fpr.upper() not in known
    ]


def render_config(
    agent: AgentSection, limits: LimitsSection, acl: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """The TOML document for a configuration, every setting written out."""
    return {"agent": dataclasses.asdict(agent), "limits": dataclasses.asdict(limits), "acl": acl}
