"""The ``process`` module: running processes by name, command line, executable, user, digest of
the executable, mapped library, and by a regex or bytes found in their memory.

Filters run cheapest first: what ``process_iter`` already read, then the executable's digest
(one read per distinct binary, through ``/proc/PID/exe`` so a deleted binary is still hashed),
then the memory map, and last the memory itself, read once for every content and bytes filter.

Memory is read through ``/proc/PID/maps`` and ``/proc/PID/mem`` (ptrace rights: root, or
CAP_SYS_PTRACE), region by region, at most ``max_length`` bytes per process. Under Landlock those
are the descriptors the operation's child opened before it (``modules.proc_snapshot``): the
executable's path and, only when a filter needs them, descriptors of the executable (a digest),
the maps (a library, memory) and the memory. The agent is never read: this process, its
ancestors (the zygote, the agent) and its parent's other children (concurrent module runs,
holding other actions' parameters) are never opened and are skipped by the memory filters.
Results carry the names of the filters that matched, never memory contents. The agent's own
zygote and operation processes are not listed at all unless ``include_agent`` is set: they are
the investigation, not the host.
"""

from __future__ import annotations

import bisect
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from modules.base import Column, Module, Needs, Param, RunContext
from modules.proc_snapshot import (
    Handles,
    Snapshot,
    Wants,
    agent_pids,
    read_all,
    run_search,
    take,
)
from modules.regex import BytesRegex, text_search
from modules.soft_errors import MAX_ERRORS, SoftErrors

CHUNK = 1 << 20
#: Bytes kept from the end of one chunk to the start of the next, so a regex match up to this
#: long is found even when it straddles two chunks (longer ones may be missed there).
REGEX_OVERLAP = 4096
_SKIP_MAPPINGS = ("[vvar]", "[vvar_vclock]", "[vsyscall]", "/dev/")

FILTERS = ("name", "cmdline", "exe", "user", "exe_sha256", "library", "content", "bytes")


def compile_memory_regex(pattern: str) -> BytesRegex:
    """Memory is bytes: the pattern is matched as UTF-8 bytes (``.`` may match a newline)."""
    return BytesRegex(pattern, dotall=True)


@dataclass(frozen=True)
class Region:
    start: int
    end: int
    path: str


def parse_maps(text: str) -> list[Region]:
    """Readable regions of ``/proc/PID/maps``; the path is "" for anonymous memory."""
    out = []
    for line in text.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 5 or not fields[1].startswith("r"):
            continue
        start, _, end = fields[0].partition("-")
        out.append(Region(int(start, 16), int(end, 16), fields[5] if len(fields) > 5 else ""))
    return out


def readable(regions: list[Region]) -> list[Region]:
    """The regions worth reading: not the kernel's own pages or device mappings."""
    return [r for r in regions if not r.path.startswith(_SKIP_MAPPINGS)]


@dataclass
class Memory:
    """A process's readable regions, in address order, one after the other in ``data``."""

    data: memoryview
    starts: list[int]
    """Where each region read starts in ``data``..."""
    addresses: list[int]
    """...and in the process."""
    unread: int
    """Bytes of readable regions left out by the size cap."""

    def address(self, offset: int) -> int:
        """The virtual address of ``offset`` in ``data``."""
        i = bisect.bisect_right(self.starts, offset) - 1
        return self.addresses[i] + offset - self.starts[i]


def read_memory(maps: int, mem: int, cap: int) -> Memory:
    """Up to ``cap`` bytes of a process's memory through descriptors of its maps and memory; a
    region the kernel refuses to read (guard pages, I/O mappings) is left out."""
    regions = readable(parse_maps(read_all(maps).decode("utf-8", "surrogateescape")))
    wanted = sum(r.end - r.start for r in regions)
    view = memoryview(bytearray(min(cap, wanted)))
    starts: list[int] = []
    addresses: list[int] = []
    at = 0
    for region in regions:
        size = min(region.end - region.start, len(view) - at)
        if size <= 0:
            break
        try:
            got = os.preadv(mem, [view[at : at + size]], region.start)
        except OSError:
            continue
        if got:
            starts.append(at)
            addresses.append(region.start)
            at += got
    return Memory(view[:at], starts, addresses, max(0, wanted - cap))


class ProcessModule(Module):
    """Finds processes, like ``ps`` with filters, and searches their memory like MIG's memory."""

    name = "process"
    needs = Needs(read=("/proc",), processes=True)
    summary = "Processes by name, command line, executable, user, library or memory content"
    params = (
        *Param.each(
            "regex",
            name="Regex searched in the process name",
            cmdline="Regex searched in the command line (args joined by spaces)",
            exe="Regex searched in the executable's path",
        ),
        *Param.each("string", user="User name or numeric uid owning the process"),
        *Param.each("hash", exe_sha256="SHA-256 of the executable is one of these"),
        *Param.each(
            "regex",
            library="Regex searched in the paths of mapped files",
            content="Regex searched in readable memory (as UTF-8 bytes; needs ptrace rights)",
        ),
        *Param.each("hexbytes", bytes="Byte string (hex) searched in readable memory"),
        Param(
            "max_length",
            "int",
            "Read at most this many bytes of each process's memory",
            default=128 * 1024 * 1024,
            minimum=1,
        ),
        Param(
            "match_any", "bool", "Report processes matching any filter (default: all must match)"
        ),
        Param(
            "include_agent",
            "bool",
            "Also list the agent's own zygote and operation processes (this run's included)",
        ),
        MAX_ERRORS,
    )
    columns = (
        Column("pid", "Process id", "int"),
        Column("name", "Process name"),
        Column("exe", "Executable path", "path"),
        Column("cmdline", "Command line, arguments joined by spaces"),
        Column("user", "User owning the process"),
        Column("matched", "Filters that matched", "list"),
    )
    example = {"name": ["^sshd$"], "library": ["libkeyutils"]}

    def snapshot(self, params: dict[str, Any]) -> Snapshot:
        memory = bool(params["content"] or params["bytes"])
        return take(
            Wants(
                exe=True,
                exe_file=bool(params["exe_sha256"]),
                maps=memory or bool(params["library"]),
                mem=memory,
            )
        )

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        snapshot = ctx.snapshot or self.snapshot(params)
        return run_search(_Search(params, ctx, snapshot), snapshot)


class _Search:
    def __init__(self, params: dict[str, Any], ctx: RunContext, snapshot: Snapshot) -> None:
        self.ctx = ctx
        self.snapshot = snapshot
        self.match_any: bool = params["match_any"]
        join = any if self.match_any else all
        self.join = join
        self.regexes = {
            f: [text_search(p) for p in params[f]] for f in ("name", "cmdline", "exe", "library")
        }
        self.users = set(params["user"])
        self.hashes = {h.lower() for h in params["exe_sha256"]}
        self.content = [compile_memory_regex(p) for p in params["content"]]
        self.bytes = [bytes.fromhex(h) for h in params["bytes"]]
        self.max_length: int = params["max_length"]
        self.active = [f for f in FILTERS if params[f]]
        self.protected = snapshot.protected
        self.hidden = set() if params["include_agent"] else agent_pids()
        self._digests: dict[tuple[int, int], str | None] = {}
        self.stats = dict.fromkeys(
            ("processes_scanned", "bytes_read", "matches", "errors", "skipped"), 0
        )
        self._errors = SoftErrors(ctx, self.stats, params["max_errors"])

    def run(self) -> None:
        import psutil  # heavy import, kept out of module loading

        if self.snapshot.shortfall:
            self.ctx.error(self.snapshot.shortfall)
        attrs = ["pid", "name", "cmdline", "username", "uids"]
        for pid, handles in self.snapshot.processes.items():
            if self.ctx.cancelled():
                return
            if pid in self.hidden:
                continue
            try:
                info = psutil.Process(pid).as_dict(attrs, ad_value=None)
                self.stats["processes_scanned"] += 1
                self._consider({**info, "exe": handles.exe}, handles)
            except psutil.NoSuchProcess:
                continue  # gone while we looked
            finally:
                handles.close()
            if self.stats["processes_scanned"] % 64 == 0:
                self.ctx.progress(self.stats)

    def _consider(self, info: dict[str, Any], handles: Handles) -> None:
        pid: int = info["pid"]
        cmdline = " ".join(info["cmdline"] or [])
        texts = {"name": info["name"] or "", "cmdline": cmdline, "exe": info["exe"] or ""}
        uid = str(info["uids"].real) if info["uids"] is not None else None
        matched: list[str] = []
        maps: list[Region] | None = None
        for f in self.active:
            if f in texts:
                hit = self.join(found(texts[f]) for found in self.regexes[f])
            elif f == "user":
                hit = info["username"] in self.users or uid in self.users
            elif f == "exe_sha256":
                hit = self._exe_digest(pid, handles) in self.hashes
            elif f == "library":
                maps = self._maps(pid, handles) if maps is None else maps
                paths = {r.path for r in maps or () if r.path.startswith("/")}
                hit = self.join(any(found(p) for p in paths) for found in self.regexes["library"])
            elif f == "content":
                found = self._memory(pid, maps, handles)
                hit = found is not None and self._memory_hit(found, "content")
            else:  # bytes: the memory was read for content already, or is read now
                found = self._memory(pid, maps, handles)
                hit = found is not None and self._memory_hit(found, "bytes")
            if hit:
                matched.append(f)
            elif not self.match_any:
                return
        if self.active and not matched:
            return
        self.ctx.emit(
            {
                "pid": pid,
                "name": info["name"],
                "exe": info["exe"],
                "cmdline": cmdline,
                "user": info["username"] if info["username"] is not None else uid,
                "matched": matched,
            }
        )
        self.stats["matches"] += 1

    # -- executable and maps --------------------------------------------------------------

    def _exe_digest(self, pid: int, handles: Handles) -> str | None:
        try:
            fd = handles.fd("exe_file")
            if fd is None:
                return None
            st = os.fstat(fd)
        except OSError:
            return None  # kernel thread, gone, or not ours to see
        key = (st.st_dev, st.st_ino)
        if key not in self._digests:
            h = hashlib.sha256()
            try:
                while chunk := os.read(fd, CHUNK):
                    h.update(chunk)
                self._digests[key] = h.hexdigest()
            except OSError as err:
                self._error(pid, "exe", err)
                self._digests[key] = None
        return self._digests[key]

    def _maps(self, pid: int, handles: Handles) -> list[Region] | None:
        try:
            fd = handles.fd("maps")
            if fd is None:
                return None
            return parse_maps(read_all(fd).decode("utf-8", "surrogateescape"))
        except OSError as err:
            self._error(pid, "maps", err)
            return None

    # -- memory -----------------------------------------------------------------------------

    _memo: tuple[int, dict[str, list[bool]] | None] | None = None

    def _memory(
        self, pid: int, maps: list[Region] | None, handles: Handles
    ) -> dict[str, list[bool]] | None:
        """Which content regexes and byte strings the process memory holds (read once per
        process for both filters); None if it could not be read."""
        if self._memo is not None and self._memo[0] == pid:
            return self._memo[1]
        result = None
        if pid in self.protected:
            self.stats["skipped"] += 1
        else:
            regions = maps if maps is not None else self._maps(pid, handles)
            if regions is not None:
                result = self._scan(pid, regions, handles)
        self._memo = (pid, result)
        return result

    def _memory_hit(self, found: dict[str, list[bool]], what: str) -> bool:
        return self.join(found[what])

    def _scan(
        self, pid: int, regions: list[Region], handles: Handles
    ) -> dict[str, list[bool]] | None:
        found = {"content": [False] * len(self.content), "bytes": [False] * len(self.bytes)}
        overlap = max([REGEX_OVERLAP if self.content else 0, *(len(b) - 1 for b in self.bytes)])
        budget = self.max_length
        try:
            fd = handles.fd("mem")
        except OSError as err:
            self._error(pid, "memory", err)
            return None
        if fd is None:
            return None
        for region in readable(regions):
            if budget <= 0 or self._done(found):
                break
            budget = self._scan_region(fd, region, found, overlap, budget)
        return found

    def _scan_region(
        self, fd: int, region: Region, found: dict[str, list[bool]], overlap: int, budget: int
    ) -> int:
        tail = b""
        pos = region.start
        while pos < region.end and budget > 0:
            size = min(CHUNK, region.end - pos, budget)
            try:
                chunk = os.pread(fd, size, pos)
            except OSError:
                return budget  # unreadable page range (guard pages, I/O mappings): next region
            if not chunk:
                return budget
            pos += len(chunk)
            budget -= len(chunk)
            self.stats["bytes_read"] += len(chunk)
            data = tail + chunk
            for i, rx in enumerate(self.content):
                if not found["content"][i] and rx.find(data) >= 0:
                    found["content"][i] = True
            for i, needle in enumerate(self.bytes):
                if not found["bytes"][i] and needle in data:
                    found["bytes"][i] = True
            if self._done(found):
                return budget
            tail = data[-overlap:] if overlap else b""
        return budget

    @staticmethod
    def _done(found: dict[str, list[bool]]) -> bool:
        """Nothing more to learn from reading on: every pattern was found."""
        return all(found["content"]) and all(found["bytes"])

    def _error(self, pid: int, what: str, err: OSError) -> None:
        self._errors(f"pid {pid} {what}", err)
