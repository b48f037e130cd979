"""Signing and the verification pipeline with real gpg (DESIGN §2), no mocks."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from protocol.acl import Acl, AclRule
from protocol.action import parse_action
from protocol.envelope import Envelope
from protocol.errors import AlreadySigned, PassphraseNeeded, Rejected, SigningError
from protocol.signing import Keyring, SigCheck, Signer, generate_key, signer_of
from protocol.verify import Policy, Verified, verify_envelope
from tests.support.openpgp import armor, dearmor
from tests.support.protocol_keys import Investigator, KeyFactory

T = 1_800_000_000  # valid_from of the test actions
POLICY = Policy()  # skew 60 s, max_lifetime 24 h


@pytest.fixture(scope="module")
def bob(keys: KeyFactory) -> Investigator:
    return keys.investigator("Bob")


@pytest.fixture(scope="module")
def mallory(keys: KeyFactory) -> Investigator:
    """Has a perfectly good key, which no agent knows."""
    return keys.investigator("Mallory")


@pytest.fixture(scope="module")
def keyring(keys: KeyFactory, alice: Investigator, bob: Investigator) -> Keyring:
    return Keyring(keys.home(), [alice.public, bob.public])


@pytest.fixture(scope="module")
def acl(alice: Investigator, bob: Investigator) -> Acl:
    people = {alice.fingerprint: 1, bob.fingerprint: 1}
    return Acl({"default": AclRule(1, people), "file": AclRule(2, people)})


def action_raw(module: str = "netstat", **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "version": 1,
        "id": "01JD3M8Q7K2Y5V0C4T6N9P1R3S",
        "name": "sweep",
        "description": "",
        "target": "env=prod",
        "valid_from": T,
        "expire_after": T + 300,
        "operations": [{"module": module, "params": {"paths": ["/usr/lib"]}}],
    }
    raw.update(changes)
    return raw


def signed(raw: dict[str, Any], *people: Investigator) -> dict[str, Any]:
    data = parse_action(raw).canonical
    return {"action": raw, "signatures": [p.signer.sign_bytes(data) for p in people]}


def verify(
    envelope: Any, keyring: Keyring, acl: Acl, now: int = T, policy: Policy = POLICY
) -> Verified:
    return verify_envelope(envelope, keyring, acl, now, policy)


def rejected(
    envelope: Any, keyring: Keyring, acl: Acl, now: int = T, policy: Policy = POLICY
) -> Rejected:
    with pytest.raises(Rejected) as caught:
        verify(envelope, keyring, acl, now, policy)
    return caught.value


# --- keys and Keyring.check ----------------------------------------------------------------------


def test_generated_keys(alice: Investigator, bob: Investigator, keyring: Keyring) -> None:
    assert len(alice.fingerprint) == 40 and alice.fingerprint == alice.fingerprint.upper()
    assert alice.signer.fingerprint == alice.fingerprint
    assert alice.signer.user == "Alice <alice@spyglass.invalid>"
    assert alice.public.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert keyring.fingerprints == [alice.fingerprint, bob.fingerprint]


def test_valid_signature_names_the_primary_key(alice: Investigator, keyring: Keyring) -> None:
    data = parse_action(action_raw()).canonical
    signature = alice.signer.sign_bytes(data)
    assert signature.startswith("-----BEGIN PGP SIGNATURE-----")
    assert keyring.check(data, signature) == SigCheck("valid", alice.fingerprint)


def test_tampered_bytes_are_bad(alice: Investigator, keyring: Keyring) -> None:
    data = parse_action(action_raw()).canonical
    signature = alice.signer.sign_bytes(data)
    outcome = keyring.check(data.replace(b"/usr/lib", b"/usr/lil"), signature)
    assert outcome.status == "bad"
    assert outcome.detail.endswith("does not match the action")


def test_unknown_key(mallory: Investigator, keyring: Keyring) -> None:
    data = b"anything"
    outcome = keyring.check(data, mallory.signer.sign_bytes(data))
    assert outcome.status == "unknown-key"
    assert outcome.fingerprint == mallory.fingerprint  # gpg >= 2.2.7 names it even so


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "garbage",
        "-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n",
        "-----BEGIN PGP SIGNATURE-----\n",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
    ],
    ids=["empty", "garbage", "bad-body", "header-only", "public-key"],
)
def test_garbage_armor_is_malformed(keyring: Keyring, signature: str) -> None:
    outcome = keyring.check(b"data", signature)
    assert outcome.status == "malformed"
    assert outcome.fingerprint is None


def test_damaged_armor_is_not_valid(alice: Investigator, keyring: Keyring) -> None:
    signature = alice.signer.sign_bytes(b"data")
    lines = signature.splitlines()
    body = lines[2]
    lines[2] = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    assert keyring.check(b"data", "\n".join(lines) + "\n").status in ("bad", "malformed")


def test_signer_of(alice: Investigator, mallory: Investigator) -> None:
    signature = mallory.signer.sign_bytes(b"x")
    # alice's own home does not hold mallory's key, yet the signing key is named
    assert signer_of(alice.signer._gpg, b"x", signature) == mallory.fingerprint
    assert signer_of(alice.signer._gpg, b"x", "garbage") is None


def test_keyring_check_never_raises_on_odd_strings(keyring: Keyring) -> None:
    outcome = keyring.check(b"data", "-----BEGIN PGP SIGNATURE-----\n\ud800\n")
    assert outcome == SigCheck("malformed", None, "signature is not valid Unicode")
    assert keyring.check(b"data", "\udc80").status == "malformed"


def test_one_armored_block_holds_one_signature(
    alice: Investigator, bob: Investigator, keyring: Keyring, acl: Acl
) -> None:
    raw = action_raw("file")
    data = parse_action(raw).canonical
    by_alice, by_bob = alice.signer.sign_bytes(data), bob.signer.sign_bytes(data)
    assert keyring.check(data, armor(dearmor(by_alice))).status == "valid"  # the helper is sound
    bundle = armor(dearmor(by_alice) + dearmor(by_bob))
    assert keyring.check(data, bundle) == SigCheck(
        "malformed", None, "more than one signature in one armored block"
    )
    err = rejected({"action": raw, "signatures": [bundle]}, keyring, acl)
    assert (err.reason, err.detail) == (
        "bad-signature",
        "signature 0: more than one signature in one armored block",
    )
    # nor can a bundle hide a second signature by a key that also signs on its own
    err = rejected({"action": raw, "signatures": [bundle, by_alice]}, keyring, acl)
    assert err.reason == "bad-signature"


@pytest.fixture(scope="module")
def expired(keys: KeyFactory) -> tuple[str, str, str]:
    """A key that expired in 2020 and a signature it made while still valid: (fpr, pub, sig)."""
    home = keys.home()
    gpg = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback"]
    subprocess.run(
        [
            *gpg,
            "--passphrase",
            "",
            "--faked-system-time",
            "20200101T000000",
            "--quick-gen-key",
            "Old <old@spyglass.invalid>",
            "ed25519",
            "sign",
            "1d",
        ],
        check=True,
        capture_output=True,
    )
    signature = subprocess.run(
        [*gpg, "--faked-system-time", "20200101T000100", "--detach-sign", "--armor"],
        input=b"old data",
        check=True,
        capture_output=True,
    ).stdout.decode()
    public = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True)
    fingerprint = Keyring(keys.home(), [public.stdout.decode()]).fingerprints[0]
    return fingerprint, public.stdout.decode(), signature


def test_expired_key_is_named(keys: KeyFactory, expired: tuple[str, str, str]) -> None:
    fingerprint, public, signature = expired
    outcome = Keyring(keys.home(), [public]).check(b"old data", signature)
    assert outcome == SigCheck(
        "bad", fingerprint, f"signature by {fingerprint}: signing key has expired"
    )


# --- Signer --------------------------------------------------------------------------------------


def test_sign_adds_signatures_and_refuses_a_second_by_the_same_key(
    alice: Investigator, bob: Investigator, keyring: Keyring, acl: Acl
) -> None:
    envelope = Envelope(parse_action(action_raw("file")))
    once = alice.signer.sign(envelope)
    assert len(once.signatures) == 1 and envelope.signatures == ()
    with pytest.raises(SigningError) as caught:
        alice.signer.sign(once)
    assert str(caught.value) == f"the envelope is already signed by {alice.fingerprint}"
    twice = bob.signer.sign(once)
    assert len(twice.signatures) == 2
    with pytest.raises(SigningError, match="already signed by " + bob.fingerprint):
        bob.signer.sign(twice)
    assert verify(twice.to_dict(), keyring, acl).signers == (alice.fingerprint, bob.fingerprint)


def test_signing_failures_are_typed(keys: KeyFactory) -> None:
    """A front end tells "ask for a passphrase" from "give up" by the type, not the text."""
    home = keys.home()
    (home / "gpg-agent.conf").write_text("default-cache-ttl 0\nmax-cache-ttl 0\n")  # no cache
    generate_key(home, passphrase="correct horse")
    envelope = Envelope(parse_action(action_raw("file")))
    with pytest.raises(PassphraseNeeded, match="Inappropriate ioctl"):  # pinentry has no tty
        Signer(home).sign(envelope)
    with pytest.raises(PassphraseNeeded, match="Bad passphrase"):
        Signer(home, passphrase="wrong").sign(envelope)
    once = Signer(home, passphrase="correct horse").sign(envelope)
    with pytest.raises(AlreadySigned):
        Signer(home, passphrase="correct horse").sign(once)


def test_signer_selects_a_key(keys: KeyFactory, alice: Investigator) -> None:
    assert Signer(alice.home, key=alice.fingerprint[-16:].lower()).fingerprint == alice.fingerprint
    assert Signer(alice.home, key="alice@spyglass.invalid").fingerprint == alice.fingerprint
    with pytest.raises(SigningError) as caught:
        Signer(alice.home, key="nobody@example.test")
    assert str(caught.value) == f"no secret signing key nobody@example.test in {alice.home}"


def test_signer_without_keys(keys: KeyFactory) -> None:
    home = keys.home()
    with pytest.raises(SigningError) as caught:
        Signer(home)
    assert str(caught.value) == f"no secret signing key in {home}"
    with pytest.raises(SigningError, match=r"no GnuPG home at .*: set GNUPGHOME"):
        Signer(home / "absent")


def test_two_keys_in_one_home(keys: KeyFactory) -> None:
    home = keys.home()
    first = generate_key(home, name="First", email="first@spyglass.invalid")
    second = generate_key(home, name="Second", email="second@spyglass.invalid")
    assert first != second
    assert Signer(home, key="second@").fingerprint == second
    signature = Signer(home, key=first).sign_bytes(b"d")
    assert (
        Keyring(keys.home(), [Signer(home).export_public()]).check(b"d", signature).status
        == "valid"
    )


# --- Keyring sharing and the verification cache --------------------------------------------------


def test_from_folder_shares_identical_folders(
    keys: KeyFactory, alice: Investigator, bob: Investigator
) -> None:
    one, two, three = keys.home(), keys.home(), keys.home()
    (one / "alice.asc").write_text(alice.public)
    (one / "bob.asc").write_text(bob.public)
    (one / "README.txt").write_text("not a key")
    (two / "zz-bob.asc").write_text(bob.public)  # other names, same keys
    (two / "aa-alice.asc").write_text(alice.public)
    (three / "alice.asc").write_text(alice.public)
    first = Keyring.from_folder(one, keys.home() / "gnupg")
    assert Keyring.from_folder(two, keys.home() / "gnupg") is first
    assert sorted(first.fingerprints) == sorted([alice.fingerprint, bob.fingerprint])
    other = Keyring.from_folder(three, keys.home() / "gnupg")
    assert other is not first and other.fingerprints == [alice.fingerprint]


class CountingKeyring(Keyring):
    """A real keyring that counts how often gpg is asked to verify."""

    def __init__(self, home: str | Path, armored_keys: list[str]) -> None:
        super().__init__(home, armored_keys)
        self.gpg_calls = 0
        real = self._gpg.verify_data

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.gpg_calls += 1
            return real(*args, **kwargs)

        self._gpg.verify_data = counted  # type: ignore[method-assign]


def test_cache_spares_gpg(keys: KeyFactory, alice: Investigator, bob: Investigator) -> None:
    data = b"cache test " + keys.home().name.encode()  # bytes no other test checks
    signature = alice.signer.sign_bytes(data)
    keyring = CountingKeyring(keys.home(), [alice.public, bob.public])
    first = keyring.check(data, signature)  # an investigator's own shape: checked in process
    assert first.status == "valid" and keyring.gpg_calls == 0
    assert keyring.check(data, signature) is first
    # an agent in the same process with the same investigators does not verify again either
    neighbour = CountingKeyring(keys.home(), [bob.public, alice.public])
    assert neighbour.check(data, signature) is first
    # a signature that does not verify, or one by a key the keyring lacks, goes to gpg, once
    assert keyring.check(data + b"!", signature).status == "bad" and keyring.gpg_calls == 1
    assert keyring.check(data + b"!", signature).status == "bad" and keyring.gpg_calls == 1
    stranger = CountingKeyring(keys.home(), [bob.public])
    assert stranger.check(data, signature).status == "unknown-key" and stranger.gpg_calls == 1


def test_cache_is_bounded(keys: KeyFactory, alice: Investigator) -> None:
    keyring = CountingKeyring(keys.home(), [alice.public])
    old_size = Keyring.CACHE_SIZE
    Keyring._cache.clear()  # costs other tests a re-verification at most
    Keyring.CACHE_SIZE = 2
    try:
        outcomes = [keyring.check(f"bounded {i}".encode(), "garbage") for i in range(4)]
        assert len(Keyring._cache) == 2
        assert keyring.check(b"bounded 3", "garbage") is outcomes[3]  # the newest stay
        assert keyring.check(b"bounded 0", "garbage") is not outcomes[0]  # the oldest went
    finally:
        Keyring.CACHE_SIZE = old_size


# --- verify_envelope: every reason it owns, in the contract's order ------------------------------


def test_accepted(alice: Investigator, keyring: Keyring, acl: Acl) -> None:
    result = verify(signed(action_raw(), alice), keyring, acl)
    assert result == Verified(parse_action(action_raw()), (alice.fingerprint,))


@pytest.mark.parametrize(
    ("envelope", "detail"),
    [
        ("not an envelope", "envelope: expected a JSON object"),
        ({"action": action_raw(), "signatures": [], "x": 1}, "envelope: unknown field 'x'"),
        ({"action": action_raw(extra=1), "signatures": []}, "action: unknown field 'extra'"),
        (
            {"action": action_raw(valid_from=1.5), "signatures": []},
            "action.valid_from: expected an integer, got float",
        ),
        (
            {"action": action_raw(version=True), "signatures": []},
            "action.version: expected an integer, got boolean",
        ),
        (
            {"action": action_raw(), "signatures": "sig"},
            "envelope.signatures: expected an array of at most 16",
        ),
        (
            {"action": action_raw(), "signatures": ["\ud800"]},
            "envelope.signatures[0]: expected an armored signature string",
        ),
    ],
    ids=[
        "not-object",
        "envelope-field",
        "action-field",
        "float",
        "bool-version",
        "sigs",
        "surrogate",
    ],
)
def test_malformed(envelope: Any, detail: str, keyring: Keyring, acl: Acl) -> None:
    err = rejected(envelope, keyring, acl)
    assert (err.reason, err.detail) == ("malformed", detail)


def test_malformed_even_when_validly_signed(
    alice: Investigator, keyring: Keyring, acl: Acl
) -> None:
    envelope = signed(action_raw(), alice)
    envelope["action"]["operations"][0]["params"]["depth"] = 1.0
    assert rejected(envelope, keyring, acl).reason == "malformed"


def test_unsupported_version(alice: Investigator, keyring: Keyring, acl: Acl) -> None:
    err = rejected(signed(action_raw(version=2), alice), keyring, acl)
    assert (err.reason, err.detail) == ("unsupported-version", "version 2 is not supported")
    # a future version may carry fields this agent does not know: still named for its version
    future = {"action": action_raw(version=3, new_field="x"), "signatures": []}
    assert rejected(future, keyring, acl).reason == "unsupported-version"
    # ... but a version 1 action with that field is just malformed
    assert (
        rejected({"action": action_raw(new_field="x"), "signatures": []}, keyring, acl).reason
        == "malformed"
    )


def test_not_yet_valid_respects_skew(alice: Investigator, keyring: Keyring, acl: Acl) -> None:
    envelope = signed(action_raw(), alice)
    verify(envelope, keyring, acl, now=T - 60)
    err = rejected(envelope, keyring, acl, now=T - 61)
    assert (err.reason, err.detail) == ("not-yet-valid", f"valid from {T}, agent time is {T - 61}")
    assert (
        rejected(envelope, keyring, acl, now=T - 1, policy=Policy(skew=0)).reason == "not-yet-valid"
    )
    verify(envelope, keyring, acl, now=T - 600, policy=Policy(skew=600))


def test_expired_after_expire_after(alice: Investigator, keyring: Keyring, acl: Acl) -> None:
    envelope = signed(action_raw(), alice)
    verify(envelope, keyring, acl, now=T + 300)
    err = rejected(envelope, keyring, acl, now=T + 301)
    assert (err.reason, err.detail) == ("expired", f"expired at {T + 300}, agent time is {T + 301}")


def test_expired_over_max_lifetime(alice: Investigator, keyring: Keyring, acl: Acl) -> None:
    verify(signed(action_raw(expire_after=T + 86400), alice), keyring, acl)
    err = rejected(signed(action_raw(expire_after=T + 86401), alice), keyring, acl)
    detail = "lifetime 86401 s exceeds this agent's maximum of 24 h"
    assert (err.reason, err.detail) == ("expired", detail)
    err = rejected(signed(action_raw(), alice), keyring, acl, policy=Policy(max_lifetime=299))
    assert err.detail == "lifetime 5 min exceeds this agent's maximum of 299 s"


def test_time_is_checked_before_signatures(keyring: Keyring, acl: Acl) -> None:
    unsigned = {"action": action_raw(), "signatures": ["garbage"]}
    assert rejected(unsigned, keyring, acl, now=T + 301).reason == "expired"
    assert rejected(unsigned, keyring, acl, now=T - 61).reason == "not-yet-valid"
    assert rejected(unsigned, keyring, acl).reason == "bad-signature"


def test_bad_signature_after_tampering(alice: Investigator, keyring: Keyring, acl: Acl) -> None:
    envelope = signed(action_raw(), alice)
    tampered = copy.deepcopy(envelope)
    tampered["action"]["operations"][0]["params"]["paths"] = ["/"]
    err = rejected(tampered, keyring, acl)
    assert err.reason == "bad-signature"
    assert err.detail.startswith("signature 0: signature by ") and err.detail.endswith(
        "does not match the action"
    )
    # every field is signed, the description and the id included
    for field, value in [
        ("description", "x"),
        ("id", "01JD3M8Q7K2Y5V0C4T6N9P1R3T"),
        ("target", "*"),
    ]:
        other = copy.deepcopy(envelope)
        other["action"][field] = value
        assert rejected(other, keyring, acl).reason == "bad-signature"


def test_one_bad_signature_spoils_the_envelope(
    alice: Investigator, bob: Investigator, keyring: Keyring, acl: Acl
) -> None:
    envelope = signed(action_raw(), alice)
    envelope["signatures"].append(bob.signer.sign_bytes(b"some other action"))
    err = rejected(envelope, keyring, acl)
    assert err.reason == "bad-signature" and err.detail.startswith("signature 1: ")
    envelope["signatures"][1] = "garbage"
    err = rejected(envelope, keyring, acl)
    assert (err.reason, err.detail) == (
        "bad-signature",
        "signature 1: not an ASCII-armored OpenPGP signature",
    )


def test_one_key_signing_twice(
    alice: Investigator, mallory: Investigator, keyring: Keyring, acl: Acl
) -> None:
    envelope = signed(action_raw("file"), alice, alice)
    err = rejected(envelope, keyring, acl)
    assert (err.reason, err.detail) == ("bad-signature", f"key {alice.fingerprint} signed twice")
    assert rejected(signed(action_raw(), mallory, mallory), keyring, acl).reason == "bad-signature"


def test_unknown_signer(
    alice: Investigator, mallory: Investigator, keyring: Keyring, acl: Acl
) -> None:
    err = rejected({"action": action_raw(), "signatures": []}, keyring, acl)
    assert (err.reason, err.detail) == (
        "unknown-signer",
        "no signature was made by a key in this agent's keyring",
    )
    assert rejected(signed(action_raw(), mallory), keyring, acl).reason == "unknown-signer"
    # an unknown key's signature counts for nothing, but does not spoil a known one
    result = verify(signed(action_raw(), mallory, alice), keyring, acl)
    assert result.signers == (alice.fingerprint,)


def test_acl_then_a_second_approver(
    alice: Investigator, bob: Investigator, mallory: Investigator, keyring: Keyring, acl: Acl
) -> None:
    envelope = signed(action_raw("file"), alice)
    err = rejected(envelope, keyring, acl)
    assert (err.reason, err.detail) == ("acl", "module 'file' needs weight 2, signers have 1")
    assert rejected(signed(action_raw("file"), alice, mallory), keyring, acl).reason == "acl"
    envelope["signatures"].append(bob.signer.sign_bytes(parse_action(envelope["action"]).canonical))
    assert verify(envelope, keyring, acl).signers == (alice.fingerprint, bob.fingerprint)


def test_acl_checks_every_operation(alice: Investigator, keyring: Keyring, acl: Acl) -> None:
    raw = action_raw()
    raw["operations"].append({"module": "file", "params": {}})
    err = rejected(signed(raw, alice), keyring, acl)
    assert (err.reason, err.detail) == ("acl", "module 'file' needs weight 2, signers have 1")


def test_envelope_file_round_trip_verifies(
    tmp_path: Path, alice: Investigator, bob: Investigator, keyring: Keyring, acl: Acl
) -> None:
    envelope = bob.signer.sign(
        alice.signer.sign(Envelope(parse_action(action_raw("file", name="Grüße 😀"))))
    )
    path = tmp_path / "envelope.json"
    envelope.save(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert verify(raw, keyring, acl).action.name == "Grüße 😀"


def test_keyring_survives_a_missing_investigators_folder(keys: KeyFactory) -> None:
    folder = keys.home()
    shutil.rmtree(folder)
    empty = Keyring.from_folder(folder, keys.home() / "gnupg")
    assert empty.fingerprints == []
