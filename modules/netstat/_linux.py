"""Linux neighbour table (ARP for IPv4, NDP for IPv6).

``ip -j neigh`` gives both families with their state; ``/proc/net/arp`` is the fallback when
iproute2 is missing (IPv4 only). Entries without a link-layer address (INCOMPLETE, FAILED) are
dropped: they say a host was looked for, not that it was seen.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass

PROC_ARP = "/proc/net/arp"
_ATF_COM = 0x2  # /proc/net/arp flag: entry complete
_IP_TIMEOUT = 10


@dataclass(frozen=True)
class Neighbour:
    ip: str
    mac: str
    dev: str
    state: str | None


def parse_proc_arp(text: str) -> list[Neighbour]:
    """Rows of /proc/net/arp that are complete."""
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 6:
            continue
        try:
            flags = int(f[2], 16)
        except ValueError:
            continue
        if flags & _ATF_COM and f[3] != "00:00:00:00:00:00":
            out.append(Neighbour(f[0], f[3].lower(), f[5], None))
    return out


def parse_ip_neigh_json(text: str) -> list[Neighbour]:
    """Entries of ``ip -j neigh show`` that carry a link-layer address."""
    out = []
    for entry in json.loads(text or "[]"):
        if not isinstance(entry, dict) or not entry.get("lladdr") or not entry.get("dst"):
            continue
        state = entry.get("state")
        out.append(
            Neighbour(
                str(entry["dst"]),
                str(entry["lladdr"]).lower(),
                str(entry.get("dev", "")),
                " ".join(state) if isinstance(state, list) and state else None,
            )
        )
    return out


def neighbours() -> tuple[list[Neighbour], list[str]]:
    """The neighbour table and soft errors met reading it."""
    errors: list[str] = []
    ip = shutil.which("ip")
    if ip is not None:
        try:
            done = subprocess.run(
                [ip, "-j", "neigh", "show"],
                capture_output=True,
                text=True,
                timeout=_IP_TIMEOUT,
                check=True,
                stdin=subprocess.DEVNULL,
            )
            return parse_ip_neigh_json(done.stdout), errors
        except (OSError, subprocess.SubprocessError, ValueError) as err:
            errors.append(f"ip neigh: {err}")
    try:
        with open(PROC_ARP, encoding="ascii", errors="replace") as f:
            return parse_proc_arp(f.read()), errors
    except OSError as err:
        errors.append(f"{PROC_ARP}: {err.strerror or err}")
        return [], errors
