"""The clients of the peers benchmark, each run as its own process inside the client cgroup.

``python bench/peers_clients.py TOOL SPEC`` runs one search with spyglass or parallel-ssh and
prints one JSON line per phase: ``{"found": [[host, path], ...], "answered": N}``. spyglass has
two phases (cold, then warm on the pooled connections); it starts the second when a line arrives
on stdin, so the benchmark can read the cgroups' counters between them. Ansible is its own
command line (see ``ansible_command``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on sys.path, where bench/modules.py would shadow `modules`.
if not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)


def ready() -> None:
    """Tell the benchmark that start-up (interpreter and imports) is over."""
    print(json.dumps({"ready": True}), flush=True)


def spyglass(spec: dict[str, Any]) -> None:
    from console.fanout.investigation import Investigation  # noqa: F401
    from console.fanout.ssh import Connector, Pool
    from console.results.records import ANSWERED  # noqa: F401  (imported here: part of start-up)
    from console.results.store import Store
    from inventory.loader import load_inventory

    ready()
    inventory = load_inventory(spec["inventory"])
    store = Store(Path(tempfile.mkdtemp(prefix="sgp")) / "peers.db")

    async def phases() -> None:
        pool = Pool(Connector(inventory))
        for index, raw in enumerate(spec["envelopes"]):
            if index:
                sys.stdin.readline()
            answer = await _search(raw, list(inventory.hosts), pool, store, spec["concurrency"])
            print(json.dumps(answer), flush=True)
        await pool.close()

    try:
        import uvloop  # as the spyglass command line runs when it is installed
    except ImportError:
        asyncio.run(phases())
    else:
        uvloop.run(phases())


async def _search(
    raw: dict[str, Any], hosts: list[Any], pool: Any, store: Any, concurrency: int
) -> dict[str, Any]:
    from console.fanout.dispatch import Dispatcher
    from console.fanout.investigation import Investigation
    from console.fanout.ssh_transport import SshTransport
    from console.results.records import ANSWERED, Event, HostEvent, MatchEvent
    from protocol.envelope import parse_envelope

    found: list[list[str]] = []
    failed: list[str] = []
    answered = 0

    def sink(event: Event) -> None:
        nonlocal answered
        if isinstance(event, MatchEvent):
            found.append([event.host, event.data["path"]])
        elif isinstance(event, HostEvent):
            result = event.result
            if result.status in ANSWERED:
                answered += 1
            else:
                failed.append(f"{result.host}: {result.status} ({result.detail})")

    dispatcher = Dispatcher(SshTransport(pool), concurrency=concurrency)
    await Investigation(parse_envelope(raw), hosts, dispatcher, store).run(sink)
    return {"found": found, "answered": answered, "failed": failed}


def pssh(spec: dict[str, Any]) -> None:
    from pssh.clients import ParallelSSHClient
    from pssh.config import HostConfig

    ready()
    hosts = spec["hosts"]
    configs = [
        HostConfig(user=spec["user"], port=spec["port"], private_key=spec["key"], alias=h["name"])
        for h in hosts
    ]
    client = ParallelSSHClient(
        ["127.0.0.1"] * len(hosts), host_config=configs, pool_size=spec["pool_size"]
    )
    output = client.run_command(
        "%s",
        host_args=[spec["command"].format(root=h["root"]) for h in hosts],
        stop_on_errors=False,
    )
    client.join(output)
    found, failed, answered = [], [], 0
    for host_out in output:
        if host_out.exception is not None:
            failed.append(f"{host_out.alias}: {host_out.exception!r}")
            continue
        answered += 1
        found += [[host_out.alias, line] for line in host_out.stdout]
    print(json.dumps({"found": found, "answered": answered, "failed": failed}), flush=True)


def ansible_command(inventory: Path, command: str, forks: int, tree: Path) -> list[str]:
    """The ad-hoc command: a shell command on every host, with the host's root as a variable;
    each host's result lands as JSON in ``tree``."""
    return [
        str(Path(sys.executable).parent / "ansible"),
        "all",
        "-i",
        str(inventory),
        "-f",
        str(forks),
        "-m",
        "ansible.builtin.shell",
        "-a",
        command.format(root="{{ root }}"),
        "--tree",
        str(tree),
    ]


def ansible_inventory(path: Path, hosts: list[dict[str, str]], spec: dict[str, Any]) -> None:
    """An INI inventory: one alias per lab host, all on the one sshd."""
    lines = ["[all]"]
    for h in hosts:
        lines.append(
            f"{h['name']} ansible_host=127.0.0.1 ansible_port={spec['port']}"
            f" ansible_user={spec['user']} root={h['root']}"
        )
    lines += [
        "[all:vars]",
        f"ansible_ssh_private_key_file={spec['key']}",
        "ansible_python_interpreter=/usr/bin/python3",
        f"ansible_ssh_common_args='-o UserKnownHostsFile={spec['known_hosts']}"
        " -o StrictHostKeyChecking=yes'",
    ]
    path.write_text("\n".join(lines) + "\n")


def ansible_answers(tree: Path) -> dict[str, Any]:
    """The per-host results ``--tree`` wrote, as the clients' answer line."""
    found, failed, answered = [], [], 0
    for path in tree.iterdir():
        result = json.loads(path.read_text())
        if result.get("unreachable") or result.get("rc") != 0:
            failed.append(f"{path.name}: {result.get('msg', 'failed')}")
            continue
        answered += 1
        found += [[path.name, line] for line in result.get("stdout_lines", [])]
    return {"found": found, "answered": answered, "failed": failed}


if __name__ == "__main__":
    tool, spec_path = sys.argv[1], sys.argv[2]
    {"spyglass": spyglass, "pssh": pssh}[tool](json.loads(Path(spec_path).read_text()))
