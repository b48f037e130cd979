"""Where a one-agent process's CPU goes in a cold action: the split the 20 ms goal needs.

A lab of N one-agent processes (as on real servers) answers a warm-up action (zygotes started,
code paths warm), then ``--rounds`` cold actions (fresh connections, a new signature each). Each
process's CPU is split by who spent it: the agent itself (SSH handshake, frames, parsing, ACL,
asyncio), the gpg processes it spawned to verify (reaped by the agent), its zygote (one fork per
operation), and the operation children (reaped by the zygote). The floor (connect, subsystem,
one frame each way) gives the handshake's share of the agent's own CPU, and loops of the same
verification in process (as agents now do) and by a spawned gpg or gpgv give its cost in each.

    .venv/bin/python bench/endpoint.py -n 50 [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.cgroup import Cgroup
from bench.fanout import Meter, floor_run, spyglass_run
from bench.peers import adopt_lab
from console.actions.compose import compose
from console.fanout.ssh import Connector, Pool
from console.lab.local import Lab, lab_down, lab_up
from console.results.store import Store
from inventory.loader import load_inventory
from protocol import ed25519_check
from protocol.envelope import Envelope
from protocol.signing import Keyring, Signer

PARTS = ("agent", "gpg", "zygote", "operations")


def split(agents: list[psutil.Process]) -> dict[str, float]:
    """CPU seconds so far of each part, summed over the agent processes."""
    out = dict.fromkeys(PARTS, 0.0)
    for agent in agents:
        t = agent.cpu_times()
        out["agent"] += t.user + t.system
        out["gpg"] += t.children_user + t.children_system
        for child in agent.children():
            c = child.cpu_times()
            out["zygote"] += c.user + c.system
            out["operations"] += c.children_user + c.children_system
    return out


def verify_cost(lab: Lab, envelope: Envelope, times: int = 20) -> dict[str, float]:
    """CPU seconds of one verification of ``envelope``'s signature in process, and by gpg and
    gpgv spawned per verification (as python-gnupg does), on an agent's verify-only keyring."""
    data, signature = envelope.action.canonical, envelope.signatures[0]  # what agents verify
    work = Path(tempfile.mkdtemp(prefix="sgv", dir="/tmp"))
    (work / "data").write_bytes(data)
    (work / "sig.asc").write_text(signature)
    keyring = work / "ring.gpg"
    exported = subprocess.run(
        ["gpg", "--homedir", str(lab.gnupghome), "--export"], capture_output=True, check=True
    ).stdout
    keyring.write_bytes(exported)
    home = work / "home"
    home.mkdir(mode=0o700)
    subprocess.run(["gpg", "--homedir", str(home), "--import"], input=exported, capture_output=True)
    armored = subprocess.run(
        ["gpg", "--homedir", str(lab.gnupghome), "--armor", "--export"], capture_output=True
    ).stdout.decode()
    keys = Keyring(work / "ring", [armored]).signing_keys
    before = time.process_time()
    for _ in range(times):
        assert ed25519_check.check(keys, data, signature) is not None
    costs = {"in process": (time.process_time() - before) / times}
    commands = {
        "by gpg --verify": [
            "gpg",
            "--homedir",
            str(home),
            "--no-autostart",
            "--batch",
            "--status-fd",
            "2",
            "--verify",
            str(work / "sig.asc"),
            str(work / "data"),
        ],
        "by gpgv": ["gpgv", "--keyring", str(keyring), str(work / "sig.asc"), str(work / "data")],
    }
    for name, command in commands.items():
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(times):
            done = subprocess.run(command, capture_output=True)
            assert done.returncode == 0, done.stderr
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        costs[name] = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / times
    return costs


async def measure(
    lab: Lab, rounds: int, group: Cgroup
) -> tuple[dict[str, float], float, float, Envelope]:
    """Per host and cold action (ms): each part's CPU, the whole tree's (by cgroup), and the
    agents' own CPU in the floor. Parts are summed over all rounds: /proc counts whole clock
    ticks per process, so one action's split would be mostly rounding."""
    inventory = load_inventory(lab.inventory)
    agents = [psutil.Process(pid) for pid in lab.pids]
    signer = Signer(lab.gnupghome)
    store = Store(Path(tempfile.mkdtemp(prefix="sge")) / "endpoint.db")
    connector = Connector(inventory)
    actions = len(inventory.hosts) * rounds

    def action() -> Envelope:
        return signer.sign(
            Envelope(compose("file", {"paths": ["/srv"], "name": [r"\.php$"]}, "all"))
        )

    envelope = action()
    await spyglass_run(inventory, Pool(connector), envelope, store, Meter([]), 64)
    before, total = split(agents), group.cpu()
    for _ in range(rounds):
        pool = Pool(connector)
        envelope = action()
        answered = await spyglass_run(inventory, pool, envelope, store, Meter([]), 64)
        await pool.close()
        assert answered == len(inventory.hosts), f"{answered} answered"
    after, total = split(agents), group.cpu() - total
    parts = {k: (after[k] - before[k]) * 1000 / actions for k in PARTS}
    before_floor = split(agents)["agent"]
    for _ in range(rounds):
        await floor_run(inventory, connector, Meter([]), 64)
    floor = (split(agents)["agent"] - before_floor) * 1000 / actions
    return parts, total * 1000 / actions, floor, envelope


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="one-agent processes (default 50)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="sge", dir="/tmp"))
    t0 = time.monotonic()
    lab = lab_up(directory, args.n, per_process=1)
    print(f"{args.n} one-agent processes up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    group = Cgroup("endpoint")
    try:
        adopt_lab(lab, group)
        parts, total, handshake, envelope = asyncio.run(measure(lab, args.rounds, group))
        verification = verify_cost(lab, envelope)
    finally:
        lab_down(directory)
        group.remove()
    print(f"one-agent processes: {args.n}; {args.rounds} cold actions each, ms per action")
    print(f"  endpoint CPU (cgroup)     {total:6.2f}  (the parts below: {sum(parts.values()):.2f})")
    print(
        f"  agent process             {parts['agent']:6.2f}"
        f"  (of which the floor: connect, subsystem, a frame each way: {handshake:.2f})"
    )
    print(f"  gpg spawned to verify     {parts['gpg']:6.2f}")
    print(f"  zygote (fork)             {parts['zygote']:6.2f}")
    print(f"  operation children        {parts['operations']:6.2f}")
    for name, seconds in verification.items():
        print(f"one verification {name:<16} {seconds * 1000:6.2f} ms CPU")


if __name__ == "__main__":
    main()
