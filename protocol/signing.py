"""Detached OpenPGP signing and verification through python-gnupg and the system gpg.

Verification spawns gpg (4-6 ms of CPU), so three layers keep it off the hot path: the one
signature shape investigators' keys make is checked in process (``protocol.ed25519_check``, which
leaves everything else to gpg); a ``Keyring`` is shared by every agent in a process whose
investigators folder has the same contents; and each (keyring, bytes, signature) outcome is
cached, so co-located agents verify an envelope once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gnupg

from protocol import ed25519_check
from protocol.envelope import ARMOR_HEADER, Envelope
from protocol.errors import AlreadySigned, PassphraseNeeded, SigningError

SigStatus = Literal["valid", "bad", "unknown-key", "malformed"]

_PASSPHRASE_FAILURES = frozenset({11, 85, 86, 87, 99, 177, 198, 0x8000 | 102})
"""libgpg-error codes (gpg-error.h) of a ``[GNUPG:] FAILURE sign N`` that mean the key wants a
passphrase: BAD_PASSPHRASE, NO_PIN_ENTRY, PIN_ENTRY, BAD_PIN, CANCELED, NO_PASSPHRASE,
FULLY_CANCELED, and ENOTTY (pinentry has no terminal to ask on)."""


@dataclass(frozen=True, slots=True)
class SigCheck:
    """One signature's outcome; ``fingerprint`` is the primary key's, when gpg could tell it."""

    status: SigStatus
    fingerprint: str | None
    detail: str = ""


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def _scratch_dir() -> str:
    """Signatures go to a file for gpg; prefer tmpfs so nothing lands on disk."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def _gpg(home: str | Path, *, verify_only: bool) -> gnupg.GPG:
    options = ["--no-autostart"] if verify_only else []
    gpg = gnupg.GPG(gnupghome=str(home), options=options)
    gpg.encoding = "utf-8"
    return gpg


def _check_one(gpg: gnupg.GPG, data: bytes, signature: str) -> SigCheck:
    if not signature.lstrip().startswith(ARMOR_HEADER):
        return SigCheck("malformed", None, "not an ASCII-armored OpenPGP signature")
    try:
        armored = signature.encode()
    except UnicodeEncodeError:
        return SigCheck("malformed", None, "signature is not valid Unicode")
    with tempfile.NamedTemporaryFile("wb", dir=_scratch_dir(), suffix=".asc") as sig_file:
        sig_file.write(armored)
        sig_file.flush()
        result = gpg.verify_data(sig_file.name, data)
    # One armored block may hold several signature packets; python-gnupg then reports only the
    # last one, so a second key's signature would be hidden (or credited) without being counted.
    if (result.stderr or "").count("[GNUPG:] NEWSIG") > 1:
        return SigCheck("malformed", None, "more than one signature in one armored block")
    fingerprint = result.pubkey_fingerprint or result.fingerprint or result.key_id or None
    fingerprint = fingerprint.upper() if fingerprint else None
    if result.valid:
        return SigCheck("valid", fingerprint)
    if result.key_status:  # the maths holds, but the key expired or was revoked
        return SigCheck("bad", fingerprint, f"signature by {fingerprint}: {result.key_status}")
    if result.status == "no public key":
        return SigCheck("unknown-key", fingerprint, f"no public key {fingerprint}")
    if result.status == "signature bad":
        return SigCheck("bad", fingerprint, f"signature by {fingerprint} does not match the action")
    return SigCheck("malformed", fingerprint, result.status or "gpg could not read the signature")


class GpgNeeded(Exception):
    """A signature the in-process check does not decide: only a gpg process can."""


class Keyring:
    """A verify-only GNUPGHOME holding the investigators' public keys, one per distinct key set."""

    _shared: dict[str, Keyring] = {}
    _shared_lock = threading.Lock()
    _cache: OrderedDict[tuple[str, str], SigCheck] = OrderedDict()
    _cache_lock = threading.Lock()
    CACHE_SIZE = 4096

    def __init__(self, home: str | Path, armored_keys: list[str]) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.digest = _digest(*sorted(k.encode() for k in armored_keys))
        self._gpg = _gpg(self.home, verify_only=True)
        self.fingerprints: list[str] = []
        for key in armored_keys:
            imported = self._gpg.import_keys(key)
            self.fingerprints.extend(fp.upper() for fp in imported.fingerprints)
        # gpg's own view of the keys it imported (revoked, expiry, may sign) bounds the fast path
        exported = (
            self._gpg.export_keys(self.fingerprints, armor=False) if self.fingerprints else b""
        )
        self.signing_keys = ed25519_check.signing_keys(exported, self._gpg.list_keys())

    @classmethod
    def from_folder(cls, folder: str | Path, homes: str | Path) -> Keyring:
        """The keyring of an investigators folder (``*.asc``), shared with identical folders:
        exactly its keys, in a GNUPGHOME under ``homes`` made afresh for this set of keys (a
        keyring only ever imported into would keep trusting a key removed from the folder)."""
        keys = [p.read_text() for p in sorted(Path(folder).glob("*.asc"))]
        digest = _digest(*sorted(k.encode() for k in keys))
        with cls._shared_lock:
            if digest not in cls._shared:
                home = Path(homes) / digest[:16]
                shutil.rmtree(home, ignore_errors=True)  # left by an earlier process
                cls._shared[digest] = cls(home, keys)
            return cls._shared[digest]

    @classmethod
    def homes_in_use(cls) -> set[Path]:
        with cls._shared_lock:
            return {ring.home for ring in cls._shared.values()}

    def check(self, data: bytes, signature: str, *, spawn: bool = True) -> SigCheck:
        """Verify one detached signature over ``data``; outcomes are cached per keyring.
        ``spawn=False``: GpgNeeded rather than a gpg process, for a caller on an event loop
        that judges the investigators' own signature shape in place and the rest in a thread."""
        key = (self.digest, _digest(data, signature.encode("utf-8", "surrogatepass")))
        with self._cache_lock:
            if (hit := self._cache.get(key)) is not None:
                self._cache.move_to_end(key)
                return hit
        fingerprint = ed25519_check.check(self.signing_keys, data, signature)
        if fingerprint is not None:
            outcome = SigCheck("valid", fingerprint)
        elif not spawn:
            raise GpgNeeded
        else:
            outcome = _check_one(self._gpg, data, signature)
        with self._cache_lock:
            self._cache[key] = outcome
            if len(self._cache) > self.CACHE_SIZE:
                self._cache.popitem(last=False)
        return outcome


class Signer:
    """The investigator's side: signs canonical action bytes with a secret key from GNUPGHOME."""

    def __init__(
        self,
        gnupghome: str | Path | None = None,
        key: str | None = None,
        passphrase: str | None = None,
    ) -> None:
        home = gnupghome or os.environ.get("GNUPGHOME") or Path.home() / ".gnupg"
        if not Path(home).is_dir():
            raise SigningError(
                f"no GnuPG home at {home}: set GNUPGHOME or run `spyglass keys init`"
            )
        self._gpg = _gpg(home, verify_only=False)
        secret = self._gpg.list_keys(secret=True)
        if key:
            matches = [k for k in secret if _key_matches(k, key)]
        else:
            matches = [k for k in secret if "s" in k.get("cap", "") or "S" in k.get("cap", "")]
        if not matches:
            raise SigningError(f"no secret signing key {key or ''} in {home}".replace("  ", " "))
        self.fingerprint: str = matches[0]["fingerprint"].upper()
        self.user: str = (matches[0].get("uids") or [""])[0]
        self._passphrase = passphrase

    def sign_bytes(self, data: bytes) -> str:
        result = self._gpg.sign(
            data, keyid=self.fingerprint, detach=True, passphrase=self._passphrase
        )
        if not result or not result.data:
            stderr = result.stderr or ""
            reason = stderr.strip().splitlines()[-1:] or ["gpg failed"]
            error = (
                PassphraseNeeded if _failure_code(stderr) in _PASSPHRASE_FAILURES else SigningError
            )
            raise error(f"gpg could not sign with {self.fingerprint}: {reason[0]}")
        return str(result.data.decode())

    def sign(self, envelope: Envelope) -> Envelope:
        """Add this investigator's signature, refusing a second one by the same key."""
        data = envelope.action.canonical
        for existing in envelope.signatures:
            if signer_of(self._gpg, data, existing) == self.fingerprint:
                raise AlreadySigned(f"the envelope is already signed by {self.fingerprint}")
        return envelope.with_signature(self.sign_bytes(data))

    def export_public(self) -> str:
        return str(self._gpg.export_keys(self.fingerprint))


def _failure_code(stderr: str) -> int | None:
    """The error code of gpg's ``[GNUPG:] FAILURE sign N`` status line, without its source."""
    for line in stderr.splitlines():
        words = line.split()
        if words[:3] == ["[GNUPG:]", "FAILURE", "sign"] and len(words) == 4 and words[3].isdigit():
            return int(words[3]) & 0xFFFF
    return None


def signer_of(gpg: gnupg.GPG, data: bytes, signature: str) -> str | None:
    """Which primary key made a signature, even when that key is not in ``gpg``'s keyring."""
    return _check_one(gpg, data, signature).fingerprint


def _key_matches(key: dict[str, object], wanted: str) -> bool:
    wanted = wanted.upper().replace(" ", "")
    fpr = str(key.get("fingerprint", "")).upper()
    uids = " ".join(str(u) for u in key.get("uids", []) or [])  # type: ignore[attr-defined]
    return fpr.endswith(wanted) or wanted.lower() in uids.lower()


def generate_key(
    gnupghome: str | Path,
    name: str = "Investigator",
    email: str = "investigator@spyglass.invalid",
    passphrase: str | None = None,
) -> str:
    """Make an ed25519 signing key (the lab's and ``keys init``'s); returns its fingerprint."""
    home = Path(gnupghome)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    gpg = _gpg(home, verify_only=False)
    spec = gpg.gen_key_input(
        key_type="EDDSA",
        key_curve="ed25519",
        key_usage="sign",
        name_real=name,
        name_email=email,
        expire_date="2y",
        no_protection=passphrase is None,
        passphrase=passphrase,
    )
    key = gpg.gen_key(spec)
    if not key.fingerprint:
        raise SigningError(f"gpg could not generate a key in {home}: {key.stderr.strip()[-200:]}")
    return str(key.fingerprint).upper()
