"""The peers benchmark's metering: each tool's client run in the client cgroup, both sides'
CPU, wall and peak RSS read around it (see bench/peers.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cgroup import Cgroup
from bench.peers_clients import ansible_answers, ansible_command, ansible_inventory

CLIENTS = Path(__file__).with_name("peers_clients.py")
NO_ANSWER = '{"found": [], "answered": 0, "failed": ["the client printed nothing: see client.log"]}'


@dataclass
class Sample:
    """One run of one tool on one search: wall to the last answer, CPU per side, peak RSS."""

    wall: float
    client_cpu: float
    endpoint_cpu: float
    rss: int
    found: set[tuple[str, str]]
    answered: int
    failed: list[str] = field(default_factory=list)
    start_wall: float = 0.0  # of which the client's start-up (interpreter, imports)
    start_cpu: float = 0.0


@dataclass
class Sides:
    """The cgroups and the endpoints: the main lab, the one-agent-per-process lab, sshd."""

    client: Cgroup
    endpoints: dict[str, Cgroup] = field(default_factory=dict)


class Runner:
    """Runs one tool's client in the client cgroup and meters both sides."""

    def __init__(self, sides: Sides, work: Path) -> None:
        self.sides, self.work = sides, work

    def _start(self, endpoint: str) -> Callable[[], tuple[float, float, float]]:
        """Start metering; returns a reading: (wall, client CPU, endpoint CPU) since now."""
        client, side = self.sides.client, self.sides.endpoints[endpoint]
        t0, c0, e0 = time.monotonic(), client.cpu(), side.cpu()
        client.sample_peak()
        return lambda: (time.monotonic() - t0, client.cpu() - c0, side.cpu() - e0)

    @contextmanager
    def meter(self, endpoint: str) -> Iterator[Callable[[], tuple[float, float, float]]]:
        try:
            yield self._start(endpoint)
        finally:
            self.sides.client.peak()

    def spawn(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        with (self.work / "client.log").open("a") as log:
            return subprocess.Popen(
                args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=env,
                preexec_fn=self.sides.client.enter,
            )

    def spyglass(self, endpoint: str, spec: dict[str, Any]) -> list[Sample]:
        """Cold, then (if two envelopes) warm on the same pooled connections."""
        path = self._spec(spec)
        samples = []
        with self.meter(endpoint) as reading:
            proc = self.spawn([sys.executable, str(CLIENTS), "spyglass", str(path)])
            assert proc.stdin is not None and proc.stdout is not None
            start = self._started(proc, reading)
            for index in range(len(spec["envelopes"])):
                if index:
                    reading, start = self._restart_meter(endpoint, proc), (0.0, 0.0)
                answer = json.loads(proc.stdout.readline() or NO_ANSWER)
                samples.append(self._sample(reading, answer, start))
            proc.stdin.close()
            proc.wait()
        self.sides.client.kill()
        return samples

    def _restart_meter(
        self, endpoint: str, proc: subprocess.Popen[str]
    ) -> Callable[[], tuple[float, float, float]]:
        """Metering of the next phase, which starts when the client reads its line."""
        self.sides.client.peak()
        reading = self._start(endpoint)
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        return reading

    def pssh(self, spec: dict[str, Any]) -> Sample:
        path = self._spec(spec)
        with self.meter("sshd") as reading:
            proc = self.spawn([sys.executable, str(CLIENTS), "pssh", str(path)])
            start = self._started(proc, reading)
            out, _ = proc.communicate()
            sample = self._sample(reading, json.loads(out or NO_ANSWER), start)
        self.sides.client.kill()
        return sample

    def ansible(self, spec: dict[str, Any], command: str, forks: int) -> Sample:
        inventory = self.work / "ansible-hosts.ini"
        ansible_inventory(inventory, spec["hosts"], spec)
        env = {
            **os.environ,
            "ANSIBLE_HOME": str(self.work / "ansible-home"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.oneline",
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": tempfile.mkdtemp(prefix="sga", dir="/tmp"),
            "ANSIBLE_TIMEOUT": "60",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
        }
        tree = Path(tempfile.mkdtemp(prefix="sgt", dir=self.work))
        with self.meter("sshd") as reading:
            proc = self.spawn(ansible_command(inventory, command, forks, tree), env)
            proc.communicate()
            sample = self._sample(reading, ansible_answers(tree))
        self.sides.client.kill()  # its ssh connection masters outlive it
        return sample

    @staticmethod
    def _started(
        proc: subprocess.Popen[str], reading: Callable[[], tuple[float, float, float]]
    ) -> tuple[float, float]:
        """Wait for the client's ready line: its start-up's wall and client CPU."""
        assert proc.stdout is not None
        proc.stdout.readline()
        wall, client_cpu, _ = reading()
        return wall, client_cpu

    def _sample(
        self,
        reading: Callable[[], tuple[float, float, float]],
        answer: dict[str, Any],
        start: tuple[float, float] = (0.0, 0.0),
    ) -> Sample:
        wall, client_cpu, endpoint_cpu = reading()
        return Sample(
            wall,
            client_cpu,
            endpoint_cpu,
            self.sides.client.peak(),
            {(h, p) for h, p in answer["found"]},
            answer["answered"],
            answer.get("failed", []),
            *start,
        )

    def _spec(self, spec: dict[str, Any]) -> Path:
        path = self.work / "spec.json"
        path.write_text(json.dumps(spec))
        return path
