"""What runs inside an operation's child process: rlimits and kernel confinement, then the module,
events to a pipe.

The child is forked from the agent process's zygote (``agentd.zygote``), which imported every
module, so it starts in about a millisecond. It reads its request (module, params, root, limits)
as JSON from a memfd, confines itself for its module (``agentd.confine``) before the module sees
the params, then writes protocol frames to its pipe: ``match``, ``progress``, and a final ``end``
with status and stats.
"""

from __future__ import annotations

import json
import os
import resource
import time
from typing import Any

from agentd import confine
from modules.base import LimitReached, Module, RunContext
from modules.registry import all_modules, get_module
from protocol.frames import encode_frame

all_modules()  # imported in the zygote, so every forked child starts with them loaded

PROGRESS_EVERY = 0.5
#: Enough runs for Python 3.11 to specialize what a request runs (it waits for 8 calls).
REHEARSALS = 16
MAX_ERRORS_REPORTED = 100


class PipeContext(RunContext):
    """A RunContext that streams rows to the agent over a pipe."""

    def __init__(self, fd: int, root: str) -> None:
        self.fd = fd
        self.root = root
        self.errors: list[str] = []
        self.error_count = 0
        self._last_progress = time.monotonic()

    def _send(self, message: dict[str, Any]) -> None:
        data = memoryview(encode_frame(message, max_frame=1 << 30))
        while data:
            data = data[os.write(self.fd, data) :]

    def put_row(self, row: dict[str, Any]) -> None:
        self._send({"type": "match", "data": row})

    def progress(self, stats: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            self._send({"type": "progress", "stats": stats})

    def put_error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS_REPORTED:
            self.errors.append(message)


def run(request_fd: int, result_fd: int) -> None:
    """Entry point of the child: read the request, confine itself, run the module, report how
    it ended."""
    request = json.loads(_read_all(request_fd))
    os.close(request_fd)
    cpu_seconds, memory_mb = request["cpu_seconds"], request["memory_mb"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    limit = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.nice(request["nice"])
    ctx = PipeContext(result_fd, request["root"])
    module = get_module(request["module"])
    assert module is not None, request["module"]
    refusal = _confine(module, request, ctx)
    if refusal:
        ctx._send({"type": "end", "status": "error", "stats": {}, "errors": [refusal]})
        os.close(result_fd)
        return
    _run_module(module, request["params"], ctx, memory_mb)
    os.close(result_fd)


def _run_module(module: Module, params: dict[str, Any], ctx: PipeContext, memory_mb: int) -> None:
    """Run the module and send the ``end`` frame: how it ended, its stats, its errors."""
    status, stats = "ok", {}
    try:
        stats = module.run(params, ctx) or {}
    except LimitReached as err:
        status, stats = "limit", getattr(err, "stats", None) or {}
    except MemoryError:
        status = "error"
        ctx.errors.append(f"memory limit of {memory_mb} MiB reached")
    except Exception as err:  # a module bug must become a status, not a silent dead child
        status = "error"
        ctx.errors.append(f"{type(err).__name__}: {err}")
    stats = {**stats, "errors": ctx.error_count} if ctx.error_count else stats
    ctx._send({"type": "end", "status": status, "stats": stats, "errors": ctx.errors})


def rehearse(times: int = REHEARSALS) -> None:
    """In the zygote, before any fork: run a request's path (JSON, a file search of this
    package's directory, frames to /dev/null) a few times. Python specializes the bytecode it
    runs, writing into the code objects: done here once, it is inherited by every child, which
    would otherwise redo it and copy each page it writes (about 0.3 ms per operation)."""
    module = get_module("file")
    assert module is not None
    params = {"paths": [os.path.dirname(__file__)], "name": [r"^child\.py$"]}
    request = json.dumps({"params": module.validate(params)})
    with open(os.devnull, "wb") as sink:
        for _ in range(times):
            _run_module(module, json.loads(request)["params"], PipeContext(sink.fileno(), "/"), 0)


def _confine(module: Module, request: dict[str, Any], ctx: PipeContext) -> str | None:
    """Confine this child for ``module``; the reason to refuse the operation, if any: the kernel
    refused a layer it offers, or one it lacks is required (``require_confinement``)."""
    try:
        ports = module.connect_ports(request["params"])  # the signed ones, validated
        if module.needs.processes:  # what Landlock's ptrace scoping is about to hide
            ctx.snapshot = module.snapshot(request["params"])
        layers = confine.apply(module, request["root"], ports)
    except OSError as err:
        return f"refused: cannot confine the module's process: {err}"
    lacking = confine.missing(module)
    ctx.confinement = " ".join(layers) + "".join(f"; no {line}" for line in lacking)
    if lacking and request["require_confinement"]:
        return "refused: require_confinement is set and " + "; ".join(lacking)
    return None


def _read_all(fd: int) -> bytes:
    """The whole request file; the agent left its offset at 0."""
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)
