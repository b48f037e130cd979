"""The records of a run: one per event, shared by the fan-out, the store, every output and the TUI.

A host's run ends in one ``HostResult`` (its status is one of DESIGN §5); matches, state changes,
progress and failed attempts to be retried arrive before it as events; a ``Summary`` closes the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
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


def is_final(status: HostStatus, reason: str | None) -> bool:
    """Whether a host's status is its agent's last word on the action: an answer, or a refusal
    other than ``busy``. ``results resume`` sends the action again to every other host."""
    return status in ANSWERED or (status == "rejected" and reason != "busy")


@dataclass(slots=True)
class HostResult:
    host: str
    status: HostStatus
    reason: str | None = None
    detail: str = ""
    matches: int = 0
    elapsed_ms: int = 0
    agent: dict[str, Any] | None = None
    replay: bool = False
    """The agent answered from the outcome it stored when it ran the action before."""
    ran_at: int | None = None
    """With ``replay``: when the action ran on that agent (epoch seconds), if known."""
    attempts: int = 1
    """Attempts made on this host (more than one with ``--until-expiry`` retries)."""

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
            "replay": self.replay,
            "ran_at": self.ran_at,
            "attempts": self.attempts,
        }

    @property
    def replay_note(self) -> str:
        """How text output marks a replayed answer: ``replayed (ran 2026-11-30 14:02:11)``."""
        if not self.replay:
            return ""
        if self.ran_at is None:
            return "replayed (ran earlier)"
        return f"replayed (ran {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.ran_at))})"


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A failed attempt on a host that will be tried again (``--until-expiry``)."""

    host: str
    attempt: int
    status: HostStatus
    reason: str | None
    detail: str
    retry_in_ms: int

    def to_event(self) -> dict[str, Any]:
        return {
            "event": "retry",
            "host": self.host,
            "attempt": self.attempt,
            "status": self.status,
            "reason": self.reason,
            "detail": self.detail,
            "retry_in_ms": self.retry_in_ms,
        }

    @property
    def text(self) -> str:
        """``retry in 40 s, attempt 3, last: unreachable: connection refused``."""
        return self.text_in(self.retry_in_ms / 1000)

    def text_in(self, seconds: float) -> str:
        """``text`` with ``seconds`` left before the next attempt (the TUI counts them down)."""
        last = ": ".join(x for x in (self.status, self.reason, self.detail) if x)
        return f"retry in {seconds:.0f} s, attempt {self.attempt}, last: {last}"


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


Event = StateEvent | MatchEvent | ProgressEvent | RetryEvent | HostEvent
Sink = Callable[[Event], None]
#: The ``event`` key of each event class but ``HostEvent`` on the pipe from a shard worker.
_EVENT_KINDS: dict[str, type[StateEvent | MatchEvent | ProgressEvent | RetryEvent]] = {
    "state": StateEvent,
    "match": MatchEvent,
    "progress": ProgressEvent,
    "retry": RetryEvent,
}


def encode_event(event: Event) -> dict[str, Any]:
    """One event as a JSON-able dict, for the pipe from a shard worker to the parent."""
    if isinstance(event, HostEvent):
        return {"event": "host", "result": asdict(event.result)}
    kind = next(k for k, cls in _EVENT_KINDS.items() if type(event) is cls)
    return {"event": kind, **{f.name: getattr(event, f.name) for f in fields(event)}}


def decode_event(raw: dict[str, Any]) -> Event:
    """The event ``encode_event`` made ``raw`` from."""
    kind = raw.pop("event")
    if kind == "host":
        return HostEvent(HostResult(**raw["result"]))
    return _EVENT_KINDS[kind](**raw)


@dataclass
class Summary:
    action_id: str
    results: dict[str, HostResult] = field(default_factory=dict)
    elapsed_ms: int = 0
    run_id: str = ""
    """The run in the store (the action id, or ``ID.N`` for its N-th launch there)."""

    def count(self, *statuses: str) -> int:
        return sum(1 for r in self.results.values() if r.status in statuses)

    @property
    def failed(self) -> int:
        return len(self.results) - self.count(*ANSWERED)

    def to_event(self) -> dict[str, Any]:
        return {
            "event": "summary",
            "action_id": self.action_id,
            "run_id": self.run_id,
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
