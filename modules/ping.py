"""The ``ping`` module: can this endpoint reach that address and port, and how fast.

MIG's ping, from inside the network segment: a TCP connect (``open``: it answered; ``closed``:
refused, so the host is up but nothing listens; ``timeout``: silence, a filter or nobody), a UDP
datagram (``open``: a reply; ``closed``: an ICMP port unreachable; ``no-reply``: silence, which
UDP cannot tell from a listener that says nothing) or an ICMP echo through the unprivileged
datagram socket (Linux's ``net.ipv4.ping_group_range``; never raw sockets). Only IP addresses:
resolving a name would need DNS, another destination the action did not name.

The one module with outbound network: its child may open IPv4/IPv6 stream and datagram sockets
(``Needs.network``) and, under Landlock ABI 4+, TCP-connect only to the signed ports.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from modules.base import Column, LimitReached, Module, Needs, Param, RunContext
from protocol.errors import ParamError

PROTOCOLS = ("tcp", "udp", "icmp")
MAX_COUNT = 20
MAX_TIMEOUT_MS = 30_000
_ICMP_ECHO = {4: 8, 6: 128}
_ICMP_REPLY = {4: 0, 6: 129}
_ICMP_PROTO = {4: socket.IPPROTO_ICMP, 6: socket.IPPROTO_ICMPV6}
_PAYLOAD = b"spyglass-ping"
#: One attempt, given its sequence number: (status, RTT in ms or None).
Attempt = Callable[[int], tuple[str, str | None]]


def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _ms(start: int) -> str:
    return f"{(time.perf_counter_ns() - start) / 1e6:.3f}"


def tcp_attempt(address: str, port: int, timeout: float) -> tuple[str, str | None]:
    """One connect: (status, rtt in ms or None). A refusal is an answer too: it has an RTT."""
    with socket.socket(_family(address), socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        start = time.perf_counter_ns()
        try:
            sock.connect((address, port))
        except ConnectionRefusedError:
            return "closed", _ms(start)
        except TimeoutError:
            return "timeout", None
        except OSError as err:
            return errno.errorcode.get(err.errno or 0, "error").lower(), None
        return "open", _ms(start)


def udp_attempt(address: str, port: int, timeout: float) -> tuple[str, str | None]:
    """One datagram on a connected socket, so an ICMP port unreachable comes back as a refusal."""
    with socket.socket(_family(address), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        start = time.perf_counter_ns()
        try:
            sock.connect((address, port))
            sock.send(_PAYLOAD)
            sock.recv(512)
        except ConnectionRefusedError:
            return "closed", _ms(start)
        except TimeoutError:
            return "no-reply", None
        except OSError as err:
            return errno.errorcode.get(err.errno or 0, "error").lower(), None
        return "open", _ms(start)


def _ignore_seq(
    attempt: Callable[[str, int, float], tuple[str, str | None]],
    address: str,
    port: int,
    timeout: float,
    _seq: int,
) -> tuple[str, str | None]:
    return attempt(address, port, timeout)


def icmp_socket(address: str) -> socket.socket:
    """An unprivileged ICMP echo socket; PermissionError where the agent's group may not."""
    version = ipaddress.ip_address(address).version
    return socket.socket(_family(address), socket.SOCK_DGRAM, _ICMP_PROTO[version])


def icmp_attempt(
    sock: socket.socket, address: str, seq: int, timeout: float
) -> tuple[str, str | None]:
    """One echo request; the kernel sets the identifier (and the checksum) of a ping socket."""
    version = ipaddress.ip_address(address).version
    packet = struct.pack("!BBHHH", _ICMP_ECHO[version], 0, 0, 0, seq) + _PAYLOAD
    sock.settimeout(timeout)
    start = time.perf_counter_ns()
    try:
        sock.sendto(packet, (address, 0))
        deadline = time.monotonic() + timeout
        while True:
            reply = sock.recv(512)
            echo = len(reply) >= 8 and reply[0] == _ICMP_REPLY[version]
            if echo and struct.unpack_from("!H", reply, 6)[0] == seq:
                return "open", _ms(start)
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
    except TimeoutError:
        return "timeout", None
    except OSError as err:
        return errno.errorcode.get(err.errno or 0, "error").lower(), None


class PingModule(Module):
    """Reachability and round-trip times from the endpoint to one signed destination."""

    name = "ping"
    needs = Needs(network=("tcp", "udp"))
    default_weight = 2  # connections from inside the network: two approvers
    summary = "Reachability and round-trip times of an address (TCP, UDP or ICMP) from the host"
    params = (
        Param("address", "ip", "IP address to reach (no names: no DNS)", required=True),
        Param("port", "port", "Port to reach (TCP, UDP); several: each", repeatable=True),
        Param("protocol", "string", "How to reach it", default="tcp", choices=PROTOCOLS),
        Param("count", "int", f"Attempts per port (at most {MAX_COUNT})", default=3, minimum=1),
        Param(
            "timeout_ms",
            "int",
            f"Wait this long for each answer (at most {MAX_TIMEOUT_MS})",
            default=1000,
            minimum=1,
        ),
    )
    example = {"address": "127.0.0.1", "port": [22], "count": 1, "timeout_ms": 200}
    columns = (
        Column("address", "Destination address", "addr"),
        Column("port", "Destination port (0 for ICMP)", "int"),
        Column("protocol", "tcp, udp or icmp"),
        Column(
            "status",
            "The last answer: open, closed (refused: the host is up); without any, the last "
            "failure: timeout, no-reply (UDP) or an errno name",
        ),
        Column("reachable", "The host answered at least once (open or closed)", "bool"),
        Column("sent", "Attempts made", "int"),
        Column("answered", "Attempts that got an answer", "int"),
        Column("rtt_ms", "Round-trip time of each answered attempt, in ms", "list"),
    )

    def check(self, params: dict[str, Any]) -> None:
        if params["count"] > MAX_COUNT:
            raise ParamError(f"count: at most {MAX_COUNT}, got {params['count']}")
        if params["timeout_ms"] > MAX_TIMEOUT_MS:
            raise ParamError(f"timeout_ms: at most {MAX_TIMEOUT_MS}, got {params['timeout_ms']}")
        if params["protocol"] == "icmp" and params["port"]:
            raise ParamError("port: ICMP has no ports")
        if params["protocol"] != "icmp" and not params["port"]:
            raise ParamError(f"port: {params['protocol']} needs at least one port")

    def connect_ports(self, params: dict[str, Any]) -> tuple[int, ...]:
        return tuple(params["port"]) if params["protocol"] == "tcp" else ()

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        address, protocol = params["address"], params["protocol"]
        timeout = params["timeout_ms"] / 1000
        stats = {"attempts": 0, "answered": 0, "matches": 0, "errors": 0}
        try:
            if protocol == "icmp":
                try:
                    sock = icmp_socket(address)
                except PermissionError as err:
                    ctx.error(
                        f"icmp: no unprivileged ICMP sockets here ({err.strerror}; see "
                        "net.ipv4.ping_group_range)"
                    )
                    stats["errors"] += 1
                    return stats
                with sock:
                    self._destination(
                        params, 0, ctx, stats, lambda seq: icmp_attempt(sock, address, seq, timeout)
                    )
                return stats
            attempt = tcp_attempt if protocol == "tcp" else udp_attempt
            for port in params["port"]:
                once: Attempt = partial(_ignore_seq, attempt, address, port, timeout)
                self._destination(params, port, ctx, stats, once)
        except LimitReached as err:
            err.stats = dict(stats)
            raise
        return stats

    def _destination(
        self,
        params: dict[str, Any],
        port: int,
        ctx: RunContext,
        stats: dict[str, int],
        attempt: Attempt,
    ) -> None:
        """``count`` attempts at one destination, one row: the last answer (else the last
        failure) and every RTT."""
        rtts: list[str] = []
        status, answer, sent = "timeout", None, 0
        for seq in range(params["count"]):
            if ctx.cancelled():
                break
            status, rtt = attempt(seq + 1)
            sent += 1
            stats["attempts"] += 1
            if rtt is not None:
                answer = status
                rtts.append(rtt)
                stats["answered"] += 1
            ctx.progress(stats)
        ctx.emit(
            {
                "address": params["address"],
                "port": port,
                "protocol": params["protocol"],
                "status": answer or status,
                "reachable": bool(rtts),
                "sent": sent,
                "answered": len(rtts),
                "rtt_ms": rtts,
            }
        )
        stats["matches"] += 1
