"""Test-only modules that attack their own confinement, and the zygote that knows them.

They are registered only in the zygote this file runs as
(``python -m tests.support.confine_probe FD``, named by ``Zygote.entry`` in
``tests/test_confinement.py``), never in the shipped registry. Each
attempt becomes a row: ``ok`` when it worked, else the errno's name.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from modules.base import Column, Module, Needs, Param, RunContext

_libc = ctypes.CDLL(None, use_errno=True)
_PTRACE_ATTACH = 16


class _Rlimit(ctypes.Structure):
    _fields_ = [("cur", ctypes.c_uint64), ("max", ctypes.c_uint64)]


def _exec_true() -> None:
    """exec /bin/true in a fork (if exec worked, this process would be gone)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/bin/true", ["true"])
        except OSError as err:
            os._exit(err.errno or 1)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code:
        raise OSError(code, os.strerror(code))


def _ptrace(pid: int) -> None:
    if _libc.ptrace(_PTRACE_ATTACH, pid, None, None) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _raise_rlimit() -> None:
    limit = _Rlimit(2**64 - 1, 2**64 - 1)
    if _libc.prlimit(0, 0, ctypes.byref(limit), None) < 0:  # RLIMIT_CPU to unlimited
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _create(path: str) -> None:
    with open(path, "x"):
        pass


def _write(path: str) -> None:
    with open(path, "a") as f:
        f.write("x")


def attempts(root: str, params: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """Every attempt, by name."""
    inside, elsewhere = os.path.join(root, "readable"), params["tmpfile"]
    out: dict[str, Callable[[], Any]] = {"read_root": lambda: _read(inside)}
    for where, path in (("root", inside), ("tmp", elsewhere)):
        folder = os.path.dirname(path)
        out |= {
            f"create_{where}": partial(_create, os.path.join(folder, "new")),
            f"write_{where}": partial(_write, path),
            f"truncate_{where}": partial(os.truncate, path, 0),
            f"rename_{where}": partial(os.rename, path, path + ".moved"),
            f"unlink_{where}": partial(os.unlink, path),
        }
    outside, agent = params["outside"], params["agent_pid"]
    return out | {
        "exec": _exec_true,
        "tcp_connect": lambda: socket.create_connection(("127.0.0.1", params["port"])).close(),
        "tcp_bind": lambda: socket.socket().bind(("127.0.0.1", 0)),
        "udp_socket": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close(),
        "read_outside": lambda: _read(outside),
        "read_outside_via_proc_root": lambda: _read("/proc/self/root" + outside),
        "ptrace_agent": lambda: _ptrace(agent),
        "read_agent_memory": lambda: os.close(os.open(f"/proc/{agent}/mem", os.O_RDONLY)),
        "signal_agent": lambda: os.kill(agent, 0),
        "raise_rlimit": _raise_rlimit,
        "setuid_0": lambda: os.setuid(0),
    }


class ProbeModule(Module):
    """Tries, from inside its child, everything confinement must deny (tests only)."""

    name = "probe"
    summary = "Attacks its own confinement (tests only)"
    needs = Needs(read=("/proc",))
    params = (
        Param("outside", "path", "A readable file outside the root", required=True),
        Param("tmpfile", "path", "A writable file in /tmp, outside the root", required=True),
        Param("agent_pid", "int", "The agent's pid", required=True),
        Param("port", "port", "A listening TCP port on 127.0.0.1", required=True),
    )
    columns = (
        Column("attempt", "What was tried"),
        Column("outcome", "ok, or the errno's name"),
    )

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        tried = attempts(ctx.root, params)
        for name, attempt in tried.items():
            try:
                attempt()
                outcome = "ok"
            except OSError as err:
                outcome = errno.errorcode.get(err.errno or 0, str(err))
            ctx.emit({"attempt": name, "outcome": outcome})
        return {"rows": len(tried)}


class ProcessProbeModule(ProbeModule):
    """The probe declared as a module that inspects other processes (like ``process``)."""

    name = "probe_processes"
    needs = Needs(read=("/proc",), processes=True)


def attacking(module: type[Module]) -> Module:
    """``module`` (its needs, params and snapshot) as ``probe_NAME``, whose child first tries
    every attack, then runs the module's own search: its rows follow the attempts' rows."""

    class Attacking(module):  # type: ignore[misc,valid-type]
        name = f"probe_{module.name}"
        columns = (*module.columns, *ProbeModule.columns)

        def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
            ProbeModule.run(self, params, ctx)  # type: ignore[arg-type]
            return super().run(params, ctx)  # type: ignore[no-any-return]

    return Attacking()


class ExecProbeModule(Module):
    """Runs its one declared tool and one it did not declare (tests only)."""

    name = "probe_exec"
    summary = "Runs /bin/true (declared), /bin/ls and a copy of true (not declared) (tests only)"
    needs = Needs(execute=("/bin/true",))
    columns = (Column("tool", "The tool"), Column("outcome", "Its exit code, or the errno's name"))

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        import subprocess  # as modules do: in the child only

        for tool in ("/bin/true", "/bin/ls", "memfd"):
            try:
                keep = []
                if tool == "memfd":  # a copy of /bin/true in an anonymous file
                    with open("/bin/true", "rb") as f:
                        keep.append(os.memfd_create("true", 0))
                        os.write(keep[0], f.read())
                    tool = f"/proc/self/fd/{keep[0]}"
                done = subprocess.run([tool], stdin=subprocess.DEVNULL, pass_fds=keep)
                outcome = str(done.returncode)
            except OSError as err:
                outcome = errno.errorcode.get(err.errno or 0, str(err))
            ctx.emit({"tool": tool, "outcome": outcome})
        return {"rows": 3}


def register() -> None:
    """Add the probes to this process's registry (the zygote's, below)."""
    from modules import registry
    from modules.netstat import NetstatModule
    from modules.process import ProcessModule
    from modules.yara import YaraModule

    attackers = [attacking(m) for m in (ProcessModule, NetstatModule, YaraModule)]
    for module in (ProbeModule(), ProcessProbeModule(), ExecProbeModule(), *attackers):
        registry._load()[module.name] = module


if __name__ == "__main__":
    register()
    from agentd.zygote import serve

    serve(int(sys.argv[1]))
