"""Alerts: what the agents' watchers raised, streaming in, and the watchers themselves.

One signed action (``console.actions.watchers.follow_action``) per follow: each targeted agent
lists its watchers (expiry, counters, dropped), then sends its stored alerts and every new one as
it is raised. Each alert names the action that armed its watcher (id) and who signed it. The
follow ends at the action's expiry or the agent's ``module_timeout``; the screen then follows
again (a new signature), from the last alert it holds, and shows no alert twice. Launched and
stored like ``spyglass alerts --follow`` (``console.fanout.investigation``).

Everything shown comes from agents, so file names are attacker-chosen: cells are plain text
(``VirtualTable`` never parses markup) with control characters escaped (``tui.model.format``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Footer, Header, Input, Label, Static

from console.actions.watchers import ALERTS_OP, LIST_OP, cancel_action, follow_action
from console.fanout.dispatch import Dispatcher
from console.fanout.investigation import Investigation
from console.fanout.ssh_transport import SshTransport
from console.results import records
from console.results.text import plural, printable
from inventory.model import Host
from protocol.action import Action
from protocol.envelope import Envelope
from protocol.errors import SpyglassError
from tui.model.provenance import signer_ids
from tui.model.rows import ColumnSpec, RowModel
from tui.model.session import Session
from tui.screens.compose import ComposeScreen
from tui.screens.confirm import ConfirmLaunch
from tui.screens.filtered import FilteredScreen
from tui.screens.row_detail import RowDetailScreen
from tui.widgets.virtual_table import VirtualTable

Sign = Callable[[Envelope], Awaitable[Envelope | None]]
"""Adds the investigator's signature (asking for a passphrase if need be); None: not signed."""

EXPIRE = "1h"
"""Lifetime of each follow action (the agents' ``module_timeout`` may end it sooner)."""
CANCEL_EXPIRE = "5m"
"""Lifetime of a cancel action (``spyglass watchers cancel``'s default)."""
REFOLLOW_AFTER = 5.0
"""Seconds at least between the starts of two follows, should agents end them at once."""
REPAINT = 0.1

ALERT_COLUMNS = (
    ColumnSpec("time", "time", "time", 19, 19),
    ColumnSpec("host", "host", "text", 4, 24),
    ColumnSpec("path", "path", "path", 8, 60),
    ColumnSpec("rules", "rules", "list", 5, 30),
    ColumnSpec("matched", "matched", "list", 7, 30),
    ColumnSpec("watcher", "watcher (action id)", "text", 8, 64),
    ColumnSpec("signers", "signed by", "list", 9, 40),
    ColumnSpec("seq", "seq", "int", 3, 10),
)
WATCHER_COLUMNS = (
    ColumnSpec("host", "host", "text", 4, 24),
    ColumnSpec("watcher", "watcher (action id)", "text", 8, 64),
    ColumnSpec("status", "status", "text", 6, 40),
    ColumnSpec("expires", "expires", "time", 19, 19),
    ColumnSpec("alerts", "alerts", "int", 6, 10),
    ColumnSpec("dropped", "dropped", "int", 7, 10),
    ColumnSpec("events", "events", "int", 6, 10),
    ColumnSpec("paths", "paths", "list", 5, 40),
    ColumnSpec("signers", "signed by", "list", 9, 40),
)


def key_ids(fingerprints: Any) -> tuple[str, ...]:
    """Signer fingerprints as the rest of the TUI shows them: the last 16 hex digits."""
    if not isinstance(fingerprints, list):
        return ()
    return tuple(str(f)[-16:] for f in fingerprints)


def _listed(value: Any) -> Any:
    """A list value as a tuple (rows hold tuples); anything else as it came."""
    return tuple(value) if isinstance(value, list) else value


class AlertsScreen(FilteredScreen):
    FILTER = "#alerts-filter"
    MAIN = "#alerts"
    BINDINGS = [
        # priority: the keys typed right after / land in the filter (see WatchScreen)
        Binding("slash", "focus_filter", "Filter", id="alerts.filter", priority=True),
        Binding("ctrl+t", "focus_target", "Target", id="alerts.target"),
        Binding("r", "refollow", "Refresh", id="alerts.refresh"),
        Binding("x", "cancel_watcher", "Cancel watcher", id="alerts.cancel_watcher"),
        Binding("w", "focus_watchers", "Watchers", id="alerts.watchers", show=False),
        Binding("a", "focus_alerts", "Alerts", id="alerts.alerts", show=False),
        Binding("escape", "back", "Back", id="alerts.back"),
    ]
    DEFAULT_CSS = """
    #alerts-title { height: 2; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    #alerts-target, #alerts-filter { margin: 0 1; height: 1; border: none; padding: 0 1;
        background: $boost; }
    #alerts-target:focus, #alerts-filter:focus { border: none; background: $accent 20%; }
    #watchers-pane { height: 1fr; min-height: 7; max-height: 12; border-top: solid $panel; }
    #alerts-pane { height: 3fr; border-top: solid $panel; }
    #watchers-label, #alerts-label { padding: 0 1; width: 1fr; height: 1; }
    """

    def __init__(self, session: Session, sign: Sign, target: str = "all") -> None:
        super().__init__()
        self.session = session
        self.sign = sign
        self.target = target
        self.alerts = RowModel(ALERT_COLUMNS)
        self.watchers = RowModel(WATCHER_COLUMNS)
        self.results: dict[str, records.HostResult] = {}
        """The current follow's hosts that ended it, by name."""
        self.hosts: list[str] = []
        self.last_seq: dict[str, int] = {}
        """The highest alert number shown, per host: the next follow starts above it."""
        self.phase = "starting"
        self.action_id = ""
        self.signers: list[str] = []
        self._investigation: Investigation | None = None
        self._dirty = True

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="alerts-title")
        yield Input(self.target, placeholder="target (ctrl+t, Enter follows)", id="alerts-target")
        with Vertical(id="watchers-pane"):
            yield Label("", id="watchers-label")
            yield VirtualTable(self.watchers, id="watchers")
        with Vertical(id="alerts-pane"):
            yield Label("", id="alerts-label")
            yield Input(
                placeholder=r"filter (/): regex, or COLUMN~regex: path~\.php$ rules~shell",
                id="alerts-filter",
            )
            yield VirtualTable(self.alerts, follow=True, id="alerts")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.title = "spyglass"
        self.sub_title = "alerts"
        self.query_one("#alerts", VirtualTable).focus()
        self.set_interval(REPAINT, self._repaint)
        self.follow()

    def on_unmount(self) -> None:
        if self._investigation is not None:
            self._investigation.cancel()

    # -- following ---------------------------------------------------------------------------
    def follow(self) -> None:
        """Start following (again), listing the watchers afresh: the current follow, if any,
        is cancelled first (its worker too, so it does not follow again by itself)."""
        if not self.is_attached:
            return
        if self._investigation is not None:
            self._investigation.cancel()
        self._follow(self.target)

    @work(group="alerts", exclusive=True, exit_on_error=False)
    async def _follow(self, target: str) -> None:
        try:
            hosts = self.session.select(target)
        except SpyglassError as err:
            self.set_phase(f"not following: {err}")
            return
        if not hosts:
            self.set_phase(f"not following: target {target!r} matches no host")
            return
        since = min((self.last_seq.get(h.name, 0) for h in hosts), default=0)
        try:
            action = follow_action(target, EXPIRE, since)
        except SpyglassError as err:
            self.set_phase(f"not following: {err}")
            return
        self.set_phase("signing…")
        envelope = await self.sign(Envelope(action))
        if envelope is None:
            self.set_phase("not following: nothing was signed (r tries again)")
            return
        self.action_id, self.signers = action.id, signer_ids(envelope.signatures)
        self.hosts = [h.name for h in hosts]
        self.results = {}
        self.watchers.clear()  # listed again by each host as it starts
        dispatcher = Dispatcher(SshTransport(self.session.pool()))
        investigation = Investigation(envelope, hosts, dispatcher, self.session.store)
        self._investigation = investigation
        self.set_phase("following")
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await investigation.run(self.receive)
        except SpyglassError as err:
            self.set_phase(f"following failed: {err}")
            return
        finally:
            if self._investigation is investigation:
                self._investigation = None
        answered = any(r.status in records.ANSWERED for r in self.results.values())
        if not answered:
            self.set_phase("following ended: no host answered (r follows again)")
            return
        self.set_phase("following ended: following again…")
        delay = REFOLLOW_AFTER - (loop.time() - started)
        self.set_timer(max(REPAINT, delay), self.follow)

    def receive(self, event: records.Event) -> None:
        """One event of the follow, on the app's loop: rows go to the models, the repaint
        timer draws them."""
        if isinstance(event, records.MatchEvent) and isinstance(event.data, dict):
            if event.op == LIST_OP:
                self._watcher(event.host, event.data)
            elif event.op == ALERTS_OP:
                self._alert(event.host, event.data)
        elif isinstance(event, records.HostEvent):
            self.results[event.result.host] = event.result
        self._dirty = True

    def _alert(self, host: str, data: dict[str, Any]) -> None:
        seq = data.get("seq")
        if not isinstance(seq, int) or self.alerts.key_index((host, seq)) is not None:
            return  # already shown by an earlier follow
        self.last_seq[host] = max(seq, self.last_seq.get(host, 0))
        raw = (
            data.get("time"),
            host,
            data.get("path"),
            _listed(data.get("rules")),
            _listed(data.get("matched")),
            data.get("watcher"),
            key_ids(data.get("signers")),
            seq,
        )
        self.alerts.extend([(raw, (host, seq), None)])

    def _watcher(self, host: str, data: dict[str, Any]) -> None:
        raw = (
            host,
            data.get("watcher"),
            data.get("status"),
            data.get("expires"),
            data.get("alerts"),
            data.get("dropped"),
            data.get("events"),
            _listed(data.get("paths")),
            key_ids(data.get("signers")),
        )
        self.watchers.upsert((raw, (host, data.get("watcher")), None))

    def set_phase(self, text: str) -> None:
        self.phase = text
        self._dirty = True

    # -- drawing -------------------------------------------------------------------------------
    def _repaint(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.query_one("#watchers", VirtualTable).refresh_rows()
        self.query_one("#alerts", VirtualTable).refresh_rows()
        self.query_one("#alerts-title", Static).update(self._title(), layout=False)
        self.query_one("#watchers-label", Label).update(
            Text(f"watchers: {len(self.watchers)}", style="bold"), layout=False
        )
        label = Text(f"alerts: {self.alerts.total}", style="bold")
        row_filter = self.alerts.row_filter
        if row_filter.error:
            label.append(f"  filter not applied: {row_filter.error}", style="bold red")
        elif self.alerts.filter_text:
            label.append(f"  {len(self.alerts)} kept by the filter", style="bold yellow")
        self.query_one("#alerts-label", Label).update(label, layout=False)

    def _title(self) -> Text:
        phase_style = "bold cyan" if self.phase == "following" else "bold yellow"
        failed = [r for r in self.results.values() if r.status not in records.ANSWERED]
        line = Text.assemble(
            (printable(self.phase), phase_style),
            ("  target ", "dim"),
            printable(self.target),
            ("  hosts ", "dim"),
            str(len(self.hosts)),
        )
        if failed:
            line.append("  " + plural(len(failed), "host") + " failed: ", style="red")
            line.append(
                ", ".join(printable(f"{r.host} {r.status_text}") for r in failed[:3]), style="red"
            )
        line.append("\n")
        line.append_text(
            Text.assemble(
                ("action ", "dim"),
                self.action_id or "-",
                ("  signed by ", "dim"),
                ", ".join(self.signers) or "-",
            )
        )
        return line

    # -- interaction -----------------------------------------------------------------------------
    @on(VirtualTable.RowSelected, "#alerts")
    def _alert_selected(self, event: VirtualTable.RowSelected) -> None:
        self.app.push_screen(RowDetailScreen("alert", ALERT_COLUMNS, event.row))

    @on(VirtualTable.RowSelected, "#watchers")
    def _watcher_selected(self, event: VirtualTable.RowSelected) -> None:
        self.app.push_screen(RowDetailScreen("watcher", WATCHER_COLUMNS, event.row))

    @on(Input.Submitted, "#alerts-target")
    def _target(self, event: Input.Submitted) -> None:
        target = event.value.strip() or "all"
        if target != self.target:
            self.target = target
            self.alerts.clear()
            self.watchers.clear()
            self.last_seq.clear()
        self.set_focus(self.query_one("#alerts", VirtualTable))
        self.follow()

    @on(Input.Changed, "#alerts-filter")
    def _filter(self, event: Input.Changed) -> None:
        self.alerts.set_filter(event.value)
        table = self.query_one("#alerts", VirtualTable)
        table.follow = not event.value
        table.cursor_row = 0
        self._dirty = True

    @on(Input.Submitted, "#alerts-filter")
    def _filter_done(self) -> None:
        self.set_focus(self.query_one("#alerts", VirtualTable))

    def action_refollow(self) -> None:
        self.follow()

    def action_cancel_watcher(self) -> None:
        """Stop the highlighted watcher before its expiry: a signed ``fswatch_cancel`` for its
        host, after the same confirmation as any launch (or signed only, for a second
        approver)."""
        row = self.query_one("#watchers", VirtualTable).current_row
        if row is None:
            self.notify("no watcher to cancel (w goes to the watchers)")
            return
        name, watcher = row.key
        hosts = [h for h in self.session.hosts if h.name == name]
        if not hosts:
            self.notify(f"{name} is no longer in the inventory", markup=False)
            return
        try:
            action = cancel_action(str(watcher), f"name={name}", CANCEL_EXPIRE)
        except SpyglassError as err:
            self.notify(str(err), severity="error", title="Nothing launched", markup=False)
            return

        def chosen(choice: str | None) -> None:
            if choice == "launch":
                self._cancel(action, hosts[0], row.cells[1])
            elif choice == "sign-only":
                self.post_message(ComposeScreen.SignOnlyRequested(action))

        self.app.push_screen(ConfirmLaunch(action, 1), chosen)

    @work(group="alerts-cancel", exclusive=True, exit_on_error=False)
    async def _cancel(self, action: Action, host: Host, shown: str) -> None:
        envelope = await self.sign(Envelope(action))
        if envelope is None:
            return
        dispatcher = Dispatcher(SshTransport(self.session.pool()))
        investigation = Investigation(envelope, [host], dispatcher, self.session.store)
        result = (await investigation.run(lambda _event: None)).results.get(host.name)
        if result is not None and result.status == "matched":
            self.notify(f"{host.name}: watcher {shown} cancelled", title="Cancelled", markup=False)
            self.follow()  # its row goes, its alerts stay
            return
        why = "no such watcher" if result and result.status == "nomatch" else ""
        if result is not None and not why:
            why = printable(f"{result.status_text} {result.detail}".strip())
        self.notify(f"{host.name}: {why}", title="Not cancelled", severity="error", markup=False)

    def action_focus_target(self) -> None:
        self.set_focus(self.query_one("#alerts-target", Input))

    def action_focus_watchers(self) -> None:
        self.set_focus(self.query_one("#watchers", VirtualTable))

    def action_focus_alerts(self) -> None:
        self.set_focus(self.query_one("#alerts", VirtualTable))
