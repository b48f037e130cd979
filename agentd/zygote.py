"""The zygote: a small single-threaded process whose only job is to fork operation children.

One zygote serves every agent of an agent process. The runner starts it on the first operation
as a fresh interpreter (``python -c 'from agentd.zygote import serve; ...'``), so it is born
single-threaded whatever threads the agent has by then (gpg verification runs in threads), and
imports every module once; then each operation costs one ``fork()`` of this small process, with
nothing pickled and no interpreter start-up. The agent's event loop only sends a datagram.

Control protocol: a ``SOCK_SEQPACKET`` socketpair, one JSON object per datagram (Linux).

    agent -> zygote   {"op": "run", "id": N, "module": M, "root": R}
                                                 + fds [request memfd, result pipe write end]
                      {"op": "kill", "pid": P}   SIGKILL P if it has not been reaped yet
    zygote -> agent   {"id": N, "pid": P}        child P started (always before P's exit)
                      {"id": N, "error": "..."}  fork failed
                      {"pid": P, "status": S}    P ended: exit code, or -signal (like Popen)

Before serving, the zygote confines itself as far as no operation ever needs more and prepares
each module's confinement (``agentd.confine.prepare``): each child then applies its own in a few
system calls. What the kernel cannot offer is logged here, once per zygote.

The zygote is the only reaper of its children, so a ``kill`` can never hit a reused pid, and it
reports exit statuses, which is how the runner tells a SIGXCPU (CPU rlimit) from a SIGKILL (memory
or timeout) from a crash. Children die with the zygote (``PR_SET_PDEATHSIG``); the zygote exits,
killing its children, when the agent closes its end of the socket (or dies).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
import traceback
from typing import Any

from agentd import child, confine
from modules.registry import all_modules, get_module

#: Big enough for one control datagram (ids, pids, a module name and a root path of up to
#: PATH_MAX: the request itself travels in a memfd).
MAX_MESSAGE = 8192
_PR_SET_PDEATHSIG = 1


def serve(fd: int) -> None:
    """The zygote's main loop on the inherited control socket ``fd``; returns when the agent
    goes away."""
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the poll below through wake_w
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C at the agent's terminal is its own
    prctl = _prctl()
    child.rehearse()
    for line in confine.prepare(all_modules()):
        print(f"spyglass-agentd: confinement unavailable: {line}", file=sys.stderr, flush=True)
    live: set[int] = set()
    gc.freeze()  # what the children inherit stays shared: no collection touches those pages
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    me = os.getpid()
    try:
        while True:
            for ready, _ in poller.poll():
                if ready == wake_r:
                    _drain(wake_r)
                    _reap(sock, live)
                    continue
                try:
                    data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 2)
                except ConnectionResetError:
                    data = b""
                if not data:
                    return  # the agent closed its end or died
                message = json.loads(data)
                if message["op"] == "run":
                    _prepare_ruleset(message["module"], message["root"])
                    _fork(
                        sock, message["id"], fds, live, (sock.fileno(), wake_r, wake_w), me, prctl
                    )
                elif message["op"] == "kill" and message["pid"] in live:
                    os.kill(message["pid"], signal.SIGKILL)
    finally:
        for pid in live:
            os.kill(pid, signal.SIGKILL)


def _fork(
    sock: socket.socket,
    request_id: int,
    fds: list[int],
    live: set[int],
    own_fds: tuple[int, ...],
    zygote_pid: int,
    prctl: Any,
) -> None:
    request_fd, result_fd = fds
    try:
        pid = os.fork()
    except OSError as err:
        os.close(request_fd)
        os.close(result_fd)
        _send(sock, {"id": request_id, "error": f"cannot fork the operation: {err}"})
        return
    if pid == 0:
        _child(request_fd, result_fd, own_fds, zygote_pid, prctl)
    os.close(request_fd)
    os.close(result_fd)
    live.add(pid)
    _send(sock, {"id": request_id, "pid": pid})


def _child(
    request_fd: int, result_fd: int, own_fds: tuple[int, ...], zygote_pid: int, prctl: Any
) -> None:
    """In the forked child: drop the zygote's plumbing, then run the operation; never returns."""
    code = 0
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for fd in own_fds:
            os.close(fd)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != zygote_pid:  # the zygote died before the line above took effect
            os._exit(1)
        child.run(request_fd, result_fd)
    except BaseException:
        traceback.print_exc()
        code = 70
    finally:
        os._exit(code)


def _prepare_ruleset(name: str, root: str) -> None:
    """Build the child's Landlock ruleset here, once per module and root, not in every child;
    a failure is the child's to meet again and report."""
    module = get_module(name)
    if module is not None:
        with contextlib.suppress(OSError):
            confine.ruleset_for(module, root)


def _reap(sock: socket.socket, live: set[int]) -> None:
    while live:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        live.discard(pid)
        _send(sock, {"pid": pid, "status": os.waitstatus_to_exitcode(status)})


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.send(json.dumps(message).encode())


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _prctl() -> Any:
    """``prctl`` from libc (Linux), so children can ask to die with the zygote."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # only the zygote needs it

    return ctypes.CDLL(None, use_errno=True).prctl


if __name__ == "__main__":
    serve(int(sys.argv[1]))
