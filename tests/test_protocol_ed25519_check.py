"""The in-process check of investigators' signatures: it may only ever agree with gpg.

Real keys and signatures from gpg; gpg's own verdict (``_check_one``) is the reference each case
is held against. The property that matters: whenever the in-process path names a signer, gpg
names the same one as valid; everything else reaches gpg.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import ed25519_check
from protocol.signing import GpgNeeded, Keyring, SigCheck, _check_one
from tests.support.openpgp import armor, dearmor
from tests.support.protocol_keys import Investigator, KeyFactory

DATA = b'{"action":"in-process check"}'


@pytest.fixture(scope="module")
def packet(alice: Investigator) -> bytes:
    return dearmor(alice.signer.sign_bytes(DATA))


@pytest.fixture(scope="module")
def keyring(keys: KeyFactory, alice: Investigator) -> Keyring:
    return Keyring(keys.home(), [alice.public])


def gpg(home: Path, *args: str, data: bytes = b"") -> str:
    command = ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback"]
    done = subprocess.run([*command, *args], input=data, capture_output=True, check=True)
    return done.stdout.decode()


def new_key(home: Path, user: str, usage: str) -> None:
    """A passphrase-less Ed25519 primary key in ``home``, valid for a day."""
    gpg(home, "--passphrase", "", "--quick-gen-key", user, "ed25519", usage, "1d")


def both(keyring: Keyring, data: bytes, signature: str) -> tuple[str | None, SigCheck]:
    """The in-process verdict and gpg's, on the same keyring."""
    fast = ed25519_check.check(keyring.signing_keys, data, signature)
    return fast, _check_one(keyring._gpg, data, signature)


def test_an_investigators_signature_is_checked_in_process(
    keyring: Keyring, alice: Investigator
) -> None:
    signature = alice.signer.sign_bytes(DATA)
    assert both(keyring, DATA, signature) == (
        alice.fingerprint,
        SigCheck("valid", alice.fingerprint),
    )
    assert ed25519_check.check(keyring.signing_keys, DATA + b" ", signature) is None


@pytest.mark.parametrize(
    "options",
    [
        ("--sig-notation", "case@spyglass.invalid=unusual"),  # a subpacket the path does not know
        ("--textmode",),  # a text signature: gpg normalises line ends
        ("--digest-algo", "SHA1"),
        ("--digest-algo", "SHA512"),  # accepted: a SHA-2 digest
    ],
    ids=["notation", "textmode", "sha1", "sha512"],
)
def test_other_shapes_are_left_to_gpg(
    keyring: Keyring, alice: Investigator, options: tuple[str, ...]
) -> None:
    signature = gpg(alice.home, "--detach-sign", "--armor", *options, data=DATA)
    fast, reference = both(keyring, DATA, signature)
    assert reference == SigCheck("valid", alice.fingerprint)  # gpg accepts each of them
    assert fast == (alice.fingerprint if "SHA512" in options else None)
    if fast is None:  # an agent's event loop is told to hand it to a thread
        with pytest.raises(GpgNeeded):
            keyring.check(DATA, signature, spawn=False)
    assert keyring.check(DATA, signature) == reference
    assert keyring.check(DATA, signature, spawn=False) == reference  # gpg's verdict, kept


def test_a_revoked_key_is_left_to_gpg_which_refuses_it(keys: KeyFactory) -> None:
    """gpg made a revocation certificate with the key; once it is in the folder, no signature
    by that key counts, although each still verifies mathematically."""
    rogue = keys.investigator("Rogue")
    signature = rogue.signer.sign_bytes(DATA)
    certificate = (rogue.home / "openpgp-revocs.d" / f"{rogue.fingerprint}.rev").read_text()
    gpg(rogue.home, "--import", data=certificate.replace(":-----BEGIN", "-----BEGIN").encode())
    revoked = gpg(rogue.home, "--armor", "--export", rogue.fingerprint)
    keyring = Keyring(keys.home(), [revoked])
    assert both(keyring, DATA, signature) == (
        None,
        SigCheck(
            "bad", rogue.fingerprint, f"signature by {rogue.fingerprint}: signing key was revoked"
        ),
    )
    assert keyring.check(DATA, signature).status == "bad"


def test_a_key_is_used_only_between_its_creation_and_its_expiry(keys: KeyFactory) -> None:
    """gpg refuses a key that expired since the keyring was made, and one created in the future
    (a clock problem): the path checks both at each call, not once."""
    home = keys.home()
    new_key(home, "Brief <b@spyglass.invalid>", "sign")
    signature = gpg(home, "--detach-sign", "--armor", data=DATA)
    keyring = Keyring(keys.home(), [gpg(home, "--armor", "--export")])
    (key,) = keyring.signing_keys.values()
    assert key.expires is not None
    now = int(time.time())
    assert ed25519_check.check(keyring.signing_keys, DATA, signature, now) == key.fingerprint
    assert ed25519_check.check(keyring.signing_keys, DATA, signature, key.expires) is None
    assert ed25519_check.check(keyring.signing_keys, DATA, signature, key.created - 1) is None


def test_a_signing_subkey_is_left_to_gpg(keys: KeyFactory) -> None:
    """The path holds primary keys only; gpg credits a subkey's signature to its primary."""
    home = keys.home()
    new_key(home, "Sub <s@spyglass.invalid>", "cert")
    primary = gpg(home, "--list-keys", "--with-colons").split("fpr:::::::::")[1].split(":")[0]
    gpg(home, "--passphrase", "", "--quick-add-key", primary, "ed25519", "sign", "2y")
    signature = gpg(home, "--detach-sign", "--armor", data=DATA)
    keyring = Keyring(keys.home(), [gpg(home, "--armor", "--export")])
    assert keyring.signing_keys == {}  # the primary may certify, not sign
    assert both(keyring, DATA, signature) == (None, SigCheck("valid", primary))


def test_the_unhashed_issuer_must_agree_with_the_signed_one(
    keyring: Keyring, alice: Investigator
) -> None:
    """The issuer key ID outside the signed part can be changed by anyone: the path accepts it
    only when it names the same key as the signed fingerprint."""
    packet = bytearray(dearmor(alice.signer.sign_bytes(DATA)))
    where = packet.find(bytes.fromhex(alice.fingerprint[-16:]), 40)  # the unhashed copy
    assert where > 0
    packet[where] ^= 0x01
    fast, reference = both(keyring, DATA, armor(bytes(packet)))
    assert fast is None and reference.fingerprint == alice.fingerprint


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mangled_signatures_never_pass_where_gpg_refuses(
    keyring: Keyring, packet: bytes, data: st.DataObject
) -> None:
    """Whatever bytes an attacker puts in the armor, the path never raises, and when it names a
    signer, gpg names the same one as valid."""
    mangled = bytearray(packet)
    edits = data.draw(
        st.lists(st.tuples(st.integers(0, len(packet) - 1), st.integers(0, 255)), max_size=3)
    )
    for at, value in edits:
        mangled[at] = value
    cut = data.draw(st.integers(0, len(mangled)))
    signature = armor(bytes(mangled[:cut]) + data.draw(st.binary(max_size=8)))
    fast = ed25519_check.check(keyring.signing_keys, DATA, signature)
    if fast is not None:
        assert _check_one(keyring._gpg, DATA, signature) == SigCheck("valid", fast)
