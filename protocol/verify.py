"""The first steps of the agent's verification pipeline (DESIGN §2), pure of any transport.

Steps run in the contract's order and the first failure names its reason. The agent itself adds
the last steps (module params, replay cache, concurrency), which need its own state.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.acl import Acl
from protocol.action import SUPPORTED_VERSIONS, Action
from protocol.envelope import Envelope, parse_envelope
from protocol.errors import ActionError, Rejected
from protocol.signing import Keyring


@dataclass(frozen=True, slots=True)
class Policy:
    """Time rules of an agent."""

    skew: int = 60
    max_lifetime: int = 86400


@dataclass(frozen=True, slots=True)
class Verified:
    """An envelope that passed signatures and ACL; ``signers`` are primary fingerprints."""

    action: Action
    signers: tuple[str, ...]


def verify_envelope(raw: object, keyring: Keyring, acl: Acl, now: int, policy: Policy) -> Verified:
    """Run steps malformed → version → time → signatures → signers → ACL; raise ``Rejected``."""
    envelope = parse_checked(raw)
    check_time(envelope.action, now, policy)
    return check_signers(envelope, keyring, acl)


# The three parts below are the pipeline's steps in order, for a caller that keeps the outcome of
# the last one (it depends only on the envelope, the keyring and the ACL) and re-runs the others.


def parse_checked(raw: object) -> Envelope:
    """Steps malformed and version."""
    envelope = _parse(raw)
    if envelope.action.version not in SUPPORTED_VERSIONS:
        version = envelope.action.version
        raise Rejected("unsupported-version", f"version {version} is not supported")
    return envelope


def check_time(action: Action, now: int, policy: Policy) -> None:
    """Steps not-yet-valid and expired."""
    if action.valid_from - policy.skew > now:
        raise Rejected("not-yet-valid", f"valid from {action.valid_from}, agent time is {now}")
    if now > action.expire_after:
        raise Rejected("expired", f"expired at {action.expire_after}, agent time is {now}")
    lifetime = action.expire_after - action.valid_from
    if lifetime > policy.max_lifetime:  # the reason stays "expired"; the detail says why
        raise Rejected(
            "expired",
            f"lifetime {span(lifetime)} exceeds this agent's maximum of "
            f"{span(policy.max_lifetime)}",
        )


def span(seconds: int) -> str:
    """``30 d``, ``24 h``, ``5 min``, ``90 s``: a duration in its largest whole unit (days
    from two on)."""
    for unit, size, least in (("d", 86400, 172800), ("h", 3600, 3600), ("min", 60, 120)):
        if seconds >= least and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def check_signers(envelope: Envelope, keyring: Keyring, acl: Acl) -> Verified:
    """Steps bad-signature, unknown-signer and acl."""
    signers = trusted_signers(envelope, keyring)
    acl.check(envelope.action.modules, signers)
    return Verified(envelope.action, tuple(signers))


def trusted_signers(envelope: Envelope, keyring: Keyring, *, spawn: bool = True) -> list[str]:
    """Steps bad-signature and unknown-signer: the keyring's keys that signed (primary
    fingerprints), which an agent's audit line names even when the ACL then refuses them.
    ``spawn=False``: GpgNeeded if a signature needs gpg (``Keyring.check``)."""
    signers = _check_signatures(envelope, keyring, spawn)
    if not signers:
        raise Rejected("unknown-signer", "no signature was made by a key in this agent's keyring")
    return signers


def _parse(raw: object) -> Envelope:
    try:
        return parse_envelope(raw)
    except ActionError as err:
        if isinstance(raw, dict) and isinstance(raw.get("action"), dict):
            version = raw["action"].get("version")
            if isinstance(version, int) and version not in SUPPORTED_VERSIONS:
                raise Rejected(
                    "unsupported-version", f"version {version} is not supported"
                ) from None
        raise Rejected("malformed", err.message) from None


def _check_signatures(envelope: Envelope, keyring: Keyring, spawn: bool) -> list[str]:
    data = envelope.action.canonical
    known: list[str] = []
    seen: set[str] = set()
    for i, signature in enumerate(envelope.signatures):
        outcome = keyring.check(data, signature, spawn=spawn)
        if outcome.status in ("bad", "malformed"):
            raise Rejected("bad-signature", f"signature {i}: {outcome.detail}")
        if outcome.fingerprint:
            if outcome.fingerprint in seen:
                raise Rejected("bad-signature", f"key {outcome.fingerprint} signed twice")
            seen.add(outcome.fingerprint)
        if outcome.status == "valid" and outcome.fingerprint:
            known.append(outcome.fingerprint)
    return known
