"""The ``yara`` module: YARA rules, sent as source text, run on files and process memory.

Rules are compiled on the agent (no libyara version skew between console and agent), with
``include`` refused: an action must not make the agent read its own files as rules. Files are
chosen by the file module's metadata filters (name, path_re, size, mtime, mode) over the shared
tree walker of ``modules.fs.walk``; each file is opened without following symlinks and handed
to libyara as ``/proc/self/fd/N``, so what is scanned is exactly what was listed.

Process memory is read through descriptors of ``/proc/PID/maps`` and ``mem`` that the operation's
child opened before Landlock (``modules.proc_snapshot``; libyara's own ``match(pid=)`` would open
them after, and Landlock denies that), its readable regions in address order up to
``max_process_size`` bytes, and matched as one buffer; offsets are reported as virtual addresses.
Unlike libyara's own process scan, ``filesize`` is the bytes read and a string could match across
the join of two regions. The agent's own processes are never opened.

Rows say which rules matched with their tags, meta and the offsets of each string, never the
matched bytes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

from modules.base import Column, LimitReached, Module, Needs, Param, RunContext
from modules.fs.filters import meta_checks
from modules.fs.params import MAX_DEPTH, META_FILTERS, PATHS, XDEV
from modules.fs.walk import Found, Root, walk
from modules.proc_snapshot import Snapshot, Wants, run_search, take
from modules.process import read_memory
from modules.regex import text_search
from modules.soft_errors import MAX_ERRORS, SoftErrors
from protocol.errors import ParamError

#: Offsets reported per string; ``count`` still says how many there were.
MAX_OFFSETS = 100
#: Files up to this size are read and matched in memory rather than opened again by libyara.
_READ_WHOLE = 4 << 20


def compile_rules(source: str) -> Any:
    """Compiled rules; ParamError naming the parameter on a syntax error or an include."""
    import yara  # heavy import, only when rules are compiled

    try:
        return yara.compile(source=source, includes=False)
    except yara.Error as err:
        raise ParamError(f"rules: invalid yara rules: {err}") from None


def file_checks(params: dict[str, Any], now: float) -> Callable[[Found], bool]:
    """The file module's metadata filters (``modules.fs.filters``), every value a check that
    must hold, as one predicate; a filter on size, age or mode takes the entry's lstat."""
    checks = meta_checks({**params, "match_any": False, "mismatch": []}, now)

    def passes(found: Found) -> bool:
        name = found.shown.rpartition("/")[2]
        return all(c.test(name, found.shown, found.st if c.needs_stat else None) for c in checks)

    return passes


def describe_matches(matches: list[Any], where: Callable[[int], int] = int) -> list[dict[str, Any]]:
    """yara.Match objects as JSON: rule, tags, meta, string identifiers and offsets (``where``
    turns an offset in the scanned data into the one reported)."""
    out = []
    for m in matches:
        strings = []
        for s in m.strings:
            offsets = [where(i.offset) for i in s.instances]
            strings.append(
                {
                    "identifier": s.identifier,
                    "offsets": offsets[:MAX_OFFSETS],
                    "count": len(offsets),
                }
            )
        out.append(
            {
                "rule": m.rule,
                "namespace": m.namespace,
                "tags": list(m.tags),
                "meta": dict(m.meta),
                "strings": strings,
            }
        )
    return out


class YaraModule(Module):
    """Runs YARA rules over files chosen like the file module does, and over processes."""

    name = "yara"
    needs = Needs(read=("/proc",), processes=True)
    summary = "YARA rules over files (file module filters) and process memory"
    params = (
        Param(
            "rules", "yara", "YARA rules, as source text (include is not allowed)", required=True
        ),
        PATHS,
        *META_FILTERS,
        MAX_DEPTH,
        Param(
            "max_file_size",
            "int",
            "Skip larger files (bytes)",
            default=256 * 1024 * 1024,
            minimum=0,
        ),
        XDEV,
        Param("pids", "int", "Scan the memory of these processes", repeatable=True, minimum=1),
        Param(
            "max_process_size",
            "int",
            "Scan at most this many bytes of each process's memory (regions in address order)",
            default=128 * 1024 * 1024,
            minimum=1,
        ),
        Param(
            "process_name",
            "regex",
            "Scan the memory of processes whose name matches",
            repeatable=True,
        ),
        Param("fast", "bool", "Stop at the first hit of a string (fewer offsets reported)"),
        Param(
            "timeout_per_target",
            "int",
            "Seconds allowed for scanning one file or process",
            default=60,
            minimum=1,
        ),
        Param(
            "match_limit", "int", "Stop after this many matching targets", default=1000, minimum=1
        ),
        MAX_ERRORS,
    )
    columns = (
        Column("target", "file or process"),
        Column("path", "Scanned file, as seen from the agent's root", "path"),
        Column("pid", "Scanned process", "int"),
        Column(
            "rules",
            "Matching rules: rule, namespace, tags, meta, strings (identifier, offsets, count)",
            "json",
        ),
    )
    example = {
        "rules": 'rule webshell : php { strings: $a = "eval(base64_decode(" condition: $a }',
        "paths": ["/var/www"],
        "name": ["\\.php$"],
        "size": ["<1M"],
    }

    def check(self, params: dict[str, Any]) -> None:
        if not (params["paths"] or params["pids"] or params["process_name"]):
            raise ParamError("paths: give paths, pids or process_name to scan")

    def snapshot(self, params: dict[str, Any]) -> Snapshot | None:
        if not (params["pids"] or params["process_name"]):
            return None
        return take(Wants(maps=True, mem=True))

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        snapshot = ctx.snapshot or self.snapshot(params)
        return run_search(_Scan(params, ctx, snapshot), snapshot)


class _Scan:
    def __init__(self, params: dict[str, Any], ctx: RunContext, snapshot: Snapshot | None) -> None:
        self.p = params
        self.ctx = ctx
        self.snapshot = snapshot
        self.rules = compile_rules(params["rules"])
        import yara  # heavy import, loaded by compile_rules already

        self._yara = yara
        self._options = {
            "timeout": params["timeout_per_target"],
            "fast": params["fast"],
            # Too many matches: libyara caps them, we go on.
            "warnings_callback": lambda _kind, _data: yara.CALLBACK_CONTINUE,
        }
        self.passes = file_checks(params, time.time())
        self.stats = dict.fromkeys(
            (
                "files_scanned",
                "processes_scanned",
                "bytes_scanned",
                "matches",
                "errors",
                "timeouts",
                "skipped",
            ),
            0,
        )
        self._error = SoftErrors(ctx, self.stats, params["max_errors"])

    def run(self) -> None:
        if self.p["paths"]:
            self._files()
        if self.snapshot is not None:
            self._processes(self.snapshot)

    def _match(self, **target: Any) -> list[Any]:
        try:
            return self.rules.match(**target, **self._options)  # type: ignore[no-any-return]
        except self._yara.TimeoutError:
            self.stats["timeouts"] += 1  # counted apart, and reported as an error by the caller
            raise

    def _files(self) -> None:
        import yara  # heavy import

        max_size: int = self.p["max_file_size"]
        stats, passes, cancelled = self.stats, self.passes, self.ctx.cancelled
        for found in walk(
            Root(self.ctx.root),
            self.p["paths"],
            max_depth=self.p["max_depth"],
            xdev=self.p["xdev"],
            on_error=self._error,
        ):
            if cancelled():
                return
            try:
                if not found.is_regular() or not passes(found):
                    continue
                fd = found.open()
            except OSError as err:
                self._error(found.shown, err)
                continue
            try:
                now = os.fstat(fd)
                if found.replaced(now):
                    stats["skipped"] += 1  # replaced since it was listed
                    continue
                if now.st_size > max_size:
                    stats["skipped"] += 1
                    continue
                stats["files_scanned"] += 1
                matches = self._scan_fd(fd, now.st_size)
                stats["bytes_scanned"] += now.st_size
            except (yara.Error, OSError) as err:
                self._error(found.shown, err)
                continue
            finally:
                os.close(fd)
            if matches:
                self._emit({"target": "file", "path": found.shown, "pid": None}, matches)
            if stats["files_scanned"] % 256 == 0:
                self.ctx.progress(stats)

    def _scan_fd(self, fd: int, size: int) -> list[Any]:
        """Run the rules on an open file: a small one read whole and matched in memory (a
        read is cheaper than libyara's own open, mmap and munmap); a larger one handed to
        libyara by ``/proc/self/fd/N``, a name that is this descriptor, not a path someone
        could swap for a symlink meanwhile."""
        if size <= _READ_WHOLE:
            data = os.read(fd, size + 1)
            if len(data) <= size:  # not grown since fstat: all of it
                return self._match(data=data)
        return self._match(filepath=f"/proc/self/fd/{fd}")

    def _processes(self, snapshot: Snapshot) -> None:
        import psutil  # heavy import
        import yara

        if snapshot.shortfall:
            self.ctx.error(snapshot.shortfall)
        wanted = set(self.p["pids"])
        names = [text_search(p) for p in self.p["process_name"]]
        for pid in snapshot.processes if names else ():
            with contextlib.suppress(psutil.Error):
                name = psutil.Process(pid).name()
                if any(found(name) for found in names):
                    wanted.add(pid)
        for pid in sorted(wanted):
            if self.ctx.cancelled():
                return
            if pid in snapshot.protected:
                self.stats["skipped"] += 1
                continue
            handles = snapshot.processes.get(pid)
            if handles is None:
                self._error(f"pid {pid}", OSError("no such process"))
                continue
            try:
                maps, mem = handles.fd("maps"), handles.fd("mem")
                if maps is None or mem is None:
                    continue  # gone, or past the descriptor limit (said once)
                self.stats["processes_scanned"] += 1
                memory = read_memory(maps, mem, self.p["max_process_size"])
                self.stats["bytes_scanned"] += len(memory.data)
                matches = self._match(data=memory.data)
            except (yara.Error, OSError) as err:
                self._error(f"pid {pid}", err)
                continue
            finally:
                handles.close()
            if memory.unread:
                self._error(f"pid {pid}", f"{memory.unread} bytes past max_process_size unread")
            if matches:
                row = {"target": "process", "path": None, "pid": pid}
                self._emit(row, matches, memory.address)

    def _emit(
        self, row: dict[str, Any], matches: list[Any], where: Callable[[int], int] = int
    ) -> None:
        row["rules"] = describe_matches(matches, where)
        self.ctx.emit(row)
        self.stats["matches"] += 1
        limit: int = self.p["match_limit"]
        if self.stats["matches"] >= limit:
            raise LimitReached(f"yara: match_limit of {limit} reached", dict(self.stats))
