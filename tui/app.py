"""The spyglass investigator console (Textual): compose, sign, launch, watch, history, approvals.

A front end over ``console/``: fan-out, signing and storage are the engine's; this package only
arranges them on screen. Screens get the session when constructed and post messages (nested on
the screen) that the App handles here; the signing and passphrase loop is ``tui.signing``.
``run_app(args)`` is what ``spyglass`` (no command) and the demo call.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from console.fanout.dispatch import Dispatcher
from console.fanout.investigation import Investigation
from console.fanout.retry import until_expiry
from console.fanout.ssh_transport import SshTransport
from console.results.resume import plan_resume
from inventory.model import Host
from protocol.action import Action
from protocol.envelope import Envelope
from protocol.errors import SpyglassError
from tui import gcpause
from tui.keymap import load_keymap
from tui.model.provenance import signer_ids
from tui.model.runstate import RunState, resume_run
from tui.model.session import Session
from tui.screens.alerts import AlertsScreen
from tui.screens.approvals import ApprovalsScreen
from tui.screens.compose import ComposeScreen
from tui.screens.confirm import ConfirmLaunch
from tui.screens.help import HelpScreen
from tui.screens.history import HistoryScreen
from tui.screens.messages import RerunRequested
from tui.screens.watch import WatchScreen
from tui.signing import Signing


class SpyglassApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "spyglass"
    BINDINGS = [
        Binding("f1", "help", "Help", id="app.help"),
        # Shown by the help screen (f1), not in the footer: an 80-column footer has no room.
        Binding("f2", "compose", "Compose", id="app.compose", show=False),
        Binding("f3", "watch", "Watch", id="app.watch", show=False),
        Binding("f4", "history", "History", id="app.history", show=False),
        Binding("f5", "approvals", "Approvals", id="app.approvals", show=False),
        Binding("f7", "alerts", "Alerts", id="app.alerts", show=False),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True),
        # Priority, so that keys typed right after a Tab land in the next field (ComposeScreen).
        Binding("tab", "focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "focus_previous", "Previous field", show=False, priority=True),
    ]

    def __init__(self, session: Session, *, concurrency: int = 256) -> None:
        super().__init__()
        self.session = session
        self.signing = Signing(self, session)
        self.concurrency = concurrency
        self.current: RunState | None = None
        self._investigation: Investigation | None = None

    def on_mount(self) -> None:
        keymap, problem = load_keymap()
        if keymap:
            self.set_keymap(keymap)
        if problem:
            self.notify(problem, severity="error", title="Keymap", timeout=10)
        self.push_screen(ComposeScreen(self.session))
        if self.session.inventory_error:
            self.notify(self.session.inventory_error, severity="error", timeout=10)

    async def on_unmount(self) -> None:
        if self._investigation is not None:
            self._investigation.cancel()
        await self.session.close()
        gcpause.release()

    # -- navigation ------------------------------------------------------------------------
    def action_compose(self) -> None:
        while len(self.screen_stack) > 2:
            self.pop_screen()

    def action_watch(self) -> None:
        if self.current is None:
            self.notify("no investigation yet: compose one (f2) or reopen one (f4)")
            return
        current = self.current
        if isinstance(self.screen, WatchScreen) and self.screen.state is current:
            return
        self.push_screen(WatchScreen(current, self.session))

    def action_history(self) -> None:
        if not isinstance(self.screen, HistoryScreen):
            self.push_screen(HistoryScreen(self.session))

    def action_approvals(self) -> None:
        """The one approvals screen: pressed again, it still holds the envelope it loaded."""
        if isinstance(self.screen, ApprovalsScreen):
            return
        if not self.is_screen_installed("approvals"):
            self.install_screen(ApprovalsScreen(), "approvals")
        approvals = self.get_screen("approvals")
        if approvals in self.screen_stack:
            while self.screen is not approvals:
                self.pop_screen()
        else:
            self.push_screen(approvals)

    def action_alerts(self) -> None:
        if not isinstance(self.screen, AlertsScreen):
            self.push_screen(AlertsScreen(self.session, self.signing.sign))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Compose", "Write a new action", self.action_compose)
        yield SystemCommand("Watch", "The current investigation", self.action_watch)
        yield SystemCommand(
            "History", "Past investigations: reopen, export, diff", self.action_history
        )
        yield SystemCommand(
            "Approvals", "Add your signature to an envelope file, launch it", self.action_approvals
        )
        yield SystemCommand(
            "Alerts", "The watchers' alerts, live, and the watchers", self.action_alerts
        )
        yield SystemCommand("Help", "Key bindings and what each screen does", self.action_help)
        if isinstance(screen, ComposeScreen):
            yield SystemCommand(
                "Sign and launch", "Sign the composed action and launch it", screen.action_launch
            )
            yield SystemCommand(
                "Sign only",
                "Sign and save the envelope for a second approver",
                screen.action_sign_only,
            )
        if self.current is not None and not self.current.finished:
            current = self.current
            yield SystemCommand(
                "Cancel investigation",
                "Stop the running investigation",
                lambda: self.cancel_run(current),
            )
        if isinstance(screen, WatchScreen | HistoryScreen):
            yield SystemCommand(
                "Rerun",
                "Launch the same action again (after the confirmation)",
                screen.action_rerun,
            )
            yield SystemCommand(
                "Edit as new",
                "Compose with this run's module, parameters and target",
                screen.action_edit_as_new,
            )
        if isinstance(screen, WatchScreen):
            yield SystemCommand(
                "Stack",
                "Group the matches by a column: hosts per value, rarest first",
                screen.action_stack,
            )
        if isinstance(screen, HistoryScreen):
            yield SystemCommand(
                "Export JSON lines",
                "Write the highlighted run as JSONL",
                screen.action_export_jsonl,
            )
            yield SystemCommand(
                "Export CSV", "Write the highlighted run's matches as CSV", screen.action_export_csv
            )
            yield SystemCommand(
                "Diff", "Compare the marked run with the highlighted one", screen.action_diff
            )
            yield SystemCommand(
                "Resume",
                "Send the highlighted run again to its hosts without a final answer",
                screen.action_resume,
            )

    # -- what the screens ask for -----------------------------------------------------------
    @on(ComposeScreen.LaunchRequested)
    def _launch_composed(self, message: ComposeScreen.LaunchRequested) -> None:
        self.confirm_and_launch(message.action, until_expiry=message.until_expiry)

    @on(ComposeScreen.SignOnlyRequested)
    def _sign_composed(self, message: ComposeScreen.SignOnlyRequested) -> None:
        self.signing.save_as(Envelope(message.action))

    @on(ApprovalsScreen.LaunchRequested)
    def _launch_envelope(self, message: ApprovalsScreen.LaunchRequested) -> None:
        self.confirm_and_launch(message.envelope.action, message.envelope)

    @on(ApprovalsScreen.SignatureRequested)
    def _approve(self, message: ApprovalsScreen.SignatureRequested) -> None:
        self._add_signature(message)

    @work(group="sign", exclusive=True, exit_on_error=False)
    async def _add_signature(self, message: ApprovalsScreen.SignatureRequested) -> None:
        signed = await self.signing.sign_and_save(message.envelope, message.path)
        if signed is not None and message.screen.is_attached:
            message.screen.signed(signed, message.path)

    @on(RerunRequested)
    async def _rerun(self, message: RerunRequested) -> None:
        self.action_compose()
        compose = self.screen_stack[1]
        assert isinstance(compose, ComposeScreen)
        if await compose.load(message.action) and not message.edit:
            compose.action_launch()

    @on(WatchScreen.CancelRequested)
    def _cancel_watched(self, message: WatchScreen.CancelRequested) -> None:
        self.cancel_run(message.state)

    # -- launching -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.current is not None and not self.current.finished and self.current.live

    def confirm_and_launch(
        self, action: Action, envelope: Envelope | None = None, *, until_expiry: bool = False
    ) -> None:
        """Ask, then sign (unless ``envelope`` is already signed enough) and launch."""
        if self.running:
            self.notify("an investigation is running: cancel it (c) or wait", severity="warning")
            return
        try:
            hosts = self.session.select(action.target)
        except SpyglassError as err:
            self.notify(str(err), severity="error", title="Nothing launched")
            return
        if not hosts:
            self.notify(
                f"target {action.target!r} matches no host",
                severity="error",
                title="Nothing launched",
            )
            return

        def chosen(choice: str | None) -> None:
            if choice == "launch":
                self._sign_and_launch(action, hosts, envelope, dialog.until_expiry)
            elif choice == "sign-only":
                self.signing.save_as(envelope or Envelope(action))
            else:
                self.notify(
                    "launch cancelled: nothing was signed or sent", title="Nothing launched"
                )

        signatures = len(envelope.signatures) if envelope else 0
        dialog = ConfirmLaunch(action, len(hosts), signatures=signatures, until_expiry=until_expiry)
        self.push_screen(dialog, chosen)

    @on(HistoryScreen.ResumeRequested)
    def _resume(self, message: HistoryScreen.ResumeRequested) -> None:
        """Send a stored run's envelope again to its hosts without a final answer, after the
        confirmation, completing the same run (``spyglass results resume``)."""
        if self.running:
            self.notify("an investigation is running: cancel it (c) or wait", severity="warning")
            return
        try:
            plan = plan_resume(self.session.store, message.run_id, self.session.require_inventory())
        except SpyglassError as err:
            self.notify(str(err), severity="error", title="Not resumed")
            return
        for problem in plan.unknown:
            self.notify(problem, severity="warning", title="Not resumed")
        if not plan.hosts:
            self.notify(f"run {plan.run_id}: no host to send the action to again")
            return

        envelope = plan.envelope
        dialog = ConfirmLaunch(
            envelope.action,
            len(plan.hosts),
            signatures=len(envelope.signatures),
            resume=plan.run_id,
        )

        def chosen(choice: str | None) -> None:
            if choice == "launch":
                self.launch(envelope, plan.hosts, dialog.until_expiry, resume=plan.run_id)

        self.push_screen(dialog, chosen)

    @work(group="sign", exclusive=True, exit_on_error=False)
    async def _sign_and_launch(
        self, action: Action, hosts: list[Host], envelope: Envelope | None, until_expiry: bool
    ) -> None:
        if envelope is None:
            envelope = await self.signing.sign(Envelope(action))
            if envelope is None:
                return
        self.launch(envelope, hosts, until_expiry)

    def launch(
        self,
        envelope: Envelope,
        hosts: list[Host],
        until_expiry: bool = False,
        *,
        resume: str | None = None,
    ) -> RunState:
        """Start the fan-out of a signed envelope (continuing stored run ``resume``) and show it."""
        names = [h.name for h in hosts]
        if resume is None:
            state = RunState(
                envelope.action.to_dict(), names, signers=signer_ids(envelope.signatures)
            )
        else:
            state = resume_run(self.session.store, resume, names)
        state.until_expiry = until_expiry
        gcpause.release()  # the previous run's rows may go now
        self.current = state
        self.action_compose()
        self.push_screen(WatchScreen(state, self.session))
        self._run_investigation(envelope, hosts, state, resume)
        return state

    @work(group="investigation", exclusive=True, exit_on_error=False)
    async def _run_investigation(
        self, envelope: Envelope, hosts: list[Host], state: RunState, resume: str | None
    ) -> None:
        try:
            dispatcher = Dispatcher(
                SshTransport(self.session.pool()),
                concurrency=self.concurrency,
                retry=until_expiry(state.until_expiry),
            )
            investigation = Investigation(
                envelope, hosts, dispatcher, self.session.store, resume=resume
            )
            self._investigation = investigation
            run = asyncio.ensure_future(investigation.run(state.sink))
            await asyncio.sleep(0)  # the dispatcher creates its host tasks
            if state.cancelling:  # cancel pressed before the fan-out had started
                investigation.cancel()
            await run
        except SpyglassError as err:
            state.error = str(err)
        finally:
            state.finish()
            self._investigation = None

    def cancel_run(self, state: RunState) -> None:
        if state is not self.current or state.finished:
            return
        state.cancelling = True
        if self._investigation is not None:
            self._investigation.cancel()
        self.notify("cancelling: hosts still running end as cancelled, waiting ones stop retrying")


def run_app(args: argparse.Namespace) -> int:
    """Entry point for ``spyglass`` / ``spyglass tui`` / the demo."""
    app = SpyglassApp(Session.from_args(args), concurrency=getattr(args, "concurrency", 256))
    result = app.run()
    return int(result or 0)
