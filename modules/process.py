"""The ``process`` module: running processes by name, command line, executable, user, digest of
the executable, mapped library, and by a regex or bytes found in their memory.

Filters run cheapest first: what ``process_iter`` already read, then the executable's digest
(one read per distinct binary, through ``/proc/PID/exe`` so a deleted binary is still hashed),
then the memory map, and last the memory itself, read once for every content and bytes filter.

Memory is read through ``/proc/PID/maps`` and ``/proc/PID/mem`` (ptrace rights: root, or
CAP_SYS_PTRACE), region by region, at most ``max_length`` bytes per process. The agent is never
read: this process, its ancestors (the zygote, the agent) and its parent's other children
(concurrent module runs, holding other actions' parameters) are skipped by the memory filters.
Results carry the names of the filters that matched, never memory contents. The agent's own
zygote and operation processes are not listed at all unless ``include_agent`` is set: they are
the investigation, not the host.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from modules.base import Column, LimitReached, Module, Needs, Param, RunContext
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


def agent_pids() -> set[int]:
    """The agent's own operation processes, as a module's child sees them: this one, its parent
    (the zygote) and the parent's other children (concurrent operations, holding other
    actions' parameters). Only this one when the parent is init (an orphan has no zygote)."""
    import psutil  # heavy import, kept out of module loading

    parent = os.getppid()
    if parent == 1:
        return {os.getpid()}
    pids = {os.getpid(), parent}
    with contextlib.suppress(psutil.Error):  # gone: the parent is still in
        pids.update(c.pid for c in psutil.Process(parent).children())
    return pids


def protected_pids() -> set[int]:
    """Processes whose memory is never read: the agent's own (``agent_pids``) and this one's
    ancestors but init (the agent itself, holding keys and every action)."""
    import psutil  # heavy import, kept out of module loading

    pids = agent_pids()
    with contextlib.suppress(psutil.Error):
        pids.update(p.pid for p in psutil.Process().parents() if p.pid != 1)
    return pids


class ProcessModule(Module):
    """Finds processes, like ``ps`` with filters, and searches their memory like MIG's memory."""

    name = "process"
    needs = Needs(read=("/proc",), processes=True)
    summary = "Processes by name, command line, executable, user, library or memory content"
    params = (
        Param("name", "regex", "Regex searched in the process name", repeatable=True),
        Param(
            "cmdline",
            "regex",
            "Regex searched in the command line (args joined by spaces)",
            repeatable=True,
        ),
        Param("exe", "regex", "Regex searched in the executable's path", repeatable=True),
        Param("user", "string", "User name or numeric uid owning the process", repeatable=True),
        Param("exe_sha256", "hash", "SHA-256 of the executable is one of these", repeatable=True),
        Param("library", "regex", "Regex searched in the paths of mapped files", repeatable=True),
        Param(
            "content",
            "regex",
            "Regex searched in readable memory (as UTF-8 bytes; needs ptrace rights)",
            repeatable=True,
        ),
        Param(
            "bytes", "hexbytes", "Byte string (hex) searched in readable memory", repeatable=True
        ),
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

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        search = _Search(params, ctx)
        try:
            search.run()
        except LimitReached as err:  # the agent's cap, raised by emit
            err.stats = dict(search.stats)
            raise
        return dict(search.stats)


class _Search:
    def __init__(self, params: dict[str, Any], ctx: RunContext) -> None:
        self.ctx = ctx
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
        self.protected = protected_pids()
        self.hidden = set() if params["include_agent"] else agent_pids()
        self._digests: dict[tuple[int, int], str | None] = {}
        self.stats = dict.fromkeys(
            ("processes_scanned", "bytes_read", "matches", "errors", "skipped"), 0
        )
        self._errors = SoftErrors(ctx, self.stats, params["max_errors"])

    def run(self) -> None:
        import psutil  # heavy import, kept out of module loading

        psutil.process_iter.cache_clear()
        attrs = ["pid", "name", "exe", "cmdline", "username", "uids"]
        for proc in psutil.process_iter(attrs=attrs, ad_value=None):
            if self.ctx.cancelled():
                return
            if proc.info["pid"] in self.hidden:
                continue
            self.stats["processes_scanned"] += 1
            try:
                self._consider(proc.info)
            except psutil.NoSuchProcess:
                continue  # gone while we looked
            if self.stats["processes_scanned"] % 64 == 0:
                self.ctx.progress(self.stats)

    def _consider(self, info: dict[str, Any]) -> None:
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
                hit = self._exe_digest(pid) in self.hashes
            elif f == "library":
                maps = self._maps(pid) if maps is None else maps
                paths = {r.path for r in maps or () if r.path.startswith("/")}
                hit = self.join(any(found(p) for p in paths) for found in self.regexes["library"])
            elif f == "content":
                found = self._memory(pid, maps)
                hit = found is not None and self._memory_hit(found, "content")
            else:  # bytes: the memory was read for content already, or is read now
                found = self._memory(pid, maps)
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

    def _exe_digest(self, pid: int) -> str | None:
        link = f"/proc/{pid}/exe"
        try:
            st = os.stat(link)
        except OSError:
            return None  # kernel thread, gone, or not ours to see
        key = (st.st_dev, st.st_ino)
        if key not in self._digests:
            h = hashlib.sha256()
            try:
                with open(link, "rb") as f:
                    while chunk := f.read(CHUNK):
                        h.update(chunk)
                self._digests[key] = h.hexdigest()
            except OSError as err:
                self._error(pid, "exe", err)
                self._digests[key] = None
        return self._digests[key]

    def _maps(self, pid: int) -> list[Region] | None:
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="surrogateescape") as f:
                return parse_maps(f.read())
        except FileNotFoundError:
            return None
        except OSError as err:
            self._error(pid, "maps", err)
            return None

    # -- memory -----------------------------------------------------------------------------

    _memo: tuple[int, dict[str, list[bool]] | None] | None = None

    def _memory(self, pid: int, maps: list[Region] | None) -> dict[str, list[bool]] | None:
        """Which content regexes and byte strings the process memory holds (read once per
        process for both filters); None if it could not be read."""
        if self._memo is not None and self._memo[0] == pid:
            return self._memo[1]
        result = None
        if pid in self.protected:
            self.stats["skipped"] += 1
        else:
            regions = maps if maps is not None else self._maps(pid)
            if regions is not None:
                result = self._scan(pid, regions)
        self._memo = (pid, result)
        return result

    def _memory_hit(self, found: dict[str, list[bool]], what: str) -> bool:
        return self.join(found[what])

    def _scan(self, pid: int, regions: list[Region]) -> dict[str, list[bool]] | None:
        found = {"content": [False] * len(self.content), "bytes": [False] * len(self.bytes)}
        overlap = max([REGEX_OVERLAP if self.content else 0, *(len(b) - 1 for b in self.bytes)])
        budget = self.max_length
        try:
            fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as err:
            self._error(pid, "memory", err)
            return None
        try:
            for region in regions:
                if budget <= 0 or self._done(found):
                    break
                if region.path.startswith(_SKIP_MAPPINGS):
                    continue
                budget = self._scan_region(fd, region, found, overlap, budget)
        finally:
            os.close(fd)
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
