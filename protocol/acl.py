"""Weighted per-module ACL: which investigators, together, may run a module on this agent."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from protocol.errors import Rejected


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
