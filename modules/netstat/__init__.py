"""The ``netstat`` module: local and neighbour addresses, connections and listening sockets.

It reads the live host's network state, whatever the agent's root: a disk image has no sockets.
As in MIG, every value of every parameter is one check; each hit is a row naming the check and
the value that found it, so one action can ask several questions at once.

Sockets come from psutil (``/proc/net/*``); their owners from the socket inodes each process's
``/proc/PID/fd`` links name, read by the operation's child before Landlock hides other
processes' links (``modules.proc_snapshot``): the owning pid is shown where the agent may read
the owner's descriptors (as root, all).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Iterator
from typing import Any

from modules.base import Column, Module, Needs, Param, RunContext
from modules.proc_snapshot import Snapshot, Wants, run_search, take
from modules.regex import text_search
from protocol.errors import ParamError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

CHECKS = (
    "local_mac",
    "neighbor_mac",
    "local_ip",
    "neighbor_ip",
    "connected_ip",
    "listening_port",
    "listening",
)


def _network(value: str) -> IPNetwork:
    """An IP (a one-address network) or a CIDR; host bits are allowed (10.1.2.3/8)."""
    return ipaddress.ip_network(value, strict=False)


def _ip(text: str) -> IPAddress | None:
    """An address as the kernel shows it; IPv4-mapped IPv6 (``::ffff:1.2.3.4``) is IPv4, so a
    v4 CIDR finds peers of dual-stack sockets too."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _in(ip: IPAddress | None, nets: list[tuple[str, IPNetwork]]) -> Iterator[str]:
    """The parameter values whose network holds ``ip``."""
    if ip is None:
        return
    for value, net in nets:
        if ip.version == net.version and ip in net:
            yield value


class NetstatModule(Module):
    """Answers MIG's netstat questions, with the owning process of each socket."""

    name = "netstat"
    needs = Needs(read=("/proc",), sockets=("netlink",), processes=True)
    summary = "Local and neighbour MAC/IP, connected peers and listening ports (live host)"
    params = (
        *Param.each(
            "mac",
            local_mac="Regex on this host's MAC addresses (any case)",
            neighbor_mac="Regex on MAC addresses in the neighbour (ARP/NDP) table (any case)",
        ),
        *Param.each(
            "cidr",
            local_ip="IP or CIDR held by one of this host's interfaces",
            neighbor_ip="IP or CIDR in the neighbour (ARP/NDP) table",
            connected_ip="IP or CIDR of a peer of a TCP connection or connected UDP socket",
        ),
        *Param.each("port", listening_port="TCP port in LISTEN or UDP port bound, IPv4 or IPv6"),
        Param(
            "listening",
            "bool",
            "Every listening socket: TCP in LISTEN and UDP bound without a peer, IPv4 and IPv6",
        ),
    )
    example = {"listening_port": [22], "connected_ip": ["203.0.113.0/24"]}
    columns = (
        Column("check", "Parameter that found the row"),
        Column("value", "Its value that found the row (true for listening)"),
        Column(
            "proto",
            "tcp4, tcp6, udp4, udp6 for sockets; link, inet, inet6 for interface addresses; "
            "arp or ndp for neighbours",
        ),
        Column(
            "local_addr", "Local IP; the MAC for local_mac; the interface for neighbours", "addr"
        ),
        Column("local_port", "Local port", "int"),
        Column("remote_addr", "Peer IP of a socket, or the neighbour's IP", "addr"),
        Column("remote_port", "Peer port", "int"),
        Column(
            "state",
            "TCP state (LISTEN, ESTABLISHED, ...); the interface name for interface addresses; "
            "the MAC and its state for neighbours",
        ),
        Column("pid", "Process owning the socket, where permissions allow", "int"),
        Column("process", "Name of that process"),
    )

    def check(self, params: dict[str, Any]) -> None:
        if not any(params[c] for c in CHECKS):
            raise ParamError(f"{CHECKS[0]}: give at least one of {', '.join(CHECKS)}")

    def snapshot(self, params: dict[str, Any]) -> Snapshot | None:
        if not _asks_sockets(params):
            return None
        return take(Wants(sockets=True))

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        snapshot = ctx.snapshot or self.snapshot(params)
        return run_search(_Search(params, ctx, snapshot), snapshot)


def _asks_sockets(params: dict[str, Any]) -> bool:
    return bool(params["connected_ip"] or params["listening_port"] or params["listening"])


class _Search:
    def __init__(self, params: dict[str, Any], ctx: RunContext, snapshot: Snapshot | None) -> None:
        self.p = params
        self.ctx = ctx
        self.snapshot = snapshot
        self.stats = {"examined": 0, "matches": 0, "errors": 0}
        self._names: dict[int, str | None] = {}

    def run(self) -> None:
        if self.p["local_mac"] or self.p["local_ip"]:
            self._interfaces()
        if self.p["neighbor_mac"] or self.p["neighbor_ip"]:
            self._neighbours()
        if self.snapshot is not None:
            self._sockets(self.snapshot)

    def _row(self, check: str, value: Any, **fields: Any) -> None:
        row = dict.fromkeys(c.name for c in NetstatModule.columns)
        row.update(fields, check=check, value=str(value))
        self.ctx.emit(row)
        self.stats["matches"] += 1

    def _error(self, message: str) -> None:
        self.stats["errors"] += 1
        self.ctx.error(message)

    def _interfaces(self) -> None:
        import psutil  # heavy import, only when a check needs it

        macs = [(v, text_search(v, ignore_case=True)) for v in self.p["local_mac"]]
        nets = [(v, _network(v)) for v in self.p["local_ip"]]
        for iface, addrs in sorted(psutil.net_if_addrs().items()):
            for a in addrs:
                self.stats["examined"] += 1
                if a.family == psutil.AF_LINK:
                    for value, found in macs:
                        if found(a.address):
                            self._row(
                                "local_mac", value, proto="link", local_addr=a.address, state=iface
                            )
                elif a.family in (socket.AF_INET, socket.AF_INET6):
                    proto = "inet" if a.family == socket.AF_INET else "inet6"
                    for value in _in(_ip(a.address), nets):
                        self._row("local_ip", value, proto=proto, local_addr=a.address, state=iface)

    def _neighbours(self) -> None:
        if sys.platform != "linux":
            self._error(f"neighbour table: not supported on {sys.platform}")
            return
        from modules.netstat._linux import neighbours

        table, errors = neighbours()
        for message in errors:
            self._error(message)
        macs = [(v, text_search(v, ignore_case=True)) for v in self.p["neighbor_mac"]]
        nets = [(v, _network(v)) for v in self.p["neighbor_ip"]]
        for n in table:
            self.stats["examined"] += 1
            ip = _ip(n.ip)
            fields = {
                "proto": "ndp" if ip is not None and ip.version == 6 else "arp",
                "local_addr": n.dev,
                "remote_addr": n.ip,
                "state": f"{n.mac} {n.state}" if n.state else n.mac,
            }
            for value, found in macs:
                if found(n.mac):
                    self._row("neighbor_mac", value, **fields)
            for value in _in(ip, nets):
                self._row("neighbor_ip", value, **fields)

    def _sockets(self, snapshot: Snapshot) -> None:
        import psutil  # heavy import, only when a check needs it

        from modules.netstat._linux import connections

        nets = [(v, _network(v)) for v in self.p["connected_ip"]]
        ports = set(self.p["listening_port"])
        try:
            conns = connections(snapshot.sockets)
        except (psutil.Error, OSError) as err:
            self._error(f"sockets: {err}")
            return
        for c in conns:
            self.stats["examined"] += 1
            tcp = c.type == socket.SOCK_STREAM
            proto = ("tcp" if tcp else "udp") + ("6" if c.family == socket.AF_INET6 else "4")
            hits: list[tuple[str, Any]] = []
            if c.raddr:
                hits += [("connected_ip", v) for v in _in(_ip(c.raddr.ip), nets)]
            elif c.laddr and c.laddr.port and (not tcp or c.status == psutil.CONN_LISTEN):
                if c.laddr.port in ports:
                    hits.append(("listening_port", c.laddr.port))
                if self.p["listening"]:
                    hits.append(("listening", "true"))
            for check, value in hits:
                self._row(
                    check,
                    value,
                    proto=proto,
                    local_addr=c.laddr.ip if c.laddr else None,
                    local_port=c.laddr.port if c.laddr else None,
                    remote_addr=c.raddr.ip if c.raddr else None,
                    remote_port=c.raddr.port if c.raddr else None,
                    state=None if c.status == psutil.CONN_NONE else c.status,
                    pid=c.pid,
                    process=self._name(c.pid),
                )

    def _name(self, pid: int | None) -> str | None:
        if pid is None:
            return None
        if pid not in self._names:
            import psutil

            try:
                self._names[pid] = psutil.Process(pid).name()
            except psutil.Error:
                self._names[pid] = None
        return self._names[pid]
