"""The ``timedrift`` module: is this host's clock off, against the console's and NTP servers'.

A clock that is off breaks log correlation and the signature windows of actions. The console's
clock comes in the signed params (``console_time_ms``, filled in by the console when it composes
the action, ``Module.stamp``): the endpoint's offset against it includes the action's transit
(signing, sending), so it overstates a clock ahead and understates one behind by that much:
seconds at most for ``spyglass run``, ``inventory check`` measures the same clock with a round
trip on its hello (``now_ms`` answers both, so they agree). For sub-second answers the action
names NTP servers: an SNTP exchange (RFC 4330) over UDP from the endpoint, the one network use
this module declares (``Needs.network``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import struct
import time
from typing import Any

from modules.base import Column, LimitReached, Module, Needs, Param, RunContext
from protocol.errors import ParamError

#: In the agent's environment, shifts this module's clock (and the hello's) by that many ms:
#: the tests' way to put a host's clock off without touching the machine's.
CLOCK_OFFSET_ENV = "SPYGLASS_TEST_CLOCK_OFFSET_MS"
_NTP_EPOCH = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)
_DURATION = re.compile(r"(\d+)(ms|s|m|h)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
MAX_TIMEOUT_MS = 10_000


def now_ms() -> int:
    """This host's clock in ms since the epoch, as the agent reports it everywhere."""
    return time.time_ns() // 1_000_000 + int(os.environ.get(CLOCK_OFFSET_ENV) or 0)


def parse_drift(text: str) -> int:
    """``"5s"`` -> 5000; units ms, s, m, h."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid duration {text!r}: use e.g. 500ms, 5s, 2m, 1h")
    return int(match[1]) * _UNIT_MS[match[2]]


def _to_ntp(ms: int) -> bytes:
    seconds, rest = divmod(ms, 1000)
    return struct.pack("!II", (seconds + _NTP_EPOCH) & 0xFFFFFFFF, (rest << 32) // 1000)


def _from_ntp(data: bytes, at: int) -> float:
    seconds, fraction = struct.unpack_from("!II", data, at)
    return (seconds - _NTP_EPOCH) * 1000 + fraction * 1000 / 2**32


def sntp(address: str, port: int, timeout: float) -> tuple[int, int]:
    """(offset of this clock against the server's, round-trip delay), in ms; OSError or
    ValueError when the server is silent or its answer is not one to our request."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((address, port))
        t1 = now_ms()
        request = b"\x23" + bytes(39) + _to_ntp(t1)  # LI 0, version 4, mode 3 (client)
        sock.send(request)
        reply = sock.recv(512)
        t4 = now_ms()
    if len(reply) < 48 or reply[0] & 7 != 4:
        raise ValueError("not an NTP server reply")
    if reply[24:32] != request[40:48]:
        raise ValueError("the reply is not to our request (origin timestamp differs)")
    if reply[1] == 0:
        raise ValueError(f"kiss-o'-death {reply[12:16].decode('ascii', 'replace')!r}")
    t2, t3 = _from_ntp(reply, 32), _from_ntp(reply, 40)
    server_ahead = ((t2 - t1) + (t3 - t4)) / 2
    return round(-server_ahead), round((t4 - t1) - (t3 - t2))


class TimeDriftModule(Module):
    """This host's clock against the console's and, optionally, NTP servers'."""

    name = "timedrift"
    needs = Needs(network=("udp",))  # SNTP to the servers the action names
    summary = "Clock offset against the console (signed send time) and NTP servers"
    params = (
        Param(
            "console_time_ms",
            "int",
            "The console's clock when it composed the action (filled in by the console)",
            minimum=0,
        ),
        Param("ntp", "ip", "NTP server to ask (IP address); several: each", repeatable=True),
        Param("ntp_port", "port", "Port of the NTP servers", default=123),
        Param("drift", "string", "Report only references off by more than this, e.g. 5s"),
        Param(
            "timeout_ms",
            "int",
            f"Wait this long for each NTP server (at most {MAX_TIMEOUT_MS})",
            default=2000,
            minimum=1,
        ),
    )
    example = {"drift": "5s"}
    columns = (
        Column("reference", "console, or ntp ADDRESS:PORT"),
        Column("offset_ms", "This host's clock minus the reference's, in ms", "int"),
        Column("delay_ms", "Round trip to the NTP server (console: unknown, in the offset)", "int"),
        Column("drifted", "Off by more than --drift", "bool"),
        Column("status", "ok, or why the reference gave no time"),
    )

    def stamp(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"console_time_ms": now_ms(), **params}

    def check(self, params: dict[str, Any]) -> None:
        if params["drift"] is not None:
            try:
                parse_drift(params["drift"])
            except ValueError as err:
                raise ParamError(f"drift: {err}") from None
        if params["timeout_ms"] > MAX_TIMEOUT_MS:
            raise ParamError(f"timeout_ms: at most {MAX_TIMEOUT_MS}, got {params['timeout_ms']}")

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        limit = None if params["drift"] is None else parse_drift(params["drift"])
        stats = {"references": 0, "drifted": 0, "matches": 0, "errors": 0}

        def report(reference: str, offset: int | None, delay: int | None, status: str) -> None:
            stats["references"] += 1
            drifted = offset is not None and limit is not None and abs(offset) > limit
            stats["drifted"] += drifted
            if limit is None or drifted:
                ctx.emit(
                    {
                        "reference": reference,
                        "offset_ms": offset,
                        "delay_ms": delay,
                        "drifted": drifted,
                        "status": status,
                    }
                )
                stats["matches"] += 1

        try:
            if params["console_time_ms"] is not None:
                report("console", now_ms() - params["console_time_ms"], None, "ok")
            for address in params["ntp"]:
                where = f"ntp {address}:{params['ntp_port']}"
                try:
                    offset, delay = sntp(address, params["ntp_port"], params["timeout_ms"] / 1000)
                except (OSError, ValueError) as err:
                    stats["errors"] += 1
                    ctx.error(f"{where}: {getattr(err, 'strerror', None) or err}")
                    report(where, None, None, f"no time: {err}")
                    continue
                report(where, offset, delay, "ok")
                ctx.progress(stats)
        except LimitReached as err:
            err.stats = dict(stats)
            raise
        return stats
