"""Which directories the walk must not enter: pseudo and network filesystems.

Their mount points are found in the mount table *before* opening them, so a hung NFS server or a
huge /proc never stalls the walk. Starting paths are never pruned: naming ``/proc`` searches it.
"""

from __future__ import annotations

import os

#: Kernel pseudo filesystems: no evidence on disk, endless or blocking files.
PSEUDO = frozenset(
    [
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "cgroup",
        "cgroup2",
        "securityfs",
        "debugfs",
        "tracefs",
        "configfs",
        "fusectl",
        "bpf",
        "pstore",
        "mqueue",
        "hugetlbfs",
        "binfmt_misc",
        "autofs",
        "efivarfs",
        "selinuxfs",
        "rpc_pipefs",
        "nsfs",
    ]
)
#: Network filesystems: slow, may hang, and another host's data. ``fuse.*`` (sshfs, s3fs,
#: rclone, lxcfs...) counts too; ``fuseblk`` (ntfs-3g on a local disk) does not.
NETWORK = frozenset(
    [
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ncpfs",
        "afs",
        "9p",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "davfs",
    ]
)
#: Where the pseudo filesystems live, for systems without a readable mount table.
FALLBACK_PRUNED = frozenset({"/proc", "/sys", "/dev"})


def never_enter(fstype: str) -> bool:
    """True for filesystem types the walk skips even without xdev."""
    return fstype in PSEUDO or fstype in NETWORK or fstype == "fuse" or fstype.startswith("fuse.")


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo`` octal."""
    if "\\" not in field:
        return field
    raw = field.encode()
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode(errors="surrogateescape")


def parse_mountinfo(text: str) -> dict[str, str]:
    """``/proc/self/mountinfo`` -> {mount point: filesystem type} (the last mount wins)."""
    table: dict[str, str] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if sep and len(fields) >= 5 and right:
            table[_unescape(fields[4])] = right.split()[0]
    return table


def mount_table() -> dict[str, str]:
    """This process's mount points and their types; empty where there is no /proc."""
    # Read raw with os calls: each operation is a fresh child, where text I/O's machinery costs
    # dozens of copy-on-write page faults before the first byte.
    try:
        fd = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    except OSError:
        return {}
    finally:
        os.close(fd)
    return parse_mountinfo(b"".join(chunks).decode(errors="surrogateescape"))
