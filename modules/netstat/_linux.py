"""Linux neighbour table (ARP for IPv4, NDP for IPv6), read over rtnetlink; inet sockets with the
owners a snapshot found.

One ``RTM_GETNEIGH`` dump on an ``AF_NETLINK`` socket gives both families with their state, as
``ip neigh`` shows them, without running a tool: the module's child may execute nothing. Entries
without a link-layer address (INCOMPLETE, FAILED) are dropped: they say a host was looked for,
not that it was seen. The message layouts are the kernel's (``linux/netlink.h``,
``linux/neighbour.h``); a library for them (pyroute2) would be a large dependency for one dump.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_NETLINK_ROUTE = 0
_RTM_NEWNEIGH, _RTM_GETNEIGH = 28, 30
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
_RTATTR = struct.Struct("=HH")  # length, type
_NDA_DST, _NDA_LLADDR = 1, 2
#: ``ndm_state`` bits, named as ``ip neigh`` names them.
_STATES = (
    (0x01, "INCOMPLETE"),
    (0x02, "REACHABLE"),
    (0x04, "STALE"),
    (0x08, "DELAY"),
    (0x10, "PROBE"),
    (0x20, "FAILED"),
    (0x40, "NOARP"),
    (0x80, "PERMANENT"),
)
_RECEIVE = 1 << 16
#: Dump messages read at most, whatever the kernel sends (a table is far smaller).
_MAX_MESSAGES = 1 << 20


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str
    dev: str
    state: str | None


def _align(n: int) -> int:
    return (n + 3) & ~3


def _attributes(data: bytes, offset: int) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each routing attribute from ``offset`` to the end of ``data``."""
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size or offset + length > len(data):
            return
        yield kind, data[offset + _RTATTR.size : offset + length]
        offset += _align(length)


def state_name(state: int) -> str | None:
    """``ndm_state`` as ``ip neigh`` prints it (``STALE``, ``REACHABLE PERMANENT``)."""
    return " ".join(name for bit, name in _STATES if state & bit) or None


def parse_neighbour(payload: bytes, names: dict[int, str]) -> Neighbour | None:
    """One ``RTM_NEWNEIGH`` payload (an ``ndmsg`` and its attributes), or None when it carries
    no IP address or no link-layer address."""
    if len(payload) < _NDMSG.size:
        return None
    family, index, state, _flags, _type = _NDMSG.unpack_from(payload)
    attrs = dict(_attributes(payload, _NDMSG.size))
    dst, lladdr = attrs.get(_NDA_DST), attrs.get(_NDA_LLADDR)
    if family not in (socket.AF_INET, socket.AF_INET6) or not dst or not lladdr:
        return None
    try:
        ip = ipaddress.ip_address(dst)
    except ValueError:
        return None
    return Neighbour(str(ip), lladdr.hex(":"), names.get(index, str(index)), state_name(state))


def parse_dump(data: bytes, sequence: int, names: dict[int, str]) -> tuple[list[Neighbour], bool]:
    """The neighbours in one datagram of the dump answering ``sequence``, and whether it ended
    the dump; OSError when the kernel answered with an error."""
    out: list[Neighbour] = []
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, _flags, seq, _port = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size or offset + length > len(data):
            raise OSError("truncated netlink message")
        payload = data[offset + _NLMSG.size : offset + length]
        offset += _align(length)
        if seq != sequence:
            continue
        if kind == _NLMSG_DONE:
            return out, True
        if kind == _NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", payload) if len(payload) >= 4 else (-1,)
            if code:
                raise OSError(-code, os.strerror(-code))
            continue
        if kind == _RTM_NEWNEIGH:
            entry = parse_neighbour(payload, names)
            if entry is not None:
                out.append(entry)
    return out, False


def neighbours() -> tuple[list[Neighbour], list[str]]:
    """The neighbour table and soft errors met reading it."""
    try:
        names = dict(socket.if_nameindex())
    except OSError:
        names = {}  # interfaces are then shown by their index
    try:
        return _dump(names), []
    except OSError as err:
        return [], [f"neighbour table (rtnetlink): {err.strerror or err}"]


def _dump(names: dict[int, str]) -> list[Neighbour]:
    sequence = 1
    request = _NDMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    header = _NLMSG.pack(
        _NLMSG.size + len(request), _RTM_GETNEIGH, _NLM_F_REQUEST | _NLM_F_DUMP, sequence, 0
    )
    out: list[Neighbour] = []
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_ROUTE
    ) as s:
        s.sendto(header + request, (0, 0))
        for _ in range(_MAX_MESSAGES):
            found, done = parse_dump(s.recv(_RECEIVE), sequence, names)
            out += found
            if done:
                return out
    raise OSError("netlink dump did not end")


def connections(owners: dict[str, list[tuple[int, int]]]) -> list[Any]:
    """``psutil.net_connections("inet")``, each socket's pid and fd taken from ``owners``
    (socket inode -> [(pid, fd)], read before Landlock hid other processes' links) rather than
    from ``/proc/PID/fd`` now. psutil's ``NetConnections`` is private API: its one method
    listing the owners is replaced, its parsing of ``/proc/net/*`` kept."""
    from psutil import _pslinux

    class _Owned(_pslinux.NetConnections):  # type: ignore[misc]
        def get_all_inodes(self) -> dict[str, list[tuple[int, int]]]:
            return owners

    return _Owned().retrieve("inet")  # type: ignore[no-any-return]
