"""What Landlock hides from a module inspecting other processes, taken before it applies.

Landlock's ptrace scoping denies a confined process ptrace-mode access to every process outside
its domain: opening ``/proc/PID/mem``, ``maps`` or ``environ``, and reading the links
``/proc/PID/exe`` and ``fd/*``. The kernel checks ``mem`` and ``maps`` when they are opened and a
link each time it is read, so what a process opens or reads before ``landlock_restrict_self``
stays usable after it (``tests/test_confinement.py::
test_landlock_keeps_what_was_opened_before_it_and_hides_other_processes_after``).

So the operation child of ``process``, ``netstat`` and ``yara`` takes a ``Snapshot``
(``Module.snapshot``, called by ``agentd.child``) after its fork and before its Landlock, the
zygote's seccomp filter and capability cut already in force. The snapshot holds only what the
kernel formats: the pid list, the zygote's children (``/proc/PID/task/TID/children``), this
process's ancestors (psutil, reading past a name's closing parenthesis), link targets (an
executable's path, ``socket:[INODE]``) and open descriptors. It parses no name,
command line, map or memory and compiles no pattern: the module does that afterwards, confined.
What is taken depends on which of the signed, validated params are given (a memory filter, a
socket check), never on what a value says.

Descriptors count against RLIMIT_NOFILE (its soft limit raised to the hard one first, a few
hundred kept for the module's own work): past it, later processes get none and ``shortfall``
says so once. The memory of the agent's own processes (this child, the zygote, its other
children, their ancestors: ``protected_pids``) is never opened.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

from modules.base import LimitReached

Descriptor = Literal["exe_file", "maps", "mem"]
#: Descriptors kept free for the module itself (a walk's directories, libyara, psutil).
RESERVE = 256
_GONE = (FileNotFoundError, ProcessLookupError)


@dataclass(frozen=True)
class Wants:
    """What to take of each process."""

    exe: bool = False
    """The executable's path (the ``/proc/PID/exe`` link)."""
    exe_file: bool = False
    """A descriptor of the executable, to hash it."""
    maps: bool = False
    """A descriptor of ``/proc/PID/maps``."""
    mem: bool = False
    """A descriptor of ``/proc/PID/mem``."""
    sockets: bool = False
    """The socket inodes each process holds (its ``fd`` links), in psutil's shape."""

    def descriptors(self) -> tuple[Descriptor, ...]:
        return tuple(d for d in ("exe_file", "maps", "mem") if getattr(self, d))


@dataclass
class Handles:
    """One process as the snapshot took it."""

    link: str | None = None
    """The raw ``/proc/PID/exe`` link; "" for a kernel thread, None if unreadable."""
    fds: dict[str, int] = field(default_factory=dict)
    errors: dict[str, OSError] = field(default_factory=dict)

    @property
    def exe(self) -> str | None:
        """The executable's path as psutil shows it: up to a NUL, without the " (deleted)"
        the kernel appends to a removed file's name."""
        if not self.link:
            return self.link
        path = self.link.split("\x00", 1)[0]
        if path.endswith(" (deleted)") and not os.path.exists(path):
            path = path[: -len(" (deleted)")]
        return path

    def fd(self, what: Descriptor) -> int | None:
        """The descriptor taken; None when the process was gone or had none left for it (the
        snapshot's ``shortfall``); the OSError met opening it otherwise."""
        if what in self.errors:
            err = self.errors[what]
            raise OSError(err.errno, err.strerror)
        return self.fds.get(what)

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


@dataclass
class Snapshot:
    processes: dict[int, Handles]
    """Every process listed, by pid in increasing order."""
    protected: frozenset[int]
    """The agent's own processes, whose descriptors were never opened."""
    sockets: dict[str, list[tuple[int, int]]]
    """Socket inode -> [(pid, fd)] (``Wants.sockets``)."""
    shortfall: str | None = None
    """Why some processes have no descriptors (the limit was reached), for one error."""

    def close(self) -> None:
        for handles in self.processes.values():
            handles.close()


def take(wants: Wants) -> Snapshot:
    """The snapshot of every process now running (see the module's docstring)."""
    wanted = wants.descriptors()
    protected = frozenset(protected_pids()) if wanted else frozenset()
    budget, limit = _budget() if wanted else (0, 0)
    processes: dict[int, Handles] = {}
    sockets: dict[str, list[tuple[int, int]]] = {}
    short = 0
    for pid in sorted(int(n) for n in os.listdir("/proc") if n.isdigit()):
        handles = processes[pid] = Handles()
        if wants.exe:
            handles.link = _link(pid)
        if wants.sockets:
            for inode, fd in _socket_inodes(pid):
                sockets.setdefault(inode, []).append((pid, fd))
        if not wanted or pid in protected:
            continue
        if budget < len(wanted):
            short += 1
            continue
        for what in wanted:
            try:
                path = f"/proc/{pid}/{_PATHS[what]}"
                handles.fds[what] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                budget -= 1
            except _GONE:
                pass
            except OSError as err:
                handles.errors[what] = err
    shortfall = None
    if short:
        shortfall = (
            f"{short} of {len(processes)} processes not examined beyond their names: "
            f"the descriptor limit (RLIMIT_NOFILE {limit}) was reached"
        )
    return Snapshot(processes, protected, sockets, shortfall)


_PATHS = {"exe_file": "exe", "maps": "maps", "mem": "mem"}


def _budget() -> tuple[int, int]:
    """Descriptors the snapshot may hold, after raising the soft limit to the hard one; and
    that limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return max(0, soft - len(os.listdir("/proc/self/fd")) - RESERVE), soft


def _link(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except _GONE:
        return ""  # a kernel thread (or gone, then dropped later)
    except OSError:
        return None


def _socket_inodes(pid: int) -> Iterator[tuple[str, int]]:
    """(inode, fd) of each socket ``pid`` holds, as psutil reads them."""
    folder = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(folder)
    except OSError:
        return
    for fd in fds:
        try:
            link = os.readlink(f"{folder}/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link.endswith("]"):
            yield link[8:-1], int(fd)


def read_all(fd: int) -> bytes:
    """All of a /proc file from its start (the kernel hands out about a page per read)."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def agent_pids() -> set[int]:
    """The agent's own operation processes, as a module's child sees them: this one, its parent
    (the zygote) and the parent's other children (concurrent operations, holding other
    actions' parameters). Only this one when the parent is init (an orphan has no zygote)."""
    import psutil  # heavy import, kept out of module loading

    parent = os.getppid()
    if parent == 1:
        return {os.getpid()}
    pids = {os.getpid(), parent}
    try:  # as the kernel lists them: no scan of every process
        for tid in os.listdir(f"/proc/{parent}/task"):
            with open(f"/proc/{parent}/task/{tid}/children", "rb") as f:
                pids.update(int(pid) for pid in f.read().split())
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN (or the parent gone)
        with contextlib.suppress(psutil.Error):  # gone: the parent is still in
            pids.update(c.pid for c in psutil.Process(parent).children())
    return pids


def protected_pids() -> set[int]:
    """Processes whose memory is never read: the agent's own (``agent_pids``) and this one's
    ancestors but init (the agent itself, holding keys and every action)."""
    import psutil  # heavy import, kept out of module loading

    pids = agent_pids()
    with contextlib.suppress(psutil.Error):
        pids.update(p.pid for p in psutil.Process().parents() if p.pid != 1)
    return pids


class Search(Protocol):
    """A module's search over the snapshot: ``run`` fills ``stats``."""

    stats: dict[str, int]

    def run(self) -> None: ...


def run_search(search: Search, snapshot: Snapshot | None) -> dict[str, int]:
    """Run ``search``; its stats go with the agent's LimitReached too, and the snapshot's
    descriptors are closed however it ends."""
    try:
        search.run()
    except LimitReached as err:  # the agent's cap, raised by emit
        err.stats = dict(search.stats)
        raise
    finally:
        if snapshot is not None:
            snapshot.close()
    return dict(search.stats)
