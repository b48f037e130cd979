"""Help: what each screen is for and the keys active here (read from the bindings themselves)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

_ABOUT = """\
Compose (f2): pick a module, fill its form (one row per parameter, checked as you type; the
focused one's help shows above the form), ctrl+f finds a parameter by name, ctrl+o shows the
less-used ones; each module keeps its draft. ctrl+t goes to the target (live count and hosts).
The preview is the exact action you sign (times in local time). Retry on (here, or u in the
confirmation) tries unreachable hosts again with backoff until the action expires. ctrl+l signs
it with your gpg key and, after a confirmation naming the host count (Enter launches, Esc
cancels), launches it.

Watch (f3): who launched what and when, counters, one row per host, matches streaming in.
/ filters: a regex, or COLUMN~regex (contains), COLUMN=regex (whole cell): path~\\.php$
host=lab-00[4-8]. s sorts the highlighted column (left/right choose it), Enter opens a host,
k stacks the matches by a column (hosts per value, rarest first), R reruns, e edits as new,
c cancels the run (and stops retrying: a host waiting shows "retry in 40 s, attempt 3, last: ...").

History (f4): past runs. Enter reopens (live, if another console is still writing the run),
u resumes a run whose console stopped before its end (its hosts without an answer are sent it
again), R reruns, e edits as new, j / v export JSON lines / CSV, space marks a run and d diffs
it with the highlighted one, r reloads.

Approvals (f5): add your signature to an envelope file, launch it.

Alerts (f7): the watchers' alerts streaming in from the target's agents (ctrl+t changes it), each
with the action that armed its watcher and who signed it, above them the watchers (expiry,
counters, dropped); / filters the alerts, r lists the watchers again, x cancels the highlighted
watcher (a signed action, after the confirmation).

ctrl+p opens the command palette. Everything agents send is shown literally, never as markup."""
#: One line per paragraph, so that the text wraps at whatever width the terminal has.
ABOUT = "\n".join(p.replace("\n", " ") for p in _ABOUT.split("\n\n"))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close", id="help.close"),
        Binding("f1", "dismiss", "Close", show=False),
    ]

    def __init__(self, under: Screen[object]) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        table = Table("key", "action", "id", box=None, header_style="bold")
        seen: set[str] = set()
        for node in (self.under, *self.under.query("*"), self.app):
            for binding in getattr(node, "BINDINGS", []):
                if not isinstance(binding, Binding) or binding.id is None or binding.id in seen:
                    continue
                seen.add(binding.id)
                table.add_row(Text(binding.key), Text(binding.description), Text(binding.id))
        with VerticalScroll(id="help-box"):
            yield Static(Text(ABOUT), id="help-about")
            yield Static(table, id="help-keys")
