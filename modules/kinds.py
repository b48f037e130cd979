"""Value kinds of module parameters: what a well-formed value of each kind looks like.

The checks live here, apart from ``Param``, because modules reuse the parsers at run time
(``parse_size``, ``parse_age``): the syntax a value is validated against and the meaning it is
given when a module runs come from the same function.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Literal

from modules import regex

Kind = Literal[
    "path",
    "regex",
    "string",
    "int",
    "bool",
    "size",
    "age",
    "hash",
    "mode",
    "cidr",
    "ip",
    "port",
    "mac",
    "yara",
    "hexbytes",
    "filter",
    "fingerprint",
]

#: Hex digits of each digest a ``hash`` parameter can name (by its name or its suffix).
HASH_HEX_LENGTHS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128, "sha3_256": 64}

#: Largest integer allowed anywhere in an action (DESIGN §2: integers within ±2^53).
MAX_JSON_INT = 2**53

_SIZE_RE = re.compile(r"([<>=])(\d+)([kmgt]?)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_AGE_RE = re.compile(r"([<>])(\d+)([smhdw])")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_HEX_RE = re.compile(r"[0-9a-fA-F]*")
_FINGERPRINT_RE = re.compile(r"(?:SHA256:)?([A-Za-z0-9+/]{43})=?")


def parse_size(text: str) -> tuple[str, int]:
    """``"<10M"`` -> ``("<", 10485760)``; units k, M, G, T are powers of 1024, any case."""
    m = _SIZE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"invalid size {text!r}: expected <N, >N or =N with optional k/M/G/T")
    return m[1], int(m[2]) * _SIZE_UNITS[m[3].lower()]


def parse_age(text: str) -> tuple[str, int]:
    """``"<2d"`` -> ``("<", 172800)``: ``<`` means within that long, ``>`` longer ago."""
    m = _AGE_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"invalid age {text!r}: expected <N or >N with unit s, m, h, d or w")
    return m[1], int(m[2]) * _AGE_UNITS[m[3]]


def parse_fingerprint(text: str) -> str:
    """An OpenSSH SHA256 fingerprint, with or without its prefix and padding, as ``ssh-keygen
    -l`` prints it: ``SHA256:`` and 43 base64 characters."""
    m = _FINGERPRINT_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"expected SHA256: and 43 base64 characters, got {text!r}")
    return "SHA256:" + m[1]


def hash_name(param_name: str) -> str:
    """The digest a hash parameter holds: its own name (``sha256``) or suffix (``exe_sha256``)."""
    for algo in sorted(HASH_HEX_LENGTHS, key=len, reverse=True):
        if param_name == algo or param_name.endswith("_" + algo):
            return algo
    raise ValueError(f"hash parameter {param_name!r} names no known digest")


def _regex(value: str, _name: str) -> None:
    regex.check(value)  # RE2: linear-time matching, or the reason it cannot be


def _path(value: str, _name: str) -> None:
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path: {value!r}")
    if "\0" in value:
        raise ValueError("path contains a NUL byte")


def _hash(value: str, name: str) -> None:
    want = HASH_HEX_LENGTHS[hash_name(name)]
    if not _HEX_RE.fullmatch(value):
        raise ValueError(f"not hexadecimal: {value!r}")
    if len(value) != want:
        raise ValueError(f"expected {want} hex digits, got {len(value)}")


def _hexbytes(value: str, _name: str) -> None:
    if not value or not _HEX_RE.fullmatch(value) or len(value) % 2:
        raise ValueError(f"expected an even number of hex digits: {value!r}")


def _cidr(value: str, _name: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or CIDR network: {value!r}") from None


def _ip(value: str, _name: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"not an IP address: {value!r}") from None


def _port(value: int, _name: str) -> None:
    if not 0 <= value <= 65535:
        raise ValueError(f"port out of range 0-65535: {value}")


def _int(value: int, _name: str) -> None:
    if abs(value) > MAX_JSON_INT:
        raise ValueError(f"integer out of range ±2^53: {value}")


def _yara(value: str, _name: str) -> None:
    import yara  # heavy optional import, only needed when a yara parameter is checked

    try:
        rules = yara.compile(source=value, includes=False)
    except yara.Error as err:
        raise ValueError(f"invalid yara rules: {err}") from None
    if next(iter(rules), None) is None:  # an empty file, or only comments: it would match nothing
        raise ValueError("the rule set holds no rule")


def _size(value: str, _name: str) -> None:
    parse_size(value)


def _age(value: str, _name: str) -> None:
    parse_age(value)


def _fingerprint(value: str, _name: str) -> None:
    parse_fingerprint(value)


def _anything(_value: object, _name: str) -> None:
    """Kinds whose type check is the whole check (string, bool, filter: choices do the rest)."""


#: The JSON type each kind accepts; every other kind takes a string.
JSON_TYPES: dict[Kind, type] = {"int": int, "port": int, "bool": bool}

#: Per-kind semantic check, run after the JSON type check; raises ValueError with the problem.
CHECKS: dict[Kind, Callable[..., None]] = {
    "path": _path,
    "regex": _regex,
    "mode": _regex,
    "mac": _regex,
    "string": _anything,
    "filter": _anything,
    "bool": _anything,
    "int": _int,
    "port": _port,
    "size": _size,
    "age": _age,
    "hash": _hash,
    "cidr": _cidr,
    "ip": _ip,
    "yara": _yara,
    "hexbytes": _hexbytes,
    "fingerprint": _fingerprint,
}
