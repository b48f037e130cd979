"""One cgroup v2 per side of a benchmark: its CPU counts every process it ever held.

A process placed in a cgroup takes every later child with it (forks, zygotes, gpg, sshd's
sessions, ssh connection masters), and the cgroup's ``cpu.stat`` keeps their CPU after they
exit, which no walk over live processes can. The basic ``cpu.stat`` needs no controller, so a
hybrid host's ``/sys/fs/cgroup/unified`` serves as well as a pure v2 ``/sys/fs/cgroup``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import psutil


class CgroupError(RuntimeError):
    """No writable cgroup v2 hierarchy: the benchmark cannot attribute CPU per side."""


def hierarchy() -> Path:
    """The cgroup v2 mount, checked to be writable."""
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[2] == "cgroup2"]
    if not points:
        raise CgroupError("no cgroup v2 hierarchy is mounted (needs /sys/fs/cgroup or .../unified)")
    root = Path(sorted(points, key=len)[0])
    if not os.access(root, os.W_OK):
        raise CgroupError(f"{root} is not writable: run the benchmark as root")
    return root


class Cgroup:
    """A fresh cgroup; ``enter()`` in a child (as ``preexec_fn``) or ``adopt(pid)`` from outside."""

    def __init__(self, name: str) -> None:
        self.path = hierarchy() / f"spyglass-bench-{os.getpid()}-{name}"
        self.path.mkdir()
        self._peak = 0
        self._sampling: threading.Event | None = None

    def enter(self) -> None:
        """Move the calling process in (writing 0 names the writer)."""
        (self.path / "cgroup.procs").write_text("0")

    def adopt(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def cpu(self) -> float:
        """CPU seconds (user + system) of every process that has been in the cgroup."""
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, value = line.split()
            if key == "usage_usec":
                return int(value) / 1e6
        raise CgroupError(f"{self.path}/cpu.stat has no usage_usec")

    def rss(self) -> int:
        """Resident memory of the processes in the cgroup now (the sum of their RSS)."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(psutil.Error):
                total += psutil.Process(pid).memory_info().rss
        return total

    def sample_peak(self, interval: float = 0.1) -> None:
        """Start sampling the cgroup's RSS; ``peak()`` stops and returns the highest sum."""
        self._peak, self._sampling = self.rss(), threading.Event()
        stop = self._sampling

        def loop() -> None:
            while not stop.wait(interval):
                self._peak = max(self._peak, self.rss())

        self._sampler = threading.Thread(target=loop, daemon=True)
        self._sampler.start()

    def peak(self) -> int:
        if self._sampling is not None:
            self._sampling.set()
            self._sampler.join()
            self._sampling = None
        return max(self._peak, self.rss())

    def kill(self) -> None:
        """SIGKILL what is left in the cgroup (only processes this benchmark started)."""
        kill = self.path / "cgroup.kill"
        if kill.exists():
            kill.write_text("1")
        else:
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)

    def remove(self) -> None:
        """Kill what is left and remove the cgroup (waits up to 5 s for the processes to go)."""
        self.kill()
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except OSError:
                threading.Event().wait(0.05)
