"""What a module sees of the world while it runs: where to look, and where results go.

The agent implements ``RunContext`` over its child-process pipe; ``CollectingContext`` keeps
everything in lists, for tests and for running a module locally.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from modules.bounds import MAX_ERROR_TEXT, bound_row, cut_text


class LimitReached(Exception):
    """A cap on results was hit: the module's own ``match_limit`` or, raised by ``emit``, the
    agent's. Not an error (outside the ``SpyglassError`` tree): a signal that ends the operation
    normally; the runner maps it to done status ``limit``; ``stats`` are the counters so far."""

    def __init__(self, message: str, stats: dict[str, int] | None = None) -> None:
        super().__init__(message)
        self.stats: dict[str, int] = dict(stats or {})


class RunContext(ABC):
    """The channel between a running module and whoever runs it."""

    #: The kernel confinement of the process running the module, as the agent reports it
    #: (e.g. ``landlock-v7 seccomp no-new-privs caps``); "none" when run in place.
    confinement = "none"
    #: What ``Module.snapshot`` took in the operation's child before Landlock; None when run in
    #: place (the module then takes it itself).
    snapshot: Any = None

    def __init__(self, root: str = "/") -> None:
        #: Folder investigated as "/": file-system modules read below it and report paths as
        #: seen from inside it, and never follow a symlink out of it.
        self.root = root

    def emit(self, row: dict[str, Any]) -> None:
        """Send one result row (keys: the module's columns), its values bounded so that it
        always fits a frame (``modules.bounds``); may raise ``LimitReached``."""
        self.put_row(bound_row(row))

    def error(self, message: str) -> None:
        """A soft error (unreadable file, ...): counted and listed, never fatal."""
        self.put_error(cut_text(message, MAX_ERROR_TEXT))

    @abstractmethod
    def put_row(self, row: dict[str, Any]) -> None:
        """Deliver a row ``emit`` bounded; may raise ``LimitReached``."""

    @abstractmethod
    def put_error(self, message: str) -> None:
        """Deliver a soft error message ``error`` bounded."""

    @abstractmethod
    def progress(self, stats: dict[str, int]) -> None:
        """Counters so far; modules may call this often, implementations throttle."""

    def cancelled(self) -> bool:
        """True once the investigator cancelled; modules poll it and stop early."""
        return False


class CollectingContext(RunContext):
    """Keeps rows, errors and the last progress in memory.

    ``columns``, when given, makes ``emit`` reject rows whose keys are not exactly those columns,
    so tests catch a module that drifts from its declaration. ``max_rows`` imitates the agent's
    hard cap by raising ``LimitReached`` from ``emit``.
    """

    def __init__(
        self,
        root: str = "/",
        *,
        columns: Iterable[str] | None = None,
        max_rows: int | None = None,
    ) -> None:
        super().__init__(root)
        self.rows: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.last_progress: dict[str, int] = {}
        self.progress_calls = 0
        self._columns = None if columns is None else set(columns)
        self._max_rows = max_rows
        self._cancelled = False

    def put_row(self, row: dict[str, Any]) -> None:
        if self._columns is not None and set(row) != self._columns:
            raise ValueError(f"row keys {sorted(row)} differ from columns {sorted(self._columns)}")
        if self._max_rows is not None and len(self.rows) >= self._max_rows:
            raise LimitReached(f"more than {self._max_rows} rows")
        self.rows.append(row)

    def progress(self, stats: dict[str, int]) -> None:
        self.progress_calls += 1
        self.last_progress = dict(stats)

    def put_error(self, message: str) -> None:
        self.errors.append(message)

    def cancel(self) -> None:
        """Make ``cancelled()`` true, as the agent does when the console sends ``cancel``."""
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled
