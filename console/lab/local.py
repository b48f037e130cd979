"""The local lab: N real agents on loopback addresses, with an inventory, keys and fake roots.

``spyglass lab up`` is how the demo, the tests and the benchmarks get a fleet. Agents run as
``spyglass-agentd`` processes, many agents per process, each with its own host key, config, state,
audit log and root; the lab returns once every agent listens.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import tomli_w

from console.lab.seed import seed_root
from inventory.loader import dump_inventory
from modules.registry import all_modules
from protocol.errors import ConfigError
from protocol.keyfile import write_private
from protocol.signing import Signer, generate_key

ROLES = ("web", "db", "cache", "worker")
START_TIMEOUT = 120.0
#: More per agent: 10,000 agents took 42 s to listen on a busy 2-core machine.
START_PER_AGENT = 0.01


@dataclass(frozen=True)
class Lab:
    dir: Path

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.toml"

    @property
    def gnupghome(self) -> Path:
        return self.dir / "gnupg"

    def host_dir(self, name: str) -> Path:
        return self.dir / "hosts" / name

    def root(self, name: str) -> Path:
        return self.host_dir(name) / "root"

    @property
    def pids(self) -> list[int]:
        state = self.dir / "lab.json"
        return json.loads(state.read_text())["pids"] if state.exists() else []


def host_name(index: int) -> str:
    return f"lab-{index + 1:03d}"


def host_tags(index: int) -> dict[str, str]:
    """A lab host's tags, written both to the inventory and to the agent (which enforces them)."""
    return {
        "role": ROLES[index % len(ROLES)],
        "env": "prod" if index % 3 else "staging",
        "os": "linux",
    }


def host_address(index: int) -> str:
    """127.0.X.Y, skipping .0, .1 and .255 so no two lab hosts share an address."""
    return f"127.0.{1 + index // 250}.{2 + index % 250}"


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit (inherited by the agents it spawns) to the hard
    limit when the soft one is below ``needed``; ConfigError when even the hard one is."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed or soft == resource.RLIM_INFINITY:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConfigError(
            f"{needed} open files are needed but the hard limit is {hard}:"
            f" raise it (ulimit -Hn {needed} as root, or LimitNOFILE= in the service)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def lab_up(
    directory: str | Path, n: int, *, seed_files: str | Path | None = None, per_process: int = 250
) -> Lab:
    """Create and start a lab of ``n`` agents in ``directory``; returns when all listen."""
    lab = Lab(Path(directory).resolve())
    if lab.pids:
        raise ConfigError(f"a lab is already running in {lab.dir}; `spyglass lab down` it first")
    # Per agent process: a listening socket and one connection per agent, and log, config and
    # key files while starting; with 250 agents per process, 4 descriptors per agent is ample.
    raise_fd_limit(min(n, per_process) * 4 + 64)
    lab.dir.mkdir(parents=True, exist_ok=True)
    console_key = _console_key(lab.dir)
    fingerprint, public_key = _investigator(lab.gnupghome)
    names = [host_name(i) for i in range(n)]
    configs = [
        _write_agent(lab, i, name, public_key, fingerprint, console_key, seed_files)
        for i, name in enumerate(names)
    ]
    procs = [
        _spawn(lab.dir, configs[i : i + per_process], i // per_process)
        for i in range(0, n, per_process)
    ]
    (lab.dir / "lab.json").write_text(json.dumps({"pids": [p.pid for p, _ in procs]}))
    listening = _wait_listening(procs, n)
    _write_inventory(lab, names, listening)
    return lab


def lab_down(directory: str | Path) -> int:
    """Stop every agent process of the lab and the gpg-agent of its investigator key (started by
    signing); returns how many agent processes were running."""
    lab = Lab(Path(directory).resolve())
    pids = lab.pids
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    (lab.dir / "lab.json").unlink(missing_ok=True)
    if lab.gnupghome.is_dir():
        subprocess.run(
            ["gpgconf", "--homedir", str(lab.gnupghome), "--kill", "gpg-agent"],
            capture_output=True,
            check=False,
        )
    return len(pids)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM, and SIGKILL if it still runs after ``grace`` seconds: an agent or an sshd that
    a test or a benchmark started."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _console_key(directory: Path) -> str:
    path = directory / "console_ed25519"
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="spyglass-lab-console")
        write_private(path, key.export_private_key())
        key.write_public_key(str(path) + ".pub")
    return (directory / "console_ed25519.pub").read_text()


def _investigator(gnupghome: Path) -> tuple[str, str]:
    if not gnupghome.exists():
        generate_key(gnupghome, name="Lab Investigator", email="lab@spyglass.invalid")
    signer = Signer(gnupghome)
    return signer.fingerprint, signer.export_public()


def _write_agent(
    lab: Lab,
    index: int,
    name: str,
    public_key: str,
    fingerprint: str,
    console_key: str,
    seed_files: str | Path | None,
) -> Path:
    """A host folder as ``spyglass-agentd init`` would make it, plus the lab's trust and root."""
    home = lab.host_dir(name)
    (home / "investigators").mkdir(parents=True, exist_ok=True)
    (home / "investigators" / "lab.asc").write_text(public_key)
    (home / "authorized_keys").write_text(console_key)
    key_path = home / "ssh_host_ed25519_key"
    if not key_path.exists():
        write_private(key_path, asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    seed_root(home / "root", index, name)
    if seed_files:
        for source in (Path(seed_files) / "_all", Path(seed_files) / name):
            if source.is_dir():
                shutil.copytree(source, home / "root", dirs_exist_ok=True, symlinks=True)
    config = {
        "agent": {
            "name": name,
            "listen": [f"{host_address(index)}:0"],
            "root": "root",
            "host_key": key_path.name,
            "tags": host_tags(index),
            "enforce_target": True,
        },
        "limits": {"module_timeout": 60, "max_concurrent": 8},
        # The lab has one investigator: it cannot give the two approvers that modules such as
        # fswatch and ping want by default (docs/operations.md), so the lab says so explicitly.
        "acl": {
            rule: {"minimum_weight": 1, "investigators": {fingerprint: 1}}
            for rule in ("default", *(m.name for m in all_modules() if m.default_weight > 1))
        },
    }
    path = home / "agentd.toml"
    path.write_bytes(tomli_w.dumps(config).encode())
    return path


def _spawn(
    directory: Path, configs: list[Path], index: int
) -> tuple[subprocess.Popen[bytes], Path]:
    log = directory / f"agents-{index}.log"
    args = [sys.executable, "-m", "agentd.cli"]
    for config in configs:
        args += ["--config", str(config)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return proc, log


def _wait_listening(procs: list[tuple[subprocess.Popen[bytes], Path]], n: int) -> dict[str, str]:
    timeout = START_TIMEOUT + n * START_PER_AGENT
    deadline = time.monotonic() + timeout
    pending = list(procs)
    listening: dict[str, str] = {}
    while pending:
        for proc, log in list(pending):
            text = log.read_text(errors="replace")
            if "\nready\n" in "\n" + text:
                for line in text.splitlines():
                    if line.startswith("listening "):
                        _, name, address = line.split()
                        listening[name] = address
                pending.remove((proc, log))
            elif proc.poll() is not None:
                tail = text.strip().splitlines()[-1:] or ["no output"]
                raise ConfigError(f"a lab agent process exited ({proc.returncode}): {tail[0]}")
        if time.monotonic() > deadline:
            raise ConfigError(f"lab agents did not start within {timeout:.0f} s")
        time.sleep(0.05)
    if len(listening) != n:
        raise ConfigError(f"only {len(listening)} of {n} lab agents listen")
    return listening


def _write_inventory(lab: Lab, names: list[str], listening: dict[str, str]) -> None:
    hosts, known = [], []
    for i, name in enumerate(names):
        address, _, port = listening[name].rpartition(":")
        hosts.append({"name": name, "address": address, "port": int(port), "tags": host_tags(i)})
        host_key = asyncssh.read_private_key(str(lab.host_dir(name) / "ssh_host_ed25519_key"))
        public = host_key.export_public_key().decode().strip()
        known.append(f"[{address}]:{port} {public}\n")
    (lab.dir / "known_hosts").write_text("".join(known))
    dump_inventory(
        {
            "defaults": {
                "user": "spyglass",
                "known_hosts": "known_hosts",
                "client_keys": ["console_ed25519"],
                "connect_timeout": 5,
            },
            "hosts": hosts,
        },
        lab.inventory,
    )


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True
