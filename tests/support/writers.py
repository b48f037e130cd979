"""Consoles that write runs, seen from outside: a process that writes a run into a store and
stops there (alive: a run another console is writing; exited: a console that died before the
run's end), and reading what a background `run --json` prints without losing lines."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_WRITE = """
import json, sys, time
from console.results.records import HostResult
from console.results.store import Store
store, envelope, targets, answered, stay = sys.argv[1:]
store, envelope = Store(store), json.loads(open(envelope).read())
action = envelope["action"]
run = store.begin_run(action["id"], action["name"], action["target"],
                      [op["module"] for op in action["operations"]], envelope, 0,
                      json.loads(targets))
for host, status in json.loads(answered).items():
    store.set_host(run, HostResult(host, status))
store.flush()
print(run, flush=True)
if stay == "1":
    time.sleep(600)
"""


@contextmanager
def writing(
    store: Path, envelope: Path, targets: list[str], answered: dict[str, str], *, stay: bool
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A process that starts a run of ``envelope`` on ``targets`` where ``answered`` hosts have
    their status, and stays alive (``stay``) or exits; yields it and the run's id once stored."""
    args = [str(store), str(envelope), json.dumps(targets), json.dumps(answered), str(int(stay))]
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITE, *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        assert run_id, "the writer stored no run"
        if not stay:
            proc.wait(timeout=60)
        yield proc, run_id
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def until_stored(console: subprocess.Popen[str]) -> list[dict[str, object]]:
    """The JSON lines `run --json` (``console``) printed up to its first stored event: the
    action line comes before the run is in the store, the first event after (stored before
    shown)."""
    assert console.stdout is not None
    printed: list[dict[str, object]] = []
    while not printed or printed[-1]["event"] == "action":
        line = console.stdout.readline()
        assert line, f"the console ended before storing anything: {printed}"
        printed.append(json.loads(line))
    return printed


def the_rest(console: subprocess.Popen[str]) -> list[dict[str, object]]:
    """The JSON lines ``console`` prints from here to its end. Not ``communicate``: with a
    timeout it reads the pipe itself and loses what ``readline`` had buffered already."""
    assert console.stdout is not None
    lines = console.stdout.read().splitlines()
    console.wait(timeout=60)
    return [json.loads(line) for line in lines]
