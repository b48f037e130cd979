"""``make demo``: a lab with planted findings, then a real signed sweep that finds them."""

from __future__ import annotations

import argparse
import os
import sys

from console.actions.compose import compose
from console.cli.common import launch
from console.fanout.dispatch import DEFAULT_CONCURRENCY
from console.lab.local import Lab, lab_down, lab_up
from console.lab.seed import WEBSHELL, has_webshell
from console.results.text import plural
from protocol.envelope import Envelope
from protocol.errors import UsageError
from protocol.signing import Signer


def run_demo(args: argparse.Namespace) -> int:
    lab = Lab(args.dir.resolve())
    if lab.pids:
        lab_down(lab.dir)
    print(f"starting a lab of {plural(args.agents, 'agent')} in {lab.dir} ...", file=sys.stderr)
    lab = lab_up(lab.dir, args.agents)
    os.environ["GNUPGHOME"] = str(lab.gnupghome)
    args.inventory, args.store = str(lab.inventory), str(lab.dir / "results.db")
    if not args.headless:
        if args.front_end is None:
            raise UsageError("no interactive front end in this build: use --headless")
        status = int(args.front_end(args))
        _still_running(lab, args.store)
        return status
    planted = [f"lab-{i + 1:03d}" for i in range(args.agents) if has_webshell(i)]
    print(
        f"planted a PHP web shell on {', '.join(planted) or 'no host'}; hunting for it:\n"
        f"  spyglass run file --paths /srv --content 'eval\\(base64_decode' -t all\n",
        file=sys.stderr,
    )
    assert b"eval(base64_decode" in WEBSHELL
    action = compose(
        "file",
        {"paths": ["/srv"], "content": [r"eval\(base64_decode"]},
        "all",
        name="demo: web shell sweep",
    )
    envelope = Signer(lab.gnupghome).sign(Envelope(action))
    args.json, args.show, args.concurrency, args.workers = False, "found", DEFAULT_CONCURRENCY, 1
    args.until_expiry = False
    try:
        return launch(args, envelope, "all")
    finally:
        _still_running(lab, args.store)


def _still_running(lab: Lab, store: str) -> None:
    """On the way out: the lab is still up, how to reach it (and the demo's results) from a
    shell, and how to stop it."""
    print(
        f"\nthe lab is still running. To use it (and see the demo's runs in `spyglass results "
        f"list`) from a shell:\n"
        f"  export SPYGLASS_INVENTORY={lab.inventory} GNUPGHOME={lab.gnupghome} "
        f"SPYGLASS_STORE={store}\n"
        f"stop it with: spyglass lab down --dir {lab.dir}",
        file=sys.stderr,
    )
