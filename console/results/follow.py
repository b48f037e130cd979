"""Following a run that another console process writes: its new events, read from the store as
they are committed (SQLite WAL: readers never block the writer), until the run ends or its
writer is gone. ``results follow`` polls it in a loop; the TUI's watch screen on its timer.
"""

from __future__ import annotations

from typing import Literal

from console.results.records import Event
from console.results.store import Store
from console.results.writer import Writer, writer_alive

#: Why following stopped: the run's end is stored, its console died first, or it was deleted.
End = Literal["finished", "gone", "deleted"]


class Follow:
    def __init__(self, store: Store, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.seq = 0
        """The sequence number of the last event handed out."""
        self.writer: Writer | None = None
        """The console that writes (or wrote) the run, as last read."""

    def poll(self) -> tuple[list[Event], End | None]:
        """The events stored since the last poll, and why following ends, if it does.

        The run's row and its writer's liveness are read *before* the events: a finished run has
        stored them all, and a console found dead wrote nothing after.
        """
        run = self.store.run(self.run_id)
        end: End | None = None
        if run is None:
            end = "deleted"
        else:
            self.writer = Writer.of_run(run)
            if run["finished"] is not None:
                end = "finished"
            elif not writer_alive(run):
                end = "gone"
        events = self.store.events(self.run_id, self.seq)
        if events:
            self.seq = events[-1][0]
        return [event for _, event in events], end

    def gone_text(self) -> str:
        """The one line that says a run will not end by itself, and what completes it."""
        who = f"its console ({self.writer})" if self.writer else "its console"
        return (
            f"run {self.run_id} is unfinished and {who} is gone: "
            f"`spyglass results resume {self.run_id}` completes it"
        )
