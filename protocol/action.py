"""The action model (protocol version 1), its strict schema and its canonical bytes.

An action is what an investigator signs, so the schema is exact: unknown fields, wrong types,
floats and oversize values are refused before anything else looks at it. The canonical bytes are
the RFC 8785 (JCS) form; with floats forbidden and object keys restricted to ASCII names, Python's
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` is exactly JCS.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from protocol.errors import ActionError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

MAX_OPERATIONS = 16
MAX_STRING = 65536
MAX_NAME = 256
MAX_DESCRIPTION = 4096
MAX_TARGET = 1024
MAX_DEPTH = 8
MAX_INT = 2**53

_ID_RE = re.compile(r"[A-Za-z0-9-]{8,64}")
_KEY_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True, slots=True)
class Operation:
    """One module invocation; ``params`` are validated later by the module's own declaration."""

    module: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"module": self.module, "params": self.params}


@dataclass(frozen=True)
class Action:
    """A signed request to investigate; every field is covered by the signatures.

    Not slotted, so ``canonical`` and ``operations_digest`` are computed once per object: an agent
    process shares one verified Action between all its agents (``agentd.agent``)."""

    id: str
    name: str
    target: str
    valid_from: int
    expire_after: int
    operations: tuple[Operation, ...]
    description: str = ""
    version: int = PROTOCOL_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "target": self.target,
            "valid_from": self.valid_from,
            "expire_after": self.expire_after,
            "operations": [op.to_dict() for op in self.operations],
        }

    @cached_property
    def canonical(self) -> bytes:
        """What the signatures sign."""
        return canonical_bytes(self.to_dict())

    @cached_property
    def operations_digest(self) -> str:
        """SHA-256 of the operations' canonical bytes: the audit log's params digest."""
        return hashlib.sha256(canonical_bytes([op.to_dict() for op in self.operations])).hexdigest()

    @property
    def modules(self) -> list[str]:
        return [op.module for op in self.operations]


# field name -> (type, max length for strings); the schema of an action, declared once.
_ACTION_FIELDS: dict[str, tuple[type, int]] = {
    "version": (int, 0),
    "id": (str, 64),
    "name": (str, MAX_NAME),
    "description": (str, MAX_DESCRIPTION),
    "target": (str, MAX_TARGET),
    "valid_from": (int, 0),
    "expire_after": (int, 0),
    "operations": (list, 0),
}


_NOUNS = {int: "an integer", str: "a string", list: "an array"}


def new_action_id() -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, Crockford base32, sortable by time."""
    value = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(_ULID_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))


def make_action(
    name: str,
    target: str,
    operations: list[Operation],
    *,
    expire_seconds: int = 300,
    description: str = "",
    now: int | None = None,
) -> Action:
    """Build a fresh action valid from now for ``expire_seconds``."""
    start = int(time.time()) if now is None else now
    action = Action(
        id=new_action_id(),
        name=name,
        description=description,
        target=target,
        valid_from=start,
        expire_after=start + expire_seconds,
        operations=tuple(operations),
    )
    return parse_action(action.to_dict())


def parse_action(raw: object) -> Action:
    """Validate decoded JSON against the action schema; ActionError on any deviation."""
    if not isinstance(raw, dict):
        raise ActionError("action: expected a JSON object")
    _exact_keys(raw, _ACTION_FIELDS.keys(), "action")
    for key, (kind, max_len) in _ACTION_FIELDS.items():
        value = raw[key]
        if not _is_type(value, kind):
            raise ActionError(f"action.{key}: expected {_NOUNS[kind]}, got {_json_type(value)}")
        if kind is str and len(value) > max_len:
            raise ActionError(f"action.{key}: longer than {max_len} characters")
    if not _ID_RE.fullmatch(raw["id"]):
        raise ActionError("action.id: expected 8-64 characters from [A-Za-z0-9-]")
    for key in ("version", "valid_from", "expire_after"):
        _check_json(raw[key], f"action.{key}")
    ops = raw["operations"]
    if not 1 <= len(ops) <= MAX_OPERATIONS:
        raise ActionError(f"action.operations: expected 1-{MAX_OPERATIONS} entries, got {len(ops)}")
    operations = tuple(_parse_operation(op, f"action.operations[{i}]") for i, op in enumerate(ops))
    for key in ("name", "description", "target"):
        _check_json(raw[key], f"action.{key}")
    return Action(
        version=raw["version"],
        id=raw["id"],
        name=raw["name"],
        description=raw["description"],
        target=raw["target"],
        valid_from=raw["valid_from"],
        expire_after=raw["expire_after"],
        operations=operations,
    )


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 bytes of a float-free JSON value (see the module docstring for why this is JCS).

    Keys are put in RFC 8785 order (UTF-16 code units) first, so the result stays JCS for any
    keys: Python's ``sort_keys`` orders by code point, which differs once a key holds a character
    above U+FFFF next to one in U+E000-U+FFFF (RFC 8785 §3.2.3).
    """
    ordered = _jcs_ordered(value)
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()


def _jcs_ordered(value: Any) -> Any:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return {k: _jcs_ordered(value[k]) for k in keys}
    if isinstance(value, list | tuple):
        return [_jcs_ordered(item) for item in value]
    return value


def _parse_operation(raw: object, where: str) -> Operation:
    if not isinstance(raw, dict):
        raise ActionError(f"{where}: expected an object")
    _exact_keys(raw, ("module", "params"), where)
    module, params = raw["module"], raw["params"]
    if not isinstance(module, str) or not _KEY_RE.fullmatch(module):
        raise ActionError(f"{where}.module: expected a module name")
    if not isinstance(params, dict):
        raise ActionError(f"{where}.params: expected an object")
    _check_json(params, f"{where}.params")
    return Operation(module=module, params=params)


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    """Refuse floats, huge integers, long strings, odd keys, lone surrogates and deep nesting."""
    if depth > MAX_DEPTH:
        raise ActionError(f"{where}: nested deeper than {MAX_DEPTH}")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not -MAX_INT <= value <= MAX_INT:
            raise ActionError(f"{where}: integer outside ±2^53")
    elif isinstance(value, float):
        raise ActionError(f"{where}: floats are not allowed in actions")
    elif isinstance(value, str):
        if len(value) > MAX_STRING:
            raise ActionError(f"{where}: string longer than {MAX_STRING} characters")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ActionError(f"{where}: string is not valid Unicode") from None
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
                raise ActionError(f"{where}: key {key!r} is not a [A-Za-z0-9_-] name")
            _check_json(item, f"{where}.{key}", depth + 1)
    else:
        raise ActionError(f"{where}: {type(value).__name__} is not a JSON value")


def _exact_keys(raw: dict[str, Any], expected: Any, where: str) -> None:
    keys, wanted = set(raw), set(expected)
    if unknown := sorted(keys - wanted, key=str):
        raise ActionError(f"{where}: unknown field {unknown[0]!r}")
    if missing := sorted(wanted - keys):
        raise ActionError(f"{where}: missing field {missing[0]!r}")


def _is_type(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    return "null" if value is None else names.get(type(value), "object")
