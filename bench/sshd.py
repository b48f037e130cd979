"""One OpenSSH sshd on loopback for the peers benchmark, and a host alias per lab host.

The configuration is Debian's defaults except what a benchmark on one machine needs: its own
host key, port and authorized key; ``MaxStartups`` raised so that hundreds of simultaneous
handshakes are not dropped; no PAM or last-login lookup (no login session is wanted); no
StrictModes (its keys live under /tmp); and ``SetEnv HOME=`` an empty directory, so that a heavy
shell profile does not inflate the sessions' cost.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from console.lab.local import stop_process

SSHD = "/usr/sbin/sshd"
INSTALL = "apt-get update && apt-get install -y openssh-server"


def missing() -> str | None:
    """Why sshd cannot run here, or None."""
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        return f"OpenSSH's sshd is not installed ({INSTALL})"
    return None


@dataclass(frozen=True)
class Sshd:
    proc: subprocess.Popen[bytes]
    port: int
    client_key: Path
    known_hosts: Path
    user: str

    def stop(self) -> None:
        stop_process(self.proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(directory: Path, preexec: Callable[[], None] | None = None) -> Sshd:
    """Start sshd in ``directory`` (keys, config, empty home) on a free loopback port."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key, client_key = directory / "ssh_host_ed25519_key", directory / "client_ed25519"
    for key in (host_key, client_key):
        if not key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
    home = directory / "empty-home"
    home.mkdir(exist_ok=True)
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    port = free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"PidFile {directory / 'sshd.pid'}\nAuthorizedKeysFile {client_key}.pub\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\n"
        "PrintMotd no\nPrintLastLog no\n"
        f"MaxStartups 4096\nMaxSessions 16\nSetEnv HOME={home}\nSubsystem sftp internal-sftp\n"
    )
    proc = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)],
        stdin=subprocess.DEVNULL,
        stderr=(directory / "sshd.log").open("wb"),
        preexec_fn=preexec,
    )
    public = (directory / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    known = directory / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {' '.join(public)}\n")
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (directory / "sshd.log").read_text(errors="replace")
                raise RuntimeError(f"sshd did not start: {log.strip()[-500:]}") from None
            time.sleep(0.05)
    return Sshd(proc, port, client_key, known, getpass.getuser())
