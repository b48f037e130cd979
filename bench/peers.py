"""spyglass against the tools a user would pick instead, on the same search of the same hosts.

Each tool searches the same N lab host roots, by file name and by content: spyglass (cold, then
warm on pooled connections) against the lab's agents; parallel-ssh running ``find`` / ``grep -r``
over one OpenSSH sshd on loopback (a host alias per lab host, each command pointed at that host's
root); Ansible ad-hoc (``-m shell``, pipelining, ``--forks``). Every tool must find exactly the
same hosts and paths. CPU is counted with one cgroup per side: the client (with its children and
ssh connection masters), sshd's whole tree, and the agents (zygotes, operation children, gpg).

The lab packs agents into processes (``--per-process``, 250 by default) that share one
signature verification; a second lab with one agent per process, as on a real server, gives the
honest endpoint cost of a cold action (``--honest-n`` hosts, spyglass cold only). Each figure is
the median of ``--rounds`` rounds. A missing tool is named with how to install it, and the
others run.

    .venv/bin/python bench/peers.py -n 1000 --tools spyglass,pssh
    .venv/bin/python bench/peers.py -n 100
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on sys.path, where bench/modules.py would shadow `modules`.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import sshd
from bench.cgroup import Cgroup
from bench.peers_runner import Runner, Sample, Sides
from console.actions.compose import compose
from console.lab.local import Lab, lab_down, lab_up, raise_fd_limit
from protocol.envelope import Envelope
from protocol.signing import Signer

TOOLS = ("spyglass", "pssh", "ansible")


@dataclass(frozen=True)
class Search:
    """One search as spyglass's ``file`` parameters and as the shell command a peer runs."""

    params: dict[str, list[str]]
    command: str


SEARCHES = {
    "name": Search(
        {"paths": ["/srv"], "name": [r"\.php$"]}, "find {root}/srv -type f -name '*.php'"
    ),
    "content": Search(
        {"paths": ["/"], "content": ["^sysupd:"]}, "grep -rlE '^sysupd:' {root} || true"
    ),
}


def missing_tools(tools: list[str]) -> dict[str, str]:
    """Each unavailable tool and how to install it."""
    out: dict[str, str] = {}
    peers_extra = "pip install -e '.[peers]'"
    ssh_missing = sshd.missing()
    if "pssh" in tools:
        try:
            import pssh.clients  # noqa: F401
        except ImportError:
            out["pssh"] = f"parallel-ssh is not installed ({peers_extra})"
        if ssh_missing:
            out["pssh"] = ssh_missing
    if "ansible" in tools:
        if not (Path(sys.executable).parent / "ansible").exists():
            out["ansible"] = f"ansible-core is not installed ({peers_extra})"
        if ssh_missing:
            out["ansible"] = ssh_missing
    return out


def lab_hosts(lab: Lab) -> list[dict[str, str]]:
    from inventory.loader import load_inventory

    return [
        {"name": h.name, "root": str(lab.root(h.name))} for h in load_inventory(lab.inventory).hosts
    ]


def strip_roots(found: set[tuple[str, str]], hosts: list[dict[str, str]]) -> set[tuple[str, str]]:
    """A peer's absolute paths made relative to each host's root, as spyglass reports them."""
    roots = {h["name"]: h["root"] for h in hosts}
    return {(h, p.removeprefix(roots[h])) for h, p in found}


def adopt_lab(lab: Lab, group: Cgroup) -> None:
    import psutil

    for pid in lab.pids:
        group.adopt(pid)
        for child in psutil.Process(pid).children(recursive=True):
            group.adopt(child.pid)


@dataclass
class Options:
    n: int = 1000
    rounds: int = 3
    tools: list[str] = field(default_factory=lambda: list(TOOLS))
    per_process: int = 250
    honest_n: int = 100
    forks: int = 50
    pssh_pool: int = 100
    concurrency: int = 512


def run(opts: Options, work: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Every round of every tool on both searches; the rows (tool, search) -> samples, after
    checking that every tool found exactly what spyglass found."""
    raise_fd_limit(opts.n + 1024)  # inherited by the clients: a connection per host
    missing = missing_tools(opts.tools)
    for tool, why in missing.items():
        log(f"skipping {tool}: {why}")
    tools = [t for t in opts.tools if t not in missing]
    sides = Sides(Cgroup("client"))
    labs: dict[str, Lab] = {}
    server: sshd.Sshd | None = None
    try:
        sides.endpoints["agents"] = Cgroup("agents")
        labs["agents"] = lab_up(work / "lab", opts.n, per_process=opts.per_process)
        adopt_lab(labs["agents"], sides.endpoints["agents"])
        honest = min(opts.n, opts.honest_n) if opts.per_process > 1 else 0
        if honest:
            sides.endpoints["agents-1"] = Cgroup("agents-1")
            labs["agents-1"] = lab_up(work / "lab1", honest, per_process=1)
            adopt_lab(labs["agents-1"], sides.endpoints["agents-1"])
        if {"pssh", "ansible"} & set(tools):
            sides.endpoints["sshd"] = Cgroup("sshd")
            server = sshd.start(work / "sshd", preexec=sides.endpoints["sshd"].enter)
        log(f"lab of {opts.n} agents up" + (f", {honest} one-agent processes" if honest else ""))
        return _rounds(opts, tools, sides, labs, server, work, log)
    finally:
        if server is not None:
            server.stop()
        for lab in labs.values():
            lab_down(lab.dir)
        sides.client.remove()
        for group in sides.endpoints.values():
            group.remove()


def _rounds(
    opts: Options,
    tools: list[str],
    sides: Sides,
    labs: dict[str, Lab],
    server: sshd.Sshd | None,
    work: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    runner = Runner(sides, work)
    signers = {name: Signer(lab.gnupghome) for name, lab in labs.items()}
    hosts = {name: lab_hosts(lab) for name, lab in labs.items()}
    peer_spec: dict[str, Any] = {}
    if server is not None:
        peer_spec = {
            "hosts": hosts["agents"],
            "user": server.user,
            "port": server.port,
            "key": str(server.client_key),
            "known_hosts": str(server.known_hosts),
            "pool_size": opts.pssh_pool,
        }

    def envelopes(lab: str, search: Search, count: int) -> list[dict[str, Any]]:
        return [
            signers[lab].sign(Envelope(compose("file", search.params, "all"))).to_dict()
            for _ in range(count)
        ]

    def spyglass(lab: str, search: Search, phases: int) -> list[Sample]:
        spec = {
            "inventory": str(labs[lab].inventory),
            "envelopes": envelopes(lab, search, phases),
            "concurrency": opts.concurrency,
        }
        return runner.spyglass(lab, spec)

    samples: dict[tuple[str, str], list[Sample]] = {}
    # One untimed pass first: the agents' code paths, zygotes and the page cache warmed up.
    for lab in labs:
        spyglass(lab, SEARCHES["name"], 1)
    for round_index in range(opts.rounds):
        for search_name, search in SEARCHES.items():
            if "spyglass" in tools:
                cold, warm = spyglass("agents", search, 2)
                samples.setdefault(("spyglass cold", search_name), []).append(cold)
                samples.setdefault(("spyglass warm", search_name), []).append(warm)
                if "agents-1" in labs:
                    (one,) = spyglass("agents-1", search, 1)
                    samples.setdefault(("spyglass cold, 1 agent/process", search_name), []).append(
                        one
                    )
            if "pssh" in tools:
                sample = runner.pssh({**peer_spec, "command": search.command})
                sample.found = strip_roots(sample.found, hosts["agents"])
                samples.setdefault(("parallel-ssh", search_name), []).append(sample)
            if "ansible" in tools:
                sample = runner.ansible(peer_spec, search.command, opts.forks)
                sample.found = strip_roots(sample.found, hosts["agents"])
                samples.setdefault(("ansible", search_name), []).append(sample)
        log(f"round {round_index + 1}/{opts.rounds} done")
    names = {lab: [h["name"] for h in lab_hosts] for lab, lab_hosts in hosts.items()}
    result: dict[str, Any] = {
        "samples": samples,
        "hosts": {lab: len(h) for lab, h in hosts.items()},
    }
    try:
        check_answers(samples, names)
    except AnswerMismatch as err:  # the figures are still printed, the difference after them
        result["mismatch"] = str(err)
    return result


class AnswerMismatch(AssertionError):
    """Two tools did not find the same hosts and paths."""


def check_answers(
    samples: dict[tuple[str, str], list[Sample]], hosts: dict[str, list[str]]
) -> None:
    """Every run of every tool answered on every host of its lab and found exactly what the
    first run on the main lab found (on the smaller one-agent lab, on its hosts), and that is
    not nothing."""
    for search in {s for _, s in samples}:
        runs = [(tool, x) for (tool, s), xs in samples.items() if s == search for x in xs]
        reference_tool, reference = runs[0]
        if not reference.found:
            raise AnswerMismatch(f"{reference_tool} found nothing on the {search} search")
        for tool, sample in runs:
            names = set(hosts[lab_of(tool)])
            if sample.answered != len(names):
                raise AnswerMismatch(
                    f"{tool}, {search} search: {sample.answered} of {len(names)} hosts answered"
                    f" ({'; '.join(sample.failed[:3])})"
                )
            expected = {(h, p) for h, p in reference.found if h in names}
            if sample.found != expected:
                raise AnswerMismatch(
                    f"{tool} and {reference_tool} differ on the {search} search:"
                    f" only {tool}: {sorted(sample.found - expected)[:5]},"
                    f" only {reference_tool}: {sorted(expected - sample.found)[:5]}"
                )


def lab_of(tool: str) -> str:
    return "agents-1" if "1 agent/process" in tool else "agents"


def table(result: dict[str, Any]) -> list[str]:
    """Medians per (tool, search), and spyglass cold's ratio to each row."""
    samples: dict[tuple[str, str], list[Sample]] = result["samples"]
    lines = [
        f"{'tool':<34}{'search':<9}{'hosts':>6}{'wall s':>8}{'start s':>8}{'client ms/host':>16}"
        f"{'excl. start':>13}"
        f"{'endpoint ms/host':>18}{'client RSS MiB':>16}"
        f"{'wall x':>8}{'client x':>10}{'endpoint x':>12}"
    ]
    for (tool, search), runs in samples.items():
        n = result["hosts"][lab_of(tool)]
        row = medians(runs, n)
        base = medians(samples.get(("spyglass cold", search), runs), result["hosts"]["agents"])
        lines.append(
            f"{tool:<34}{search:<9}{n:>6}{row['wall']:>8.2f}{row['start_wall']:>8.2f}"
            f"{row['client']:>16.2f}{row['client'] - row['start_cpu']:>13.2f}"
            f"{row['endpoint']:>18.2f}{row['rss']:>16.0f}"
            f"{row['wall'] / base['wall']:>8.2f}{base['client'] / row['client']:>10.2f}"
            f"{base['endpoint'] / row['endpoint']:>12.2f}"
        )
    for search in SEARCHES:
        honest = samples.get(("spyglass cold, 1 agent/process", search))
        sshd_rows = samples.get(("parallel-ssh", search)) or samples.get(("ansible", search))
        if honest:
            one = medians(honest, result["hosts"]["agents-1"])["endpoint"]
            line = f"{search} search, one agent per process: {one:.1f} ms of endpoint CPU per cold"
            line += " action (goal: at most 20)"
            if sshd_rows:
                peer = medians(sshd_rows, result["hosts"]["agents"])["endpoint"]
                line += f"; sshd and its sessions: {peer:.1f} ms ({one / peer:.2f}x)"
            lines.append(line)
    lines.append(
        "start s: the client's start-up (interpreter, imports), part of its wall; excl. start:"
        " client CPU per host without the start-up's (Ansible: not separable)"
    )
    lines.append(
        "wall x: the tool's wall over spyglass cold's (how many times faster spyglass is);"
        " client x, endpoint x: spyglass cold's CPU per host over the tool's (below 1: cheaper)"
    )
    return lines


def medians(runs: list[Sample], hosts: int) -> dict[str, float]:
    return {
        "wall": statistics.median(r.wall for r in runs),
        "client": statistics.median(r.client_cpu for r in runs) * 1000 / hosts,
        "endpoint": statistics.median(r.endpoint_cpu for r in runs) * 1000 / hosts,
        "rss": statistics.median(r.rss for r in runs) / (1 << 20),
        "start_wall": statistics.median(r.start_wall for r in runs),
        "start_cpu": statistics.median(r.start_cpu for r in runs) * 1000 / hosts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Options()
    parser.add_argument("-n", type=int, default=defaults.n, help="lab hosts (default 1000)")
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument("--tools", default=",".join(TOOLS), help="of " + ",".join(TOOLS))
    parser.add_argument(
        "--per-process", type=int, default=defaults.per_process, help="agents per lab process"
    )
    parser.add_argument(
        "--honest-n",
        type=int,
        default=defaults.honest_n,
        help="hosts of the one-agent-per-process lab (0: none)",
    )
    parser.add_argument(
        "--forks",
        type=int,
        default=defaults.forks,
        help="Ansible's --forks (default 50: its configuration docs say many users set 50"
        " for many hosts, 5 being 'very very conservative')",
    )
    parser.add_argument(
        "--pssh-pool", type=int, default=defaults.pssh_pool, help="parallel-ssh's pool_size"
    )
    args = parser.parse_args()
    tools = [t for t in args.tools.split(",") if t]
    if unknown := set(tools) - set(TOOLS):
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
    opts = Options(
        args.n, args.rounds, tools, args.per_process, args.honest_n, args.forks, args.pssh_pool
    )
    work = Path(tempfile.mkdtemp(prefix="sgp", dir="/tmp"))
    result = run(opts, work, lambda line: print(line, file=sys.stderr, flush=True))
    same = "DIFFERENT ANSWERS (below)" if "mismatch" in result else "the same hosts and paths"
    print(f"median of {opts.rounds} rounds; every tool found {same}")
    print("\n".join(table(result)))
    if "mismatch" in result:
        sys.exit(f"the tools' answers differ: {result['mismatch']}")


if __name__ == "__main__":
    main()
