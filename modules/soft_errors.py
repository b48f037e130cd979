"""Soft errors: what one unreadable or malformed item costs a sweep (a count and a line, never
the sweep), and the ``max_errors`` parameter that bounds how many lines are sent."""

from __future__ import annotations

from modules.base import Param
from modules.context import RunContext

MAX_ERRORS = Param(
    "max_errors",
    "int",
    "Report at most this many soft errors; further ones are only counted",
    default=100,
    minimum=0,
)


def describe(err: BaseException | str) -> str:
    """The short reason of an error: an OSError's strerror, else its message, else its type."""
    if isinstance(err, str):
        return err
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


class SoftErrors:
    """Counts each soft error in ``stats["errors"]`` and reports the first ``limit`` through
    the context, then one line saying that further ones are only counted."""

    def __init__(self, ctx: RunContext, stats: dict[str, int], limit: int) -> None:
        self.ctx = ctx
        self.stats = stats
        self.limit = limit
        stats.setdefault("errors", 0)

    def __call__(self, where: str, err: BaseException | str) -> None:
        self.stats["errors"] += 1
        count = self.stats["errors"]
        if count <= self.limit:
            self.ctx.error(f"{where}: {describe(err)}")
        elif count == self.limit + 1:
            self.ctx.error(f"more than {self.limit} errors: further ones are only counted")
