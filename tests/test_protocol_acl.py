"""The weighted per-module ACL of DESIGN §2."""

from __future__ import annotations

import pytest

from protocol.acl import Acl, AclRule
from protocol.errors import Rejected

ALICE = "A" * 40
BOB = "B" * 40
CAROL = "C" * 40
MALLORY = "D" * 40

ACL = Acl(
    {
        "default": AclRule(minimum_weight=1, investigators={ALICE: 1, BOB: 1, CAROL: 1}),
        "file": AclRule(minimum_weight=2, investigators={ALICE: 1, BOB: 1, CAROL: 2}),
        "memory": AclRule(minimum_weight=3, investigators={ALICE: 1, BOB: 1}),
    }
)


def refused(acl: Acl, modules: list[str], signers: list[str]) -> str:
    with pytest.raises(Rejected) as caught:
        acl.check(modules, signers)
    assert caught.value.reason == "acl"
    return caught.value.detail


def test_weights_add_up() -> None:
    rule = ACL.rules["file"]
    assert rule.weight([]) == 0
    assert rule.weight([ALICE]) == 1
    assert rule.weight([ALICE, BOB]) == 2
    assert rule.weight([ALICE, BOB, CAROL]) == 4
    assert rule.weight([MALLORY]) == 0


def test_fingerprints_are_matched_case_insensitively() -> None:
    assert ACL.rules["file"].weight([CAROL.lower()]) == 2
    rule = AclRule(minimum_weight=1, investigators={ALICE.lower(): 1})
    assert rule.weight([ALICE]) == 1


def test_signers_count_once() -> None:
    assert ACL.rules["file"].weight([ALICE, ALICE, ALICE]) == 1
    assert ACL.rules["file"].weight([ALICE, ALICE.lower()]) == 1
    assert refused(ACL, ["file"], [ALICE, ALICE]) == "module 'file' needs weight 2, signers have 1"


def test_module_rule_admits() -> None:
    ACL.check(["file"], [ALICE, BOB])
    ACL.check(["file"], [CAROL])
    assert refused(ACL, ["file"], [BOB]) == "module 'file' needs weight 2, signers have 1"


def test_default_rule_for_unlisted_modules() -> None:
    assert ACL.rule_for("netstat") is ACL.rules["default"]
    ACL.check(["netstat"], [BOB])
    assert refused(ACL, ["netstat"], [MALLORY]) == "module 'netstat' needs weight 1, signers have 0"


def test_module_rule_stricter_than_default_is_not_bypassed_by_default() -> None:
    # CAROL is in the default rule, not in memory's: the module's own rule alone decides
    assert refused(ACL, ["memory"], [CAROL]) == "module 'memory' needs weight 3, signers have 0"
    assert (
        refused(ACL, ["memory"], [ALICE, BOB, CAROL])
        == "module 'memory' needs weight 3, signers have 2"
    )


def test_every_operation_must_pass_and_the_first_failure_is_named() -> None:
    ACL.check(["netstat", "file"], [ALICE, BOB])
    assert refused(ACL, ["netstat", "file", "memory"], [ALICE, BOB]) == (
        "module 'memory' needs weight 3, signers have 2"
    )
    assert (
        refused(ACL, ["file", "netstat"], [MALLORY])
        == "module 'file' needs weight 2, signers have 0"
    )


def test_no_rule_admits_nobody() -> None:
    acl = Acl({"file": AclRule(minimum_weight=1, investigators={ALICE: 5})})
    acl.check(["file"], [ALICE])
    assert acl.rule_for("netstat") is None
    assert refused(acl, ["netstat"], [ALICE]) == "module 'netstat' needs weight 1, signers have 0"
    assert (
        refused(Acl({}), ["file"], [ALICE, BOB]) == "module 'file' needs weight 1, signers have 0"
    )


def test_no_signers_never_pass_a_positive_minimum() -> None:
    assert refused(ACL, ["netstat"], []) == "module 'netstat' needs weight 1, signers have 0"


def test_signers_may_be_any_iterable() -> None:
    ACL.check(iter(["file"]), iter([ALICE, BOB]))  # consumed once per module, not exhausted


def test_rejected_message() -> None:
    with pytest.raises(Rejected) as caught:
        ACL.check(["file"], [])
    assert str(caught.value) == "acl: module 'file' needs weight 2, signers have 0"
