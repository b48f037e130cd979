"""Read and write inventory files, strictly: every mistake names the file, the key and the problem.

The keys, their kinds and defaults come from the dataclass fields of ``model.py``; this module
only walks the document. Error key paths count hosts from 0, as the TOML array does (``hosts[3]``
is the fourth ``[[hosts]]`` table).
"""

from __future__ import annotations

import difflib
import os
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any

import tomli_w

from inventory.fields import Invalid, key_part, show
from inventory.model import Defaults, Host, Inventory
from inventory.ranges import expand
from protocol.errors import InventoryError

_TOP_KEYS = ("defaults", "hosts")


class _Bad(Exception):
    """A problem at a key path; turned into an InventoryError naming the file at the top."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(problem)
        self.where = where
        self.problem = problem


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Read and validate an inventory file; any problem is one InventoryError, never a traceback."""
    label = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise InventoryError(f"{label}: cannot read the inventory: {err.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InventoryError(
            f"{label}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start})"
        ) from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InventoryError(f"{label}: invalid TOML: {err}") from None
    except RecursionError:
        raise InventoryError(f"{label}: invalid TOML: nested too deeply") from None
    return _build(document, Path(path).absolute(), label)


def dump_inventory(inventory: Inventory | Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write an inventory (or a plain ``{"defaults": ..., "hosts": [...]}`` document) as TOML.

    The document is validated first, so a bad one raises InventoryError and leaves the file
    untouched; the write is atomic. Hosts of an Inventory are written expanded, paths relative to
    the file's folder when they lie inside it, and a host's port/user only when they differ from
    the defaults. Comments of an earlier file are not kept (tomli-w cannot).
    """
    target = Path(path).absolute()
    if isinstance(inventory, Inventory):
        document = _document(inventory, target.parent)
    else:
        document = dict(inventory)
    _build(document, target, os.fspath(path))
    payload = tomli_w.dumps(document).encode("utf-8")
    try:
        _write_atomically(target, payload)
    except OSError as err:
        raise InventoryError(
            f"{os.fspath(path)}: cannot write the inventory: {err.strerror}"
        ) from None


def _write_atomically(target: Path, payload: bytes) -> None:
    """Write beside the target, then rename, so a reader never sees half an inventory."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def _build(document: Mapping[str, Any], path: Path, label: str) -> Inventory:
    try:
        _check_keys(document, _TOP_KEYS, "")
        raw_defaults = document.get("defaults", {})
        defaults = Defaults(**_read_table(raw_defaults, Defaults, "defaults", path.parent, None))
        raw_hosts = document.get("hosts", [])
        if not isinstance(raw_hosts, list):
            raise _Bad("hosts", f"expected an array of tables ([[hosts]]), got {show(raw_hosts)}")
        hosts, origin = _read_hosts(raw_hosts, defaults, path.parent)
        _check_jumps(hosts, origin)
    except _Bad as bad:
        where = f"{bad.where}: " if bad.where else ""
        raise InventoryError(f"{label}: {where}{bad.problem}") from None
    return Inventory(path=path, defaults=defaults, hosts=tuple(hosts))


def _read_hosts(
    raw_hosts: list[Any], defaults: Defaults, base: Path
) -> tuple[list[Host], dict[str, str]]:
    """Expand and check every ``[[hosts]]`` table; ``origin`` maps a name to its key path."""
    hosts: list[Host] = []
    origin: dict[str, str] = {}
    for i, raw in enumerate(raw_hosts):
        where = f"hosts[{i}]"
        values = _read_table(raw, Host, where, base, defaults)
        for host in _expand_host(values, where):
            if host.name in origin:
                raise _Bad(
                    f"{where}.name",
                    f'duplicate host name "{host.name}" (already defined by {origin[host.name]})',
                )
            origin[host.name] = where
            hosts.append(host)
    return hosts, origin


def _expand_host(values: dict[str, Any], where: str) -> list[Host]:
    """One table, one Host per name of its range; the address range moves in step."""
    pattern, address = values.pop("name"), values.pop("address")
    try:
        names = expand(pattern)
    except Invalid as err:
        raise _Bad(f"{where}.name", err.problem) from None
    try:
        addresses = expand(address)
    except Invalid as err:
        raise _Bad(f"{where}.address", err.problem) from None
    if len(addresses) != len(names):
        if len(addresses) == 1:
            problem = (
                f'the name "{pattern}" is a range of {len(names)} hosts, so the address needs a '
                f"range of {len(names)} too (like 10.0.0.[1-{len(names)}])"
            )
        elif len(names) == 1:
            problem = f'the name "{pattern}" has no range, so the address cannot have one'
        else:
            problem = (
                f"a range of {len(addresses)} addresses does not match "
                f'the {len(names)} hosts of the name "{pattern}"'
            )
        raise _Bad(f"{where}.address", problem)
    tags = values.pop("tags", {})
    return [
        Host(name=name, address=addr, tags={**tags, "name": name}, **values)
        for name, addr in zip(names, addresses, strict=True)
    ]


def _check_jumps(hosts: list[Host], origin: dict[str, str]) -> None:
    """Every jump names a host of the inventory, and following jumps never comes back around."""
    jumps = {host.name: host.jump for host in hosts}
    for host in hosts:
        if host.jump is not None and host.jump not in jumps:
            raise _Bad(f"{origin[host.name]}.jump", f'no host named "{host.jump}"')
    for host in hosts:
        chain = [host.name]
        step = host.jump
        while step is not None:
            if step in chain:
                loop = " -> ".join([*chain[chain.index(step) :], step])
                raise _Bad(f"{origin[host.name]}.jump", f"jump cycle: {loop}")
            chain.append(step)
            step = jumps[step]


def _read_table(
    table: Any, cls: type[Defaults] | type[Host], where: str, base: Path, inherit: Defaults | None
) -> dict[str, Any]:
    """Check a TOML table against the fields of ``cls``; returns the values for its constructor."""
    if not isinstance(table, dict):
        raise _Bad(where, f"expected a table, got {show(table)}")
    declared = [f for f in fields(cls) if "kind" in f.metadata]
    _check_keys(table, [f.name for f in declared], where)
    values: dict[str, Any] = {}
    for f in declared:
        if f.name in table:
            try:
                values[f.name] = f.metadata["kind"].load(table[f.name], base)
            except Invalid as err:
                raise _Bad(f"{where}.{f.name}{err.at}", err.problem) from None
        elif f.metadata["inherit"] and inherit is not None:
            values[f.name] = getattr(inherit, f.name)
        elif _required(f):
            raise _Bad(f"{where}.{f.name}", "missing (required)")
    return values


def _required(f: Field[Any]) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _check_keys(table: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    known = list(known)
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f'did you mean "{close[0]}"?' if close else "known keys: " + ", ".join(known)
            path = f"{where}.{key_part(key)}" if where else key_part(key)
            raise _Bad(path, f"unknown key ({hint})")


def _document(inventory: Inventory, base: Path) -> dict[str, Any]:
    """The TOML document of an Inventory, driven by the same field declarations as loading."""
    defaults = inventory.defaults
    doc_defaults = {
        f.name: f.metadata["kind"].dump(getattr(defaults, f.name), base)
        for f in fields(Defaults)
        if getattr(defaults, f.name) is not None
    }
    hosts = []
    for host in inventory.hosts:
        table = {}
        for f in fields(Host):
            value = getattr(host, f.name)
            if value is None or (f.metadata["inherit"] and value == getattr(defaults, f.name)):
                continue
            dumped = f.metadata["kind"].dump(value, base)
            if dumped != {}:
                table[f.name] = dumped
        hosts.append(table)
    return {"defaults": doc_defaults, "hosts": hosts}
