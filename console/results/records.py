"""The records of a run: one per event, shared by the fan-out, the store, every output and the TUI.

A host's run ends in one ``HostResult`` (its status is one of DESIGN §5); matches, state changes and
progress arrive before it as events; a ``Summary`` closes the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

HostStatus = Literal[
    "matched",
    "nomatch",
    "unreachable",
    "auth-failed",
    "hostkey-mismatch",
    "rejected",
    "timeout",
    "error",
    "cancelled",
]
ANSWERED: tuple[HostStatus, ...] = ("matched", "nomatch")
#: Every other status: the host did not answer the action (in HostStatus order).
FAILED_STATUSES: tuple[HostStatus, ...] = tuple(
    s for s in get_args(HostStatus) if s not in ANSWERED
)
HostState = Literal["queued", "connecting", "running"]


@dataclass(slots=True)
class HostResult:
    host: str
    status: HostStatus
    reason: str | None = None
    detail: str = ""
    matches: int = 0
    elapsed_ms: int = 0
    agent: dict[str, Any] | None = None

    @property
    def status_text(self) -> str:
        """The status as tables show it: ``rejected:acl`` when there is a reason."""
        return f"{self.status}:{self.reason}" if self.reason else self.status

    def to_event(self) -> dict[str, Any]:
        """The JSON form (``run --json``, ``results show --json``)."""
        return {
            "event": "host",
            "host": self.host,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "matches": self.matches,
            "elapsed_ms": self.elapsed_ms,
        }


@dataclass(frozen=True, slots=True)
class StateEvent:
    host: str
    state: HostState


@dataclass(frozen=True, slots=True)
class MatchEvent:
    host: str
    op: int
    module: str
    data: dict[str, Any]

    def to_event(self) -> dict[str, Any]:
        return {
            "event": "match",
            "host": self.host,
            "op": self.op,
            "module": self.module,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    host: str
    op: int
    stats: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HostEvent:
    result: HostResult


Event = StateEvent | MatchEvent | ProgressEvent | HostEvent
Sink = Callable[[Event], None]


@dataclass
class Summary:
    action_id: str
    results: dict[str, HostResult] = field(default_factory=dict)
    elapsed_ms: int = 0

    def count(self, *statuses: str) -> int:
        return sum(1 for r in self.results.values() if r.status in statuses)

    @property
    def failed(self) -> int:
        return len(self.results) - self.count(*ANSWERED)

    def to_event(self) -> dict[str, Any]:
        return {
            "event": "summary",
            "action_id": self.action_id,
            "hosts": len(self.results),
            "matched": self.count("matched"),
            "nomatch": self.count("nomatch"),
            "failed": self.failed,
            "elapsed_ms": self.elapsed_ms,
        }

    def exit_status(self) -> int:
        """0 all answered and something matched; 1 all answered, nothing matched; 3 some failed."""
        if self.failed:
            return 3
        return 0 if self.count("matched") else 1
