"""The ``agent`` module: who this endpoint is and how its agent is set up, in one row.

``spyglass inventory check`` runs it to confirm a host answers as the one the inventory names.
It describes the live host the agent runs on, not the investigated root. The limits it reports
are those the agent applied to the module's own process (CPU and address-space rlimits, nice),
and so is the kernel confinement it reports: a module sees nothing of the agent's configuration
beyond them.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from typing import Any, ClassVar

from modules.base import Column, Module, Needs, RunContext
from modules.fswatch import LIMITS as WATCH_LIMITS  # the watchers' bounds, enforced by the agent
from protocol import __version__

_OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")
_RLIMITS = (
    ("cpu_seconds", resource.RLIMIT_CPU),
    ("address_space", resource.RLIMIT_AS),
    ("open_files", resource.RLIMIT_NOFILE),
    ("core", resource.RLIMIT_CORE),
)


def os_name() -> str:
    """PRETTY_NAME from os-release, else the system name and release (``Linux 6.1``)."""
    for path in _OS_RELEASE:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    key, _, value = line.strip().partition("=")
                    if key == "PRETTY_NAME" and value:
                        return value.strip().strip("\"'")
        except OSError:
            continue
    return f"{os.uname().sysname} {os.uname().release}"


def uptime() -> int | None:
    """Seconds since boot."""
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return int(float(f.read().split()[0]))
    except (OSError, ValueError, IndexError):
        pass
    import psutil  # heavy import; only where /proc/uptime is missing (macOS)

    return int(time.time() - psutil.boot_time())


def with_prefix(address: str, netmask: str | None) -> str:
    """``address/prefix`` from an address and its netmask as psutil gives them (IPv6 masks too,
    ``ffff:ffff:ffff:ffff::`` -> 64); a link-local zone (``%eth0``) is left out, the row
    naming the interface already."""
    import ipaddress

    ip = ipaddress.ip_address(address.split("%", 1)[0])
    try:
        mask = ipaddress.ip_address(netmask or "")
    except ValueError:
        return str(ip)
    bits = int(mask)
    prefix = bin(bits).count("1")
    if mask.version != ip.version or bits != ((1 << prefix) - 1) << (ip.max_prefixlen - prefix):
        return str(ip)  # not a prefix mask: no length to give
    return f"{ip}/{prefix}"


def addresses() -> list[str]:
    """``iface address/prefix`` for every IPv4 and IPv6 address outside loopback."""
    import ipaddress

    import psutil  # heavy import, kept out of module loading

    out = []
    for iface, addrs in sorted(psutil.net_if_addrs().items()):
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            if ipaddress.ip_address(a.address.split("%", 1)[0]).is_loopback:
                continue
            out.append(f"{iface} {with_prefix(a.address, a.netmask)}")
    return out


def limits() -> list[str]:
    """``name=value`` for the resource limits of this process (soft limit, or unlimited)."""
    out = []
    for name, which in _RLIMITS:
        soft, _hard = resource.getrlimit(which)
        out.append(f"{name}={'unlimited' if soft == resource.RLIM_INFINITY else soft}")
    out.append(f"nice={os.getpriority(os.PRIO_PROCESS, 0)}")
    out += [f"fswatch_{name}={value}" for name, value in WATCH_LIMITS.items()]
    return out


class AgentModule(Module):
    """Reports the endpoint's identity and the agent's health."""

    name = "agent"
    needs = Needs(read=("/etc/os-release", "/usr/lib/os-release", "/proc"), sockets=("netlink",))
    summary = "The endpoint's identity and agent health: host, OS, kernel, uptime, addresses"
    params = ()
    example: ClassVar[dict[str, Any]] = {}
    columns = (
        Column("hostname", "Host name, as the kernel knows it (no resolver lookup)"),
        Column("os", "Operating system, from os-release (PRETTY_NAME)"),
        Column("kernel", "Kernel name, release and machine, as uname -srm"),
        Column("uptime", "Seconds since boot", "int"),
        Column("addresses", "Interface addresses outside loopback: iface address/prefix", "list"),
        Column("agent_version", "spyglass version of the agent"),
        Column("modules", "Modules this agent can run", "list"),
        Column(
            "limits",
            "Resource limits applied to module runs (rlimits, nice) and watchers (fswatch_*)",
            "list",
        ),
        Column(
            "confinement",
            "Kernel confinement of module runs (e.g. landlock-v7 seccomp no-new-privs caps) "
            "and what the kernel lacks",
        ),
    )

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        from modules.registry import all_modules  # the registry imports this module

        uname = os.uname()
        try:
            addrs = addresses()
        except (OSError, ValueError) as err:
            ctx.error(f"addresses: {err}")
            addrs = []
        ctx.emit(
            {
                "hostname": socket.gethostname(),
                "os": os_name(),
                "kernel": f"{uname.sysname} {uname.release} {uname.machine}",
                "uptime": uptime(),
                "addresses": addrs,
                "agent_version": __version__,  # the agent's: modules ship with it
                "modules": [m.name for m in all_modules()],
                "limits": limits(),
                "confinement": ctx.confinement,
            }
        )
        return {"rows": 1}
