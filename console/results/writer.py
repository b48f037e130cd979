"""Who is writing a run, and whether that console still lives (``results follow``, the TUI).

A run records its writer when it starts or resumes: the process id, the machine's name, what
tells that process from a later one with the same pid, and a heartbeat the writer refreshes while
the run is open. A pid alone lies: after a crash the kernel may give it to an unrelated process.
On the writer's own machine (the same name and boot) the pid *and* its identity (on Linux the
boot id and the start time in clock ticks since boot: exact, and immune to clock changes;
elsewhere psutil's start time to the second) must still match a live process, a zombie counting
as dead. From another machine sharing the store only the heartbeat can tell: a writer silent for
``STALE`` seconds is gone.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

#: Seconds between two heartbeats of a writing console.
HEARTBEAT = 5.0
#: A writer on another machine whose heartbeat is older than this is taken as gone.
STALE = 6 * HEARTBEAT


@dataclass(frozen=True, slots=True)
class Writer:
    pid: int
    host: str
    identity: str
    """When the writing process started (``process_identity``): tells it from a later owner of
    its pid."""
    heartbeat: float

    @classmethod
    def this_process(cls) -> Writer:
        pid = os.getpid()
        return cls(pid, socket.gethostname(), process_identity(pid) or "", time.time())

    @classmethod
    def of_run(cls, run: sqlite3.Row) -> Writer | None:
        """The writer a stored run recorded, or None (a store older than this record)."""
        if run["writer_pid"] is None:
            return None
        return cls(run["writer_pid"], run["writer_host"], run["writer_identity"], run["heartbeat"])

    def alive(self, now: float | None = None) -> bool:
        if self.local:
            return bool(self.identity) and process_identity(self.pid) == self.identity
        return (time.time() if now is None else now) - self.heartbeat < STALE

    @property
    def local(self) -> bool:
        """Whether the writer ran on this machine, since its boot: then its pid can be checked.
        The same name with another boot id is another machine (or a reboot: the heartbeat
        tells, as it does for every other machine)."""
        if self.host != socket.gethostname():
            return False
        boot, mark, _ = self.identity.partition("/")
        return not mark or boot == _boot_id()

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


def process_identity(pid: int) -> str | None:
    """What tells process ``pid`` from any later process given the same pid (its boot and start
    time), or None if there is no such live process."""
    boot = _boot_id()
    if boot is None:
        return _psutil_identity(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no such process
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold anything
    state, start_ticks = fields[0], fields[19]
    return None if state in ("Z", "X") else f"{boot}/{start_ticks}"


def _boot_id() -> str | None:
    """This boot of this machine (Linux), None elsewhere."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _psutil_identity(pid: int) -> str | None:
    import psutil  # heavy, and only where there is no /proc

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return f"{process.create_time():.0f}"
    except psutil.Error:
        return None


def writer_alive(run: sqlite3.Row) -> bool:
    """Whether the console that writes ``run`` still lives; a run without a writer record is
    taken as written by a console that is gone (every console of this version records itself)."""
    writer = Writer.of_run(run)
    return writer is not None and writer.alive()
