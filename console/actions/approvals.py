"""Approvals (k-of-n): who signed an envelope, and would a given agent's ACL accept it?

``spyglass action show FILE --config agentd.toml`` answers before launching: it verifies the
signatures against that agent's investigators folder and runs the agent's own pipeline
(``protocol.verify.verify_envelope``: time, signatures, signers, ACL) on the envelope, so the
verdict shown is the one the agent would reach, then details the weight each module gets.

The agent configuration is read with the agent's own loader (``protocol.agent_config``), so the
console and the agent cannot disagree on what a file means.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gnupg

from protocol.acl import Acl
from protocol.agent_config import acl_strangers, load_config
from protocol.envelope import Envelope
from protocol.errors import ConfigError, Rejected
from protocol.signing import Keyring, SigCheck
from protocol.verify import Policy, verify_envelope


@dataclass(frozen=True)
class AgentPolicy:
    """What an agent's configuration says about accepting actions."""

    path: Path
    name: str
    investigators: Path
    acl: Acl
    policy: Policy


def read_agent_policy(path: str | Path) -> AgentPolicy:
    """The verdict-relevant part of an ``agentd.toml``, read by the agent's own loader."""
    config = load_config(path)
    return AgentPolicy(
        config.path,
        config.agent.name,
        config.resolve(config.agent.investigators),
        config.acl,
        Policy(config.agent.skew, config.agent.max_lifetime),
    )


@dataclass
class SignatureInfo:
    """One signature of the envelope, in the envelope's order."""

    fingerprint: str | None
    uid: str
    status: str  # valid / bad / unknown-key / malformed, as seen by the keyring that knew most
    seen_by: str  # "local keyring", "agent keyring" or "nobody"

    def to_json(self) -> dict[str, Any]:
        """As `spyglass action show --json` prints it: every field."""
        return dataclasses.asdict(self)


@dataclass
class ModuleWeight:
    module: str
    rule: str  # "acl.file" or "acl.default" or "none"
    weight: int
    minimum_weight: int
    signers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rule != "none" and self.weight >= self.minimum_weight

    def to_json(self) -> dict[str, Any]:
        """Every field (under ``modules`` of the verdict's JSON)."""
        return dataclasses.asdict(self)


@dataclass
class Verdict:
    """Would this agent accept the envelope? ``reason`` is the DESIGN §2 rejection reason."""

    agent: AgentPolicy
    accepted: bool
    reason: str | None
    detail: str
    modules: list[ModuleWeight]
    warnings: list[str] = field(default_factory=list)  # ACL entries whose key is not known

    def to_json(self) -> dict[str, Any]:
        """As `spyglass action show --config ... --json` prints it under ``agent``."""
        return {
            "config": str(self.agent.path),
            "name": self.agent.name,
            "accepted": self.accepted,
            "reason": self.reason,
            "detail": self.detail,
            "modules": [m.to_json() for m in self.modules],
            "warnings": self.warnings,
        }


def _scratch_home() -> Path:
    # gpg-agent sockets break past ~107 characters: keep the temporary GNUPGHOME short.
    return Path(tempfile.mkdtemp(prefix="sgk", dir="/tmp"))


def _drop_home(home: Path) -> None:
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False
    )
    shutil.rmtree(home, ignore_errors=True)


def _local_keys(gnupghome: str | None) -> tuple[list[str], dict[str, str]]:
    """The investigator's own public keys (armored) and uid by fingerprint, if a home exists."""
    home = gnupghome or str(Path.home() / ".gnupg")
    if not Path(home).is_dir():
        return [], {}
    gpg = gnupg.GPG(gnupghome=home, options=["--no-autostart"])
    gpg.encoding = "utf-8"
    keys = gpg.list_keys()
    uids = {str(k["fingerprint"]).upper(): (k.get("uids") or [""])[0] for k in keys}
    armored = str(gpg.export_keys([k["fingerprint"] for k in keys])) if keys else ""
    return ([armored] if armored.strip() else []), uids


def _uids(home: Path) -> dict[str, str]:
    gpg = gnupg.GPG(gnupghome=str(home), options=["--no-autostart"])
    gpg.encoding = "utf-8"
    return {str(k["fingerprint"]).upper(): (k.get("uids") or [""])[0] for k in gpg.list_keys()}


def inspect_envelope(
    envelope: Envelope, gnupghome: str | None, agent: AgentPolicy | None, now: int | None = None
) -> tuple[list[SignatureInfo], Verdict | None]:
    """Each signature's signer (resolved from the local keyring and the agent's, when known),
    and the agent's verdict when an agent configuration is given."""
    data = envelope.action.canonical
    homes: list[Path] = []
    try:
        armored, uids = _local_keys(gnupghome)
        rings: list[tuple[str, Keyring]] = []
        if armored:
            homes.append(_scratch_home())
            rings.append(("local keyring", Keyring(homes[-1], armored)))
        agent_ring: Keyring | None = None
        if agent is not None:
            if not agent.investigators.is_dir():
                raise ConfigError(
                    f"{agent.path.name}: agent.investigators: no folder {agent.investigators}"
                )
            homes.append(_scratch_home())
            keys = [p.read_text() for p in sorted(agent.investigators.glob("*.asc"))]
            agent_ring = Keyring(homes[-1], keys)
            rings.append(("agent keyring", agent_ring))
            uids = {**_uids(homes[-1]), **uids}
        infos = []
        for signature in envelope.signatures:
            seen_by, check = _best([(name, ring.check(data, signature)) for name, ring in rings])
            fpr = check.fingerprint if check else None
            status = check.status if check else "unknown-key"
            infos.append(SignatureInfo(fpr, uids.get(fpr or "", ""), status, seen_by))
        verdict = None
        if agent is not None and agent_ring is not None:
            verdict = evaluate(envelope, agent, agent_ring, now)
        return infos, verdict
    finally:
        for home in homes:
            _drop_home(home)


def _best(checks: list[tuple[str, SigCheck]]) -> tuple[str, SigCheck | None]:
    rank = {"valid": 0, "bad": 1, "malformed": 2, "unknown-key": 3}
    if not checks:
        return "nobody", None
    seen_by, check = min(checks, key=lambda c: rank[c[1].status])
    return (seen_by if check.status != "unknown-key" else "nobody"), check


def evaluate(
    envelope: Envelope, agent: AgentPolicy, keyring: Keyring, now: int | None = None
) -> Verdict:
    """Run the agent's verification pipeline on the envelope and the per-module weights."""
    now = int(time.time()) if now is None else now
    signers: list[str] = []
    data = envelope.action.canonical
    for signature in envelope.signatures:
        check = keyring.check(data, signature)
        if check.status == "valid" and check.fingerprint and check.fingerprint not in signers:
            signers.append(check.fingerprint)
    modules = []
    for module in dict.fromkeys(envelope.action.modules):
        rule = agent.acl.rule_for(module)
        name = f"acl.{module}" if module in agent.acl.rules else "acl.default" if rule else "none"
        counted = [s for s in signers if rule and rule.investigators.get(s, 0)]
        modules.append(
            ModuleWeight(
                module,
                name,
                rule.weight(signers) if rule else 0,
                rule.minimum_weight if rule else 1,
                counted,
            )
        )
    warnings = acl_strangers(agent.acl, keyring.fingerprints)
    try:
        verify_envelope(envelope.to_dict(), keyring, agent.acl, now, agent.policy)
    except Rejected as err:
        return Verdict(agent, False, err.reason, err.detail, modules, warnings)
    return Verdict(agent, True, None, "", modules, warnings)
