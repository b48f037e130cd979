"""Watchers (MIG's ``fswatch``): paths an agent keeps watching until the signed action expires.

Four modules, so that each has its own ACL rule (``[acl.MODULE]``):

- ``fswatch`` arms a watcher: the paths, whether to follow subdirectories, the file module's
  filters (name, path, size, age, mode, content, digests) and YARA ``rules``, which every changed
  file is compared with. It is the powerful one: an unattended, lasting watch. Its recommended
  rule is two approvers (``default_weight``; docs/operations.md).
- ``fswatch_cancel`` stops a watcher before its expiry; ``fswatch_list`` lists the watchers;
  ``fswatch_alerts`` reads (and with ``follow`` streams) the alerts. Reading alerts is reading
  findings: a signed action like any other (docs/security.md).

Where a watcher runs (decided here, carried out by ``agentd.watch``): in the agent process, its
inotify descriptor read by the agent's event loop, because only that process lives as long as
the watch. Nothing of an attacker's file is opened there: each batch of changed paths is matched
by ``FswatchModule.run`` in an operation child forked from the zygote (``agentd.runner``), under
the same kernel confinement and rlimits as a ``file`` operation: the file module's filters, then
the watcher's YARA rules, compiled once when the watcher is armed (the agent compiles signed rules
anyway, to validate them) and loaded by each batch's child. The four modules themselves are
answered by the agent from its own state (no file is read); the other three's ``run`` in a child
has no watcher to see.

Resource bounds (agent-wide unless said, reported by the ``agent`` module's ``limits`` column):
``LIMITS`` below. Changed paths wait in a set per watcher of at most ``max_pending`` (a parameter,
capped by ``LIMITS``); a path arriving while it is full, or beyond ``events_per_second`` sustained,
is counted as dropped, never silently lost; so are the kernel's own queue overflows.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import replace
from typing import Any, ClassVar

from modules.base import Column, Module, Needs, Param, RunContext
from modules.file import FileModule
from modules.file.declaration import COLUMNS as FILE_COLUMNS
from modules.file.declaration import PARAMS as FILE_PARAMS
from modules.file.search import FileSearch
from modules.fs.rootpath import Root
from modules.fs.walk import walk
from modules.yara import YaraModule, compile_rules

#: Agent-wide bounds of the watchers (``agentd.watch`` enforces them).
LIMITS: dict[str, int] = {
    "watchers": 16,  # armed at once
    "watches": 8192,  # inotify watch descriptors, all watchers together
    "pending": 20000,  # changed paths waiting to be matched, per watcher
    "events_per_second": 5000,  # sustained per watcher; bursts up to ``pending``
    "alerts": 50000,  # kept on disk, in rotated segments; older ones are dropped and counted
    "batch": 500,  # changed paths matched by one confined ``file`` child
}


#: The file parameters a watcher does not take: it matches changed paths, it walks nothing.
_WALK_ONLY = {"match_limit", "max_depth"}
#: The yara module's ``rules``, optional here.
RULES = replace(
    next(p for p in YaraModule.params if p.name == "rules"),
    required=False,
    help="YARA rules (source text, include is not allowed) a changed file must also match; "
    "the alert names the matching rules",
)
#: What a batch request of the agent to its own child carries beyond the file parameters: the
#: watcher's rules, compiled once (``compiled_rules``). Not a parameter, so no action can give it.
COMPILED = "compiled_rules"
#: Seconds the rules may take on one file (the yara module's default ``timeout_per_target``);
#: past it the file is a soft error, and the batch goes on.
SCAN_TIMEOUT = 60

WATCHER_COLUMNS = (
    Column("watcher", "The watcher's id: the id of the signed action that armed it"),
    Column("digest", "SHA-256 of that action's canonical bytes"),
    Column("status", "armed, re-armed, cancelled, expired, or running"),
    Column("paths", "Watched paths, as seen from the agent's root", "list"),
    Column("recursive", "Subdirectories are watched too", "bool"),
    Column("expires", "When the watcher stops (the action's expiry)", "time"),
    Column("watches", "inotify watches it holds", "int"),
    Column("events", "Changed paths seen", "int"),
    Column("alerts", "Alerts raised", "int"),
    Column(
        "dropped", "Changed paths dropped above the bounds (pending, rate, kernel queue)", "int"
    ),
    Column("signers", "Fingerprints of the investigators who signed it", "list"),
)

ALERT_COLUMNS = (
    Column("seq", "Alert number on this agent (increasing; give it to --since)", "int"),
    Column("time", "When the alert was raised", "time"),
    Column("watcher", "Id of the signed action that armed the watcher"),
    Column("digest", "SHA-256 of that action's canonical bytes"),
    Column("signers", "Fingerprints of the investigators who signed that action", "list"),
    *(c for c in FILE_COLUMNS),
    Column("rules", "The watcher's YARA rules that matched the file", "list"),
)


def compiled_rules(source: str) -> str:
    """The rules compiled, as the text a batch request carries (``COMPILED``)."""
    buffer = io.BytesIO()
    compile_rules(source).save(file=buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _load_rules(compiled: str) -> Any:
    import yara  # heavy import, only for a watcher with rules

    return yara.load(file=io.BytesIO(base64.b64decode(compiled)))


class _AgentState(Module):
    """A module the agent answers from its watchers' state, not in a child: a child has no
    watcher to report, so its ``run`` reports nothing."""

    needs = Needs()

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        return {"rows": 0}


class FswatchModule(Module):
    """Arms a watcher (the agent answers it with the watcher's row); in a child, ``run`` matches
    one batch of a watcher's changed paths."""

    name = "fswatch"
    needs = FileModule.needs
    default_weight = 2  # an unattended, lasting watch: two approvers
    summary = "Watch paths until the action expires; alert on changed files matching the filters"
    params = (
        *(p for p in FILE_PARAMS if p.name not in _WALK_ONLY),
        RULES,
        Param("recursive", "bool", "Watch subdirectories too (and those created later)"),
        Param(
            "max_pending",
            "int",
            f"Changed paths waiting to be matched before more are dropped "
            f"(at most {LIMITS['pending']})",
            default=LIMITS["pending"],
            minimum=1,
        ),
    )
    columns = WATCHER_COLUMNS
    example: ClassVar[dict[str, Any]] = {
        "paths": ["/srv/www"],
        "recursive": True,
        "name": ["\\.php$"],
        "content": ["eval\\(base64_decode"],
    }

    def check(self, params: dict[str, Any]) -> None:
        from protocol.errors import ParamError

        if params["max_pending"] > LIMITS["pending"]:
            raise ParamError(f"max_pending: at most {LIMITS['pending']}")

    def run(self, params: dict[str, Any], ctx: RunContext) -> dict[str, int]:
        """One batch, as ``agentd.watch`` asks its child: the watcher's params with ``paths``
        the changed paths and ``COMPILED`` its rules as compiled when it was armed (None
        without rules). Rows are alerts but the watcher's own fields. Params without
        ``COMPILED`` (an action's, which cannot carry it) have no batch: the agent answers an
        ``fswatch`` action itself, and a child has no watcher to arm."""
        if COMPILED not in params:
            return {"rows": 0}
        own = ("recursive", "max_pending", "rules", COMPILED)
        filters = {k: v for k, v in params.items() if k not in own and v is not None}
        file_params = FileModule().validate({**filters, "match_limit": LIMITS["batch"]})
        rules = None if params[COMPILED] is None else _load_rules(params[COMPILED])
        gate = _RulesGate(ctx, rules)
        stats = FileSearch(file_params, gate).run()
        return {**stats, **gate.stats}


class _RulesGate(RunContext):
    """The file module's rows pass through here: each file that passed its filters is scanned
    with the rules (opened again below the root, never through a symlink); only a file some rule
    matches goes on, with the rules' names. Without rules every row goes on."""

    def __init__(self, ctx: RunContext, rules: Any) -> None:
        super().__init__(ctx.root)
        self.ctx, self.rules = ctx, rules
        self.stats = {"yara_scanned": 0} if rules is not None else {}

    def put_row(self, row: dict[str, Any]) -> None:
        names: list[str] = []
        if self.rules is not None:
            names = self._scan(row["path"])
            if not names:
                return
        self.ctx.emit({**row, "rules": names})

    def _scan(self, shown: str) -> list[str]:
        import yara  # loaded with the rules already

        for found in walk(Root(self.root), [shown], max_depth=0, on_error=self._error):
            try:
                fd = found.open()
            except OSError as err:
                self._error(shown, err)
                return []
            try:
                if found.replaced(os.fstat(fd)):
                    return []  # swapped since the file module read it: its own event comes
                self.stats["yara_scanned"] += 1
                matches = self.rules.match(filepath=f"/proc/self/fd/{fd}", timeout=SCAN_TIMEOUT)
            except (yara.Error, OSError) as err:
                self._error(shown, err)
                return []
            finally:
                os.close(fd)
            return sorted({m.rule for m in matches})
        return []

    def _error(self, shown: str, err: Exception) -> None:
        self.ctx.error(f"{shown}: yara: {err}")

    def put_error(self, message: str) -> None:
        self.ctx.put_error(message)

    def progress(self, stats: dict[str, int]) -> None:
        self.ctx.progress({**stats, **self.stats})

    def cancelled(self) -> bool:
        return self.ctx.cancelled()


class FswatchCancelModule(_AgentState):
    name = "fswatch_cancel"
    summary = "Stop a watcher before its expiry"
    params = (
        Param("watcher", "string", "The watcher's id (the action id that armed it)", required=True),
    )
    columns = WATCHER_COLUMNS
    example: ClassVar[dict[str, Any]] = {"watcher": "01JD3M8Q0000000000000000AA"}


class FswatchListModule(_AgentState):
    name = "fswatch_list"
    summary = "The watchers armed on the agent, with their counters"
    params = ()
    columns = WATCHER_COLUMNS
    example: ClassVar[dict[str, Any]] = {}


class FswatchAlertsModule(_AgentState):
    name = "fswatch_alerts"
    summary = "The alerts the watchers raised (stored on the agent); follow streams new ones"
    params = (
        Param("since", "int", "Only alerts numbered above this", default=0, minimum=0),
        Param("watcher", "string", "Only this watcher's alerts"),
        Param("follow", "bool", "Keep streaming new alerts until the action expires"),
    )
    columns = (
        *ALERT_COLUMNS,
        Column(
            "dropped", "Alerts rotated out of this agent's store so far (above its bound)", "int"
        ),
    )
    example: ClassVar[dict[str, Any]] = {"since": 0}
