"""Kernel confinement of an operation's child: no-new-privs, capabilities, Landlock, seccomp.

A child forked by the zygote confines itself before its module sees the request's params: it may
read below the agent's root and what its module declares (``modules.base.Needs``), and do
nothing else. The layers, as ``spyglass run agent`` names them:

- ``landlock-vN``: read-only beneath the root, the declared paths and the interpreter's own
  code; execute only the declared tools; no write, create, remove, rename or truncate anywhere
  (truncate from ABI 3), no TCP bind or connect (ABI 4+) but connect to the ports a module
  declaring ``tcp`` names in its signed params, no abstract unix sockets or signals
  out of the child (ABI 6+). Landlock's ptrace scoping also denies the child ptrace-mode
  access to every process outside its domain (opening ``/proc/PID/mem`` or ``maps``, reading
  the ``exe`` and ``fd/*`` links): a module inspecting other processes (``Needs.processes``)
  takes what it needs of them (``modules.proc_snapshot``) after the fork and before Landlock,
  reading only kernel-formatted links and opening descriptors, and parses every name, map and
  byte of memory confined;
- ``seccomp``: two stacked filters, the zygote's (inherited) and the module's, denying with an
  errno (never a kill, so refusals are testable): exec (unless a tool is declared), ptrace,
  mount and namespace calls, bpf, keys, module loading, kexec, io_uring (whose operations would
  bypass the filter), uid/gid/capability changes, raising rlimits, every change to the file
  system (create, remove, rename, link, truncate, chmod, chown, xattrs, times), signals where
  Landlock does not scope them, and sockets other than the declared AF_UNIX/AF_NETLINK (and, for
  a module declaring ``network``, AF_INET/AF_INET6 stream or datagram sockets, never raw). Where
  Landlock is not in force, opening a file for writing is denied here too;
- ``no-new-privs``: no exec can gain privileges (setuid binaries, file capabilities);
- ``caps``: every capability dropped, bounding set included, but CAP_DAC_READ_SEARCH (read any
  file) and, for modules that inspect other processes, CAP_SYS_PTRACE.

Bindings: direct system calls through ctypes, in this one file. libseccomp's own Python binding
is not on PyPI (it builds against libseccomp's headers, which CI does not have), ``pyseccomp``
has not been released since 2021, and the Landlock packages on PyPI are pre-releases or a few
months old and do not all cover ABI 6's scoping. The filters deny about a hundred system calls
by their x86_64 numbers (checked against the C headers by
``tests/test_confinement.py::test_syscall_numbers_match_the_c_headers``); elsewhere seccomp is
reported unavailable rather than guessed.

Cost: the zygote confines itself once (no-new-privs, bounding set, capabilities, its filter) and
builds, before any fork, each module's BPF program and capset arguments and, per module and root,
its Landlock ruleset (``prepare``, ``ruleset_for``). A child then only stats its root (to find
the ruleset), calls capset and landlock_restrict_self, closes the zygote's descriptors and
installs its filter (``bench/child_start.py`` measures it, and the snapshot a module inspecting
processes takes first).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import shutil
import stat
import struct
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from modules.base import Module, Needs

#: In the agent's environment, makes the agent act as if the kernel lacked Landlock (value
#: ``landlock``), seccomp (``seccomp``) or both (any other value): the tests of honest
#: degradation, of ``require_confinement`` and of each layer alone use it.
UNAVAILABLE_ENV = "SPYGLASS_TEST_NO_CONFINEMENT"

# prctl options and capability numbers (linux/prctl.h, linux/capability.h).
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_PR_GET_SECCOMP = 21
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_CAP_DAC_READ_SEARCH = 2
_CAP_SETPCAP = 8
_CAP_SYS_PTRACE = 19
_CAPABILITY_VERSION_3 = 0x20080522

# Landlock (linux/landlock.h); the system call numbers are the same on every architecture.
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH, _RULE_NET_PORT = 1, 2
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
#: Every filesystem right of each ABI: 13 in v1, REFER in v2, TRUNCATE in v3, IOCTL_DEV in v5.
_FS_RIGHTS = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | (1 << 14) | (1 << 15)

#: Readable in every Landlock-confined child: the interpreter, its libraries and the agent's own
#: code (no secret), so a module's lazy imports still load. Never writable.
_RUNTIME_LIBS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPort(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
_libc.capget.argtypes = _libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def _prctl(option: int, arg: int = 0, arg2: int = 0) -> None:
    _check(_libc.prctl(option, arg, arg2, 0, 0), f"prctl({option})")


# --- What the kernel offers ---------------------------------------------------------------


@dataclass(frozen=True)
class Support:
    """What this kernel offers, probed once per process."""

    landlock: int
    """Landlock ABI version, 0 when unavailable."""
    seccomp: bool
    missing: tuple[str, ...]
    """Why a layer is unavailable, one line each (logged once by the zygote)."""


_support: Support | None = None


def support() -> Support:
    """Probe Landlock's ABI and seccomp once (the test knob ``UNAVAILABLE_ENV`` hides both)."""
    global _support
    if _support is None:
        _support = _probe()
    return _support


def _probe() -> Support:
    knob = os.environ.get(UNAVAILABLE_ENV, "")
    hide = {knob} & {"landlock", "seccomp"} or ({"landlock", "seccomp"} if knob else set())
    missing = [f"{layer}: disabled by {UNAVAILABLE_ENV}" for layer in sorted(hide)]
    abi = 0
    if "landlock" not in hide:
        abi = _libc.syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
        if abi < 0:
            code = ctypes.get_errno()
            reason = {
                errno.ENOSYS: "the kernel has no Landlock",
                errno.EOPNOTSUPP: "Landlock is disabled at boot (lsm=)",
            }.get(code, os.strerror(code))
            missing.append(f"landlock: {reason}")
            abi = 0
    seccomp = False
    if "seccomp" not in hide:
        if platform.machine() != "x86_64":
            missing.append(f"seccomp: no system call table for {platform.machine()}")
        elif _libc.prctl(_PR_GET_SECCOMP, 0, 0, 0, 0) < 0:
            missing.append("seccomp: the kernel has no seccomp filters")
        else:
            seccomp = True
    return Support(int(abi), seccomp, tuple(missing))


# --- The seccomp program -------------------------------------------------------------------

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_LD_ABS, _JEQ, _JGE, _JSET, _RET, _AND = 0x20, 0x15, 0x35, 0x45, 0x06, 0x54
_NR, _ARCH = 0, 4

#: x86_64 numbers of the denied system calls (asm/unistd_64.h).
SYSCALLS = {
    "execve": 59, "execveat": 322, "ptrace": 101, "process_vm_readv": 310,
    "process_vm_writev": 311, "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
    "unshare": 272, "setns": 308, "open_tree": 428, "move_mount": 429, "fsopen": 430,
    "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442, "bpf": 321,
    "perf_event_open": 298, "userfaultfd": 323, "keyctl": 250, "add_key": 248,
    "request_key": 249, "init_module": 175, "finit_module": 313, "delete_module": 176,
    "kexec_load": 246, "kexec_file_load": 320, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_by_handle_at": 304, "name_to_handle_at": 303,
    "pidfd_getfd": 438, "swapon": 167, "swapoff": 168, "reboot": 169, "sethostname": 170,
    "setdomainname": 171, "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305,
    "adjtimex": 159, "acct": 163, "quotactl": 179, "iopl": 172, "ioperm": 173,
    "fanotify_init": 300, "uselib": 134, "setuid": 105, "setgid": 106, "setreuid": 113,
    "setregid": 114, "setgroups": 116, "setresuid": 117, "setresgid": 119, "setfsuid": 122,
    "setfsgid": 123, "capset": 126, "setrlimit": 160, "prlimit64": 302,
    "creat": 85, "mkdir": 83, "mkdirat": 258, "rmdir": 84, "unlink": 87, "unlinkat": 263,
    "rename": 82, "renameat": 264, "renameat2": 316, "link": 86, "linkat": 265, "symlink": 88,
    "symlinkat": 266, "mknod": 133, "mknodat": 259, "truncate": 76, "ftruncate": 77,
    "fallocate": 285, "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452,
    "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260, "utime": 132, "utimes": 235,
    "futimesat": 261, "utimensat": 280, "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190,
    "removexattr": 197, "lremovexattr": 198, "fremovexattr": 199,
    "open": 2, "openat": 257, "openat2": 437, "socket": 41, "socketpair": 53,
    "kill": 62, "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
    "pidfd_send_signal": 424, "landlock_add_rule": 445, "memfd_create": 319,
    "memfd_secret": 447,
}  # fmt: skip

#: Denied to the zygote and so to every child (inherited across fork): nothing the zygote does.
_ZYGOTE_DENIED = (
    "ptrace", "process_vm_writev", "mount", "umount2", "pivot_root", "chroot", "unshare",
    "setns", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "mount_setattr", "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key",
    "request_key", "init_module", "finit_module", "delete_module", "kexec_load",
    "kexec_file_load", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "open_by_handle_at", "name_to_handle_at", "pidfd_getfd", "swapon", "swapoff", "reboot",
    "sethostname", "setdomainname", "settimeofday", "clock_settime", "clock_adjtime",
    "adjtimex", "acct", "quotactl", "iopl", "ioperm", "fanotify_init", "uselib", "setuid",
    "setgid", "setreuid", "setregid", "setgroups", "setresuid", "setresgid", "setfsuid",
    "setfsgid",
)  # fmt: skip
#: Changes to the filesystem, denied to the zygote too: EACCES, as Landlock would answer.
_FS_DENIED = (
    "creat", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat",
    "renameat2", "link", "linkat", "symlink", "symlinkat", "mknod", "mknodat", "truncate",
    "ftruncate", "fallocate", "chmod", "fchmod", "fchmodat", "fchmodat2", "chown", "fchown",
    "lchown", "fchownat", "utime", "utimes", "futimesat", "utimensat", "setxattr", "lsetxattr",
    "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
)  # fmt: skip
#: Signals out of the child: Landlock's signal scope covers them from ABI 6 on.
_SIGNALS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_send_signal")
#: open flags that could change a file: O_WRONLY, O_RDWR, O_CREAT, O_TRUNC, O_APPEND.
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_FAMILIES = {"unix": 1, "netlink": 16}
_AF_INET, _AF_INET6 = 2, 10
#: Socket types of each network need (SOCK_STREAM, SOCK_DGRAM); the low bits of socket()'s type,
#: the rest being SOCK_NONBLOCK and SOCK_CLOEXEC.
_SOCK_TYPES = {"tcp": 1, "udp": 2}
_SOCK_TYPE_MASK = 0xF


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _arg(index: int, high: bool = False) -> int:
    return 16 + 8 * index + (4 if high else 0)


_ALLOW = _insn(_RET, _RET_ALLOW)
_EPERM = _insn(_RET, _RET_ERRNO | errno.EPERM)
#: Every program starts here: only native x86_64 system calls (not i386's int 0x80, not x32).
_PROLOGUE = [
    _insn(_LD_ABS, _ARCH),
    _insn(_JEQ, _AUDIT_ARCH_X86_64, 1, 0),
    _EPERM,
    _insn(_LD_ABS, _NR),
    _insn(_JGE, _X32_BIT, 0, 1),
    _EPERM,
]


def _deny(name: str, code: int = errno.EPERM) -> list[bytes]:
    return [_insn(_JEQ, SYSCALLS[name], 0, 1), _insn(_RET, _RET_ERRNO | code)]


def _guarded(name: str, checks: list[bytes]) -> list[bytes]:
    """``checks`` run only for system call ``name``; they end in a return of their own."""
    return [_insn(_JEQ, SYSCALLS[name], 0, len(checks)), *checks]


def zygote_program() -> bytes:
    """The filter the zygote installs on itself, inherited by every child: what no part of an
    agent's operations ever needs."""
    prog = [*_PROLOGUE]
    for name in _ZYGOTE_DENIED:
        prog += _deny(name)
    for name in _FS_DENIED:
        prog += _deny(name, errno.EACCES)
    return b"".join([*prog, _ALLOW])


def child_program(
    needs: Needs, *, landlock: bool, exec_allowed: bool, signals_scoped: bool
) -> bytes:
    """The filter a child adds on top of the zygote's for a module with ``needs``. Filters
    stack: a call runs only if every one allows it."""
    prog = [*_PROLOGUE]
    denied = ["capset", "setrlimit", "landlock_add_rule"]
    if exec_allowed:  # an anonymous file escapes Landlock's execute right: none may be made
        denied += ["memfd_create", "memfd_secret"]
    else:
        denied += ["execve", "execveat"]
    if not needs.processes:
        denied.append("process_vm_readv")
    if not signals_scoped:
        denied += _SIGNALS
    for name in denied:
        prog += _deny(name)
    # prlimit64(pid, resource, new, old): reading is fine, setting is not.
    hi, lo = _insn(_LD_ABS, _arg(2, high=True)), _insn(_LD_ABS, _arg(2))
    prog += _guarded(
        "prlimit64", [lo, _insn(_JEQ, 0, 0, 2), hi, _insn(_JEQ, 0, 1, 0), _EPERM, _ALLOW]
    )
    if not landlock:  # then no other layer stops a write, so the open flags must
        eacces = _insn(_RET, _RET_ERRNO | errno.EACCES)
        for name, flags in (("open", 1), ("openat", 2)):
            prog += _guarded(
                name,
                [_insn(_LD_ABS, _arg(flags)), _insn(_JSET, _WRITE_FLAGS, 0, 1), eacces, _ALLOW],
            )
        prog += _deny("openat2", errno.ENOSYS)  # its flags hide behind a pointer: callers fall back
    for name in ("socket", "socketpair"):
        prog += _guarded(name, _socket_checks(needs))
    return b"".join([*prog, _ALLOW])


def _socket_checks(needs: Needs) -> list[bytes]:
    """socket(family, type, protocol): the declared local families; AF_INET/AF_INET6 only for a
    module declaring ``network``, and then only of the declared types (never SOCK_RAW)."""
    local = [_FAMILIES[s] for s in needs.sockets]
    inet = [_AF_INET, _AF_INET6] if needs.network else []
    types = sorted({_SOCK_TYPES[n] for n in needs.network})
    n = len(local) + len(inet)
    by_type = [_insn(_LD_ABS, _arg(1)), _insn(_AND, _SOCK_TYPE_MASK)]
    by_type += [_insn(_JEQ, t, len(types) - j, 0) for j, t in enumerate(types)]
    by_type = [*by_type, _EPERM] if inet else []
    checks = [_insn(_LD_ABS, _arg(0))]
    checks += [_insn(_JEQ, f, n - i + len(by_type), 0) for i, f in enumerate(local)]
    checks += [_insn(_JEQ, f, len(inet) - i, 0) for i, f in enumerate(inet)]
    return [*checks, _EPERM, *by_type, _ALLOW]


# --- Plans: what a module's child applies, prepared before fork ----------------------------


@dataclass
class Plan:
    """A module's confinement, prepared in the zygote before any fork."""

    name: str
    needs: Needs
    landlock: bool
    """Landlock applies (the kernel has it)."""
    keep: int
    """Bit mask of the capabilities kept."""
    caps: tuple[_CapHeader, ctypes.Array[_CapData]]
    """capset's arguments for a child of the zygote: ``keep`` of what the zygote holds."""
    rules: list[tuple[int, int]] = field(default_factory=list)
    """(O_PATH descriptor, Landlock rights) of the static paths."""
    program: ctypes.Array[ctypes.c_char] | None = None


_READ = _READ_FILE | _READ_DIR
_ZYGOTE_CAPS = 1 << _CAP_DAC_READ_SEARCH | 1 << _CAP_SYS_PTRACE
_plans: dict[str, Plan] = {}
_static_fds: dict[tuple[str, int], int] = {}
_rulesets: dict[tuple[str, str, int, int], int] = {}
_zygote_layers: list[str] = []
_in_force: list[str] = []


def prepare(modules: Iterable[Module]) -> list[str]:
    """In the zygote, before any fork: confine the zygote itself as far as no child ever needs
    more (no-new-privs, capabilities and bounding set, the common seccomp filter), then build each
    module's plan (its BPF program, O_PATH descriptors). Returns what could not be applied, one
    line each, for the agent to log once."""
    if not _zygote_layers:
        _confine_zygote()
    for module in modules:
        plan_for(module)
    return list(support().missing)


def plan_for(module: Module) -> Plan:
    """The module's plan, built on first use."""
    plan = _plans.get(module.name)
    if plan is None:
        plan = _plans[module.name] = _build(module)
    return plan


def ruleset_for(module: Module, root: str) -> int | None:
    """The Landlock ruleset of ``module`` reading below ``root``, built on first use (in the
    zygote, before the fork, so a child only restricts itself with it); None without Landlock."""
    plan = plan_for(module)
    if not plan.landlock:
        return None
    found = os.stat(root)  # a root replaced since (a new inode) gets a ruleset of its own
    key = (module.name, root, found.st_dev, found.st_ino)
    fd = _rulesets.get(key)
    if fd is None:
        fd = _rulesets[key] = _ruleset(plan, root, support().landlock)
    return fd


def _confine_zygote() -> None:
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    _drop_caps(_ZYGOTE_CAPS)
    _zygote_layers[:] = ["no-new-privs", "caps"]
    if support().seccomp:
        _install(ctypes.create_string_buffer(zygote_program(), len(zygote_program())))
        _zygote_layers.append("seccomp")


def _build(module: Module) -> Plan:
    _last_cap()  # read now: a child may not be able to
    needs, sup = module.needs, support()
    landlock = sup.landlock > 0
    keep = 1 << _CAP_DAC_READ_SEARCH | (1 << _CAP_SYS_PTRACE if needs.processes else 0)
    header, data = _capget()
    kept = (data[0].permitted | data[1].permitted << 32) & keep
    for i in range(2):
        data[i].effective = data[i].permitted = (kept >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = 0
    plan = Plan(module.name, needs, landlock, keep, (header, data))
    tools = [t for t in (_which(name) for name in needs.execute) if t is not None]
    if landlock:
        plan.rules = [
            r for r in (_rule(p, _READ) for p in _runtime_paths() + list(needs.read)) if r
        ]
        for tool in tools:
            plan.rules += [r for r in (_rule(t, _EXECUTE | _READ_FILE) for t in tool) if r]
        if tools:  # what a tool's subprocess opens read-write (subprocess.DEVNULL)
            plan.rules += [r for r in [_rule(os.devnull, _READ_FILE | _WRITE_FILE)] if r]
    if sup.seccomp:
        program = child_program(
            needs,
            landlock=landlock,
            exec_allowed=landlock and bool(tools),  # without Landlock, exec would be any binary
            signals_scoped=landlock and sup.landlock >= 6,
        )
        plan.program = ctypes.create_string_buffer(program, len(program))
    return plan


def _runtime_paths() -> list[str]:
    """Where the interpreter imports from: the standard library, site-packages and the agent's
    own tree; not ``sys.path`` as such, whose first entry may be the agent's working folder."""
    code = sysconfig.get_paths()
    paths = [code[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    paths.append(str(Path(__file__).resolve().parent.parent))
    unique = sorted({os.path.realpath(p) for p in (*paths, *_RUNTIME_LIBS)})
    return [p for p in unique if not any(p.startswith(q + "/") for q in unique)]


def _which(name: str) -> tuple[str, ...] | None:
    """A tool's binary and its ELF interpreter (which the kernel opens to execute it)."""
    path = name if os.path.isabs(name) else shutil.which(name)
    if path is None:
        return None
    path = os.path.realpath(path)
    interpreter = _elf_interpreter(path)
    return (path, os.path.realpath(interpreter)) if interpreter else (path,)


def _elf_interpreter(path: str) -> str | None:
    """PT_INTERP of a 64-bit little-endian ELF file, if any."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:6] != b"\x7fELF\x02\x01":
                return None
            (phoff,) = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum):
                kind, _flags, offset, _v, _p, size = struct.unpack_from(
                    "<IIQQQQ", table, i * phentsize
                )
                if kind == 3:  # PT_INTERP
                    f.seek(offset)
                    return f.read(size).rstrip(b"\0").decode()
    except (OSError, struct.error, UnicodeDecodeError):
        return None
    return None


def _rule(path: str, rights: int) -> tuple[int, int] | None:
    """An O_PATH descriptor of ``path`` (shared by plans) with the rights it may carry."""
    key = (path, rights)
    if key not in _static_fds:
        try:
            _static_fds[key] = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return None
    fd = _static_fds[key]
    return fd, _rights(fd, rights)


def _rights(fd: int, rights: int) -> int:
    """Landlock takes only file rights on a rule for a file (not a directory)."""
    return rights if stat.S_ISDIR(os.fstat(fd).st_mode) else rights & _FILE_RIGHTS


# --- In the child ---------------------------------------------------------------------------


def apply(module: Module, root: str, ports: tuple[int, ...] = ()) -> list[str]:
    """Confine this process (a fresh operation child) for ``module`` reading below ``root``
    (and, for a module declaring ``tcp``, connecting to ``ports``: its signed params');
    returns the layers in force, e.g. ``["landlock-v7", "seccomp", "no-new-privs", "caps"]``.
    A layer the kernel lacks is skipped (``missing`` says why); a layer the kernel offers but
    refuses raises OSError, and the operation must not run."""
    plan = plan_for(module)  # built before the fork when the zygote prepared it
    ruleset = ruleset_for(module, root)  # likewise
    own: list[int] = []  # a ruleset of this operation's own, closed with the shared ones
    if ruleset is not None and ports and "tcp" in plan.needs.network:
        ruleset = _ruleset(plan, root, support().landlock, ports)  # per operation: not cached
        own.append(ruleset)
    if not _zygote_layers:  # not forked from a prepared zygote (a test, the bench's baseline)
        _confine_zygote()
    if _libc.capset(ctypes.byref(plan.caps[0]), plan.caps[1]) < 0:
        _drop_caps(plan.keep)  # it holds less than the zygote did (a test dropped some)
    layers = []
    if ruleset is not None:
        _check(_libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0), "landlock")
        layers.append(f"landlock-v{support().landlock}")
    for fd in (*_rulesets.values(), *_static_fds.values(), *own):
        os.close(fd)  # shared with the zygote: a ruleset must not be changed from here
    _rulesets.clear()
    _static_fds.clear()
    if plan.program is not None and "seccomp" in _zygote_layers:
        _install(plan.program)
        layers.append("seccomp")
    _in_force[:] = [*layers, "no-new-privs", "caps"]
    return list(_in_force)


def missing(module: Module) -> list[str]:
    """Why a layer that should confine ``module`` is not in force (empty when all are)."""
    plan, abi = plan_for(module), support().landlock
    lacking = [line for line in support().missing if line.startswith(("seccomp", "landlock"))]
    if "tcp" in plan.needs.network and 0 < abi < 4:
        lacking.append(f"landlock: ABI {abi} cannot restrict TCP connect to the signed ports")
    return lacking


def in_force() -> list[str]:
    """The layers this process applied to itself (``apply``)."""
    return list(_in_force)


def _install(program: ctypes.Array[ctypes.c_char]) -> None:
    prog = _SockFprog(len(program) // 8, ctypes.addressof(program))
    _check(
        _libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0),
        "seccomp",
    )


def _capget() -> tuple[_CapHeader, ctypes.Array[_CapData]]:
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    return header, data


def _drop_caps(keep: int) -> None:
    """Keep only ``keep`` of the capabilities held, and of the bounding set: no later exec may
    regain the others."""
    header, data = _capget()
    held = data[0].permitted | data[1].permitted << 32
    if held & (1 << _CAP_SETPCAP):
        for cap in range(_last_cap() + 1):
            if not keep & (1 << cap):
                _prctl(_PR_CAPBSET_DROP, cap)
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    kept = held & keep
    for i in range(2):
        data[i].effective = data[i].permitted = (kept >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = 0
    _check(_libc.capset(ctypes.byref(header), data), "capset")


_LAST_CAP: list[int] = []


def _last_cap() -> int:
    if not _LAST_CAP:
        try:
            with open("/proc/sys/kernel/cap_last_cap", "rb") as f:  # no codec to import
                _LAST_CAP.append(int(f.read()))
        except (OSError, ValueError):
            _LAST_CAP.append(40)
    return _LAST_CAP[0]


def _ruleset(plan: Plan, root: str, abi: int, ports: tuple[int, ...] = ()) -> int:
    """A Landlock ruleset: read below ``root`` and the plan's paths, TCP connect to ``ports``
    (ABI 4+), the rest of what the ABI knows denied."""
    fs = _FS_RIGHTS[max(v for v in _FS_RIGHTS if v <= abi)]
    attr = _RulesetAttr(fs, _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0, 0)
    if abi >= 6:
        attr.scoped = _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = _check(
        _libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), size, 0), "landlock ruleset"
    )
    try:
        root_fd = os.open(root, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        os.close(ruleset)
        raise
    try:
        for fd, rights in [*plan.rules, (root_fd, _rights(root_fd, _READ))]:
            rule = _PathBeneath(rights & fs, fd)
            _check(
                _libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0),
                "landlock rule",
            )
        for port in ports if abi >= 4 else ():
            net = _NetPort(_NET_CONNECT_TCP, port)
            _check(
                _libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_NET_PORT, ctypes.byref(net), 0),
                "landlock port rule",
            )
    except OSError:
        os.close(ruleset)
        raise
    finally:
        os.close(root_fd)
    return ruleset
