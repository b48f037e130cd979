"""An investigator who interrupts the console stops the agents' work too: since an accepted action
runs on when its channel closes (issue 15), the console sends ``cancel`` before it lets go."""

from __future__ import annotations

import signal
from pathlib import Path

from console.lab.local import Lab
from tests.support import faults
from tests.support.agents import AgentProc
from tests.support.faults import victim

__all__ = ["victim"]  # a fixture: used by its name


def test_interrupting_the_console_cancels_the_running_action(
    lab: Lab, victim: AgentProc, tmp_path: Path
) -> None:
    envelope = faults.envelope_file(lab, tmp_path, faults.SLOW_OP)
    env = faults.victim_env(lab, victim, tmp_path, "a.db")
    with faults.launching(env, envelope, f"name={faults.VICTIM}") as console:
        faults.wait_for_verdict(victim, faults.action_id(envelope))
        console.send_signal(signal.SIGINT)
        console.communicate(timeout=60)
    faults.wait_for_verdict(victim, faults.action_id(envelope), "cancelled")
