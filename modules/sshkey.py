"""The ``sshkey`` module: SSH keys on disk, with type, size and OpenSSH SHA256 fingerprint.

Like MIG's sshkey, its point is correlation: a private key's fingerprint on one host, the same
fingerprint in ``authorized_keys`` on others, is who can reach what. Fingerprints are computed as
``ssh-keygen -l`` prints them: ``SHA256:`` + unpadded base64 of the SHA-256 of the key blob.

Every key format keeps or yields the public blob without a passphrase except encrypted PEM:
OpenSSH-format private keys carry it in clear before the encrypted section, unencrypted PEM and
PKCS#8 keys give it through ``cryptography``. For an encrypted PEM key the fingerprint comes from
an adjacent ``.pub`` file when there is one (as MIG did), otherwise it stays unknown.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import os
import re
import struct
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, NamedTuple

from modules.base import Column, LimitReached, Module, Param, RunContext
from modules.fs.params import MAX_DEPTH, PATHS
from modules.fs.walk import Found, Root, read_head, walk
from modules.kinds import parse_fingerprint
from modules.soft_errors import MAX_ERRORS, SoftErrors

#: Files larger than this are not keys (an authorized_keys file may be larger: see below).
MAX_KEY_FILE = 64 * 1024
MAX_AUTHORIZED_FILE = 4 * 1024 * 1024
_HEAD = 64
_AUTHORIZED_NAMES = frozenset({"authorized_keys", "authorized_keys2"})
_HOST_KEY_RE = re.compile(r"ssh_host_\w*key(\.pub)?$")
_OPENSSH_MAGIC = b"openssh-key-v1\0"
_ECDSA_BITS = {"nistp256": 256, "nistp384": 384, "nistp521": 521}
#: Public key algorithms of OpenSSH (the token before the base64 blob on a key line).
_KEY_TYPES = frozenset(
    [
        "ssh-rsa",
        "ssh-dss",
        "ssh-ed25519",
        "ssh-ed448",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    ]
)
_CERT_SUFFIX = "-cert-v01@openssh.com"
_BEGIN_RE = re.compile(rb"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----\r?\n")
_END_RE = re.compile(rb"-----END ([A-Z0-9 ]*)PRIVATE KEY-----")

KeyInfo = tuple[str | None, int | None, str | None]  # type, bits, fingerprint


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class _Wire:
    """Reads SSH wire-format fields (RFC 4251 §5) from a blob; ValueError when it runs short."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def string(self) -> bytes:
        if self.pos + 4 > len(self.data):
            raise ValueError("truncated key blob")
        (n,) = struct.unpack_from(">I", self.data, self.pos)
        start = self.pos + 4
        if start + n > len(self.data):
            raise ValueError("truncated key blob")
        self.pos = start + n
        return self.data[start : self.pos]

    def uint32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise ValueError("truncated key blob")
        (n,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return n

    def mpint_bits(self) -> int:
        return int.from_bytes(self.string(), "big").bit_length()


def describe_blob(blob: bytes) -> KeyInfo:
    """Type, bits and fingerprint of a public key blob (certificates: of the certified key)."""
    wire = _Wire(blob)
    key_type = wire.string().decode("ascii", "replace")
    base = key_type.removesuffix(_CERT_SUFFIX)
    if base != key_type:
        wire.string()  # a certificate's nonce precedes the key fields
    bits: int | None = None
    if base == "ssh-rsa":
        wire.string()  # e
        bits = wire.mpint_bits()
    elif base == "ssh-dss":
        bits = wire.mpint_bits()  # p
    elif base.startswith(("ecdsa-sha2-", "sk-ecdsa-sha2-")):
        bits = _ECDSA_BITS.get(wire.string().decode("ascii", "replace"))
    elif base in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
        bits = 256
    elif base == "ssh-ed448":
        bits = 456
    return key_type, bits, fingerprint(blob)


class KeyLine(NamedTuple):
    """One key line of an authorized_keys or ``.pub`` file."""

    options: list[str]
    """authorized_keys options as written (``from="10.0.0.1"``, ``no-pty``), in file order."""
    type: str
    blob: bytes
    comment: str | None
    """Everything after the key, as written (``deploy@ci``); None when there is nothing."""


def split_key_line(line: str) -> KeyLine | None:
    """``[options] type base64 [comment]`` as a KeyLine; None for anything else.

    Options may hold quoted spaces (``command="a b"``), so the key type is searched token by
    token rather than assumed at a fixed position.
    """
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    tokens = _split(line, str.isspace)
    for i, (token, _) in enumerate(tokens[:-1]):
        if token in _KEY_TYPES or token.endswith(_CERT_SUFFIX):
            encoded, end = tokens[i + 1]
            try:
                blob = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                return None
            options = [o for text, _ in tokens[:i] for o, _ in _split(text, ",".__eq__)]
            return KeyLine(options, token, blob, line[end:].strip() or None)
    return None


def _split(text: str, is_separator: Callable[[str], bool]) -> list[tuple[str, int]]:
    """Non-empty pieces of ``text`` between separators, with the index just past each piece;
    double quotes (with backslash escapes) keep separators inside a piece."""
    out: list[tuple[str, int]] = []
    cur: list[str] = []
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif is_separator(ch) and not quoted:
            if cur:
                out.append(("".join(cur), i))
                cur = []
            continue
        cur.append(ch)
    if cur:
        out.append(("".join(cur), len(text)))
    return out


def pem_blocks(data: bytes) -> Iterator[tuple[str, bytes, bytes]]:
    """(label, armoured block, body) of each PEM private key block: each BEGIN line with the
    first END line of the same label after it. Linear time: the END lines are found in one pass
    first, so a file of BEGIN lines without END is not searched to its end once per line."""
    ends: dict[bytes, list[tuple[int, int]]] = {}
    for m in _END_RE.finditer(data):
        ends.setdefault(m[1], []).append((m.start(), m.end()))
    pos = 0
    for m in _BEGIN_RE.finditer(data):
        if m.start() < pos:
            continue  # inside the block just found
        candidates = ends.get(m[1], [])
        i = bisect.bisect_left(candidates, (m.end(), 0))
        if i < len(candidates):
            body_end, pos = candidates[i]
            yield m[1].decode("ascii").strip(), data[m.start() : pos], data[m.end() : body_end]


def private_keys(label: str, armoured: bytes, body: bytes) -> list[tuple[bool, KeyInfo]]:
    """(encrypted, key info) of the private keys of one PEM block."""
    if label == "OPENSSH":
        return list(_openssh_private(body))
    return [_pem_private(label, armoured, body)]


def _openssh_private(body: bytes) -> Iterator[tuple[bool, KeyInfo]]:
    """The OpenSSH format (PROTOCOL.key): cipher name and public blobs are in clear."""
    raw = base64.b64decode(b"".join(body.split()))
    if not raw.startswith(_OPENSSH_MAGIC):
        raise ValueError("not an openssh-key-v1 private key")
    wire = _Wire(raw[len(_OPENSSH_MAGIC) :])
    cipher = wire.string()
    wire.string()  # kdf name
    wire.string()  # kdf options
    for _ in range(min(wire.uint32(), 16)):
        yield cipher != b"none", describe_blob(wire.string())


def _pem_private(label: str, armoured: bytes, body: bytes) -> tuple[bool, KeyInfo]:
    """Traditional PEM (RSA, DSA, EC) and PKCS#8; the public half needs the key decrypted."""
    guessed = {"RSA": "ssh-rsa", "DSA": "ssh-dss", "EC": "ecdsa"}.get(label)
    if label == "ENCRYPTED" or b"Proc-Type: 4,ENCRYPTED" in body:  # PKCS#8, or PEM headers
        return True, (guessed, None, None)
    # Heavy import, and only needed for PEM keys (OpenSSH-format keys need none of it).
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(armoured, password=None)
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return False, describe_blob(base64.b64decode(line.split()[1]))


def _kind(name: str, parent: str, fallback: str) -> str:
    if _HOST_KEY_RE.fullmatch(name):
        return "host"
    if name in _AUTHORIZED_NAMES or parent == "authorized_keys":
        return "authorized"
    return fallback


class SshKeyModule(Module):
    """Finds authorized_keys entries and private, public and host keys below the given paths."""

    name = "sshkey"
    summary = (
        "SSH keys (authorized, private, public, host): type, bits, fingerprint, comment, options"
    )
    params = (
        replace(PATHS, default=("/root", "/home", "/etc/ssh")),
        replace(MAX_DEPTH, default=8),
        Param(
            "fingerprint",
            "fingerprint",
            "Only keys with this SHA256 fingerprint (SHA256:... as ssh-keygen -l prints it)",
            repeatable=True,
        ),
        MAX_ERRORS,
    )
    example = {"paths": ["/root", "/home"], "max_depth": 4}
    columns = (
        Column("path", "File holding the key, as seen from the agent's root", "path"),
        Column("kind", "authorized (an authorized_keys entry), private, public or host"),
        Column("type", "Key algorithm, e.g. ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256"),
        Column("bits", "Key size in bits", "int"),
        Column("fingerprint_sha256", "SHA256:... as ssh-keygen -l prints it"),
        Column("encrypted", "Private keys: protected by a passphrase", "bool"),
        Column(
            "comment",
            "authorized_keys entries and public keys: the text after the key, as written "
            "(often user@host)",
        ),
        Column(
            "options",
            "authorized_keys entries: their options as written (from=, command=, no-pty, ...)",
            "list",
        ),
    )

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        return _Search(params, ctx).run()


class _Search:
    """One run of the sshkey module."""

    def __init__(self, params: dict[str, Any], ctx: RunContext) -> None:
        self.ctx = ctx
        self.params = params
        self.root = Root(ctx.root)
        self.wanted = {parse_fingerprint(f) for f in params["fingerprint"]}
        self.stats = dict.fromkeys(("files_scanned", "keys_found", "matches", "errors"), 0)
        self._error = SoftErrors(ctx, self.stats, params["max_errors"])

    def run(self) -> dict[str, int]:
        try:
            for found in walk(
                self.root,
                self.params["paths"],
                max_depth=self.params["max_depth"],
                on_error=self._error,
            ):
                self.stats["files_scanned"] += 1
                if self.stats["files_scanned"] % 1024 == 0:
                    self.ctx.progress(self.stats)
                    if self.ctx.cancelled():
                        break
                self._file(found)
        except LimitReached as err:  # the agent's cap, raised by emit
            err.stats = dict(self.stats)
            raise
        return dict(self.stats)

    def _file(self, found: Found) -> None:
        try:
            if not found.is_regular():
                return
            size = found.st.st_size
        except OSError as err:  # gone since listed, or a folder we may list but not search
            self._error(found.shown, err)
            return
        name = os.path.basename(found.shown)
        parent = os.path.basename(os.path.dirname(found.shown))
        authorized = _kind(name, parent, "") == "authorized"
        if size > (MAX_AUTHORIZED_FILE if authorized else MAX_KEY_FILE):
            return
        try:
            head = b"" if authorized else read_head(found, _HEAD)
            armoured = head.startswith(b"-----BEGIN ")
            if not (authorized or armoured or head.split(b" ", 1)[0] in _TYPE_BYTES):
                return
            data = read_head(found, size + 1)
        except OSError as err:
            self._error(found.shown, err)
            return
        if armoured:
            self._private(found.shown, name, parent, data)
        else:
            self._public(found.shown, name, parent, data)

    def _private(self, shown: str, name: str, parent: str, data: bytes) -> None:
        kind = _kind(name, parent, "private")
        for block in pem_blocks(data):
            try:
                keys = private_keys(*block)
            except MemoryError:
                raise
            except Exception as err:  # whatever a hostile key makes a parser (ASN.1, base64)
                self._error(shown, err)  # raise costs that key only, never the sweep
                continue
            for encrypted, info in keys:
                if info[2] is None:
                    info = self._adjacent_pub(shown) or info
                self._emit(shown, kind, info, encrypted)

    def _public(self, shown: str, name: str, parent: str, data: bytes) -> None:
        kind = _kind(name, parent, "public")
        text = data.decode("utf-8", "replace")
        for number, line in enumerate(text.splitlines(), 1):
            parts = split_key_line(line)
            if parts is None:
                if kind == "authorized" and line.strip() and not line.lstrip().startswith("#"):
                    self._error(f"{shown}:{number}", ValueError("not a key line"))
                continue
            options = parts.options if kind == "authorized" else None
            try:
                self._emit(shown, kind, describe_blob(parts.blob), None, parts.comment, options)
            except ValueError as err:
                self._error(f"{shown}:{number}", err)

    def _adjacent_pub(self, shown: str) -> KeyInfo | None:
        """type, bits, fingerprint from ``KEY.pub`` next to an encrypted PEM key, if any."""
        try:
            data = self.root.read(shown + ".pub", MAX_KEY_FILE)
            parts = split_key_line(data.decode("utf-8", "replace"))
            return None if parts is None else describe_blob(parts.blob)
        except (OSError, ValueError):
            return None

    def _emit(
        self,
        shown: str,
        kind: str,
        info: KeyInfo,
        encrypted: bool | None,
        comment: str | None = None,
        options: list[str] | None = None,
    ) -> None:
        self.stats["keys_found"] += 1
        key_type, bits, fp = info
        if self.wanted and fp not in self.wanted:
            return
        self.ctx.emit(
            {
                "path": shown,
                "kind": kind,
                "type": key_type,
                "bits": bits,
                "fingerprint_sha256": fp,
                "encrypted": encrypted,
                "comment": comment,
                "options": options,
            }
        )
        self.stats["matches"] += 1


_TYPE_BYTES = frozenset(t.encode() for t in _KEY_TYPES) | frozenset(
    (t + _CERT_SUFFIX).encode() for t in _KEY_TYPES if not t.startswith("ssh-ed448")
)
