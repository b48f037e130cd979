"""Weighted per-module ACL: which investigators, together, may run a module on this agent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from protocol.errors import ConfigError, Rejected


@dataclass(frozen=True, slots=True)
class AclRule:
    """A module runs when the distinct signers' weights add up to ``minimum_weight``."""

    minimum_weight: int = 1
    investigators: Mapping[str, int] = field(default_factory=dict)

    def weight(self, signers: Iterable[str]) -> int:
        """Fingerprints compare case-insensitively, and a signer counts once whatever its case."""
        people = {fpr.upper(): weight for fpr, weight in self.investigators.items()}
        return sum(people.get(fpr, 0) for fpr in {fpr.upper() for fpr in signers})


@dataclass(frozen=True, slots=True)
class Acl:
    """``rules`` maps a module name (or ``default``) to its rule; no rule at all admits nobody."""

    rules: Mapping[str, AclRule]

    def rule_for(self, module: str) -> AclRule | None:
        return self.rules.get(module) or self.rules.get("default")

    def check(self, modules: Iterable[str], signers: Iterable[str]) -> None:
        """Raise ``Rejected('acl')`` naming the first module whose rule the signers do not meet."""
        signers = list(signers)
        for module in modules:
            rule = self.rule_for(module)
            got = rule.weight(signers) if rule else 0
            need = rule.minimum_weight if rule else 1
            if rule is None or got < need:
                raise Rejected("acl", f"module {module!r} needs weight {need}, signers have {got}")


def acl_from_table(table: Any, where: str) -> Acl:
    """The ``[acl.MODULE]`` tables of an agent configuration; ConfigError names the key."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected tables [acl.MODULE]")
    rules = {}
    for module, rule in table.items():
        if not isinstance(rule, dict) or set(rule) - {"minimum_weight", "investigators"}:
            raise ConfigError(f"{where}.{module}: expected minimum_weight and investigators")
        weight = rule.get("minimum_weight", 1)
        people = rule.get("investigators", {})
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 1:
            raise ConfigError(f"{where}.{module}.minimum_weight: expected an integer >= 1")
        if not isinstance(people, dict) or not all(
            isinstance(w, int) and not isinstance(w, bool) for w in people.values()
        ):
            raise ConfigError(f"{where}.{module}.investigators: expected {{FINGERPRINT = weight}}")
        rules[module] = AclRule(weight, {fpr.upper(): w for fpr, w in people.items()})
    return Acl(rules)
