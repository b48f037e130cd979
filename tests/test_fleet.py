"""Fleet operations against the real lab: `inventory check` and `inventory trust`."""

from __future__ import annotations

import json
from pathlib import Path

import asyncssh

from console.lab.local import Lab
from tests.support.cli import (
    SPYGLASS,
    gone_host,
    known_hosts_with_wrong_key,
    lab_inventory,
    save_inventory,
    spyglass,
)
from tests.support.lab import LAB_SIZE


def host_key_fingerprint(lab: Lab, name: str) -> str:
    key = asyncssh.read_private_key(str(lab.host_dir(name) / "ssh_host_ed25519_key"))
    return str(key.get_fingerprint("sha256"))


def test_check_reports_down_and_mismatched_hosts_without_stopping(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    inventory = lab_inventory(lab, tmp_path, known_hosts_with_wrong_key(lab, 0)[0])
    inventory["hosts"].append(gone_host())
    audit = lab.host_dir("lab-001") / "audit.log"
    audit_before = audit.read_text() if audit.exists() else ""
    env = {**lab_env, "SPYGLASS_INVENTORY": str(save_inventory(inventory, tmp_path))}
    done = spyglass(env, "inventory", "check", "--json")
    assert done.returncode == 3, done.stderr
    hosts = {e["host"]: e for e in map(json.loads, done.stdout.splitlines())}
    assert len(hosts) == LAB_SIZE + 1
    assert hosts["lab-001"]["status"] == "hostkey-mismatch"
    assert hosts["gone"]["status"] == "unreachable"
    healthy = [h for name, h in hosts.items() if name not in ("lab-001", "gone")]
    assert len(healthy) == LAB_SIZE - 1
    for h in healthy:
        assert h["status"] == "ok" and h["version"] and "file" in h["modules"]
        assert isinstance(h["skew_ms"], int)  # same machine: tiny, but never asserted on time
        if "agent" in h["modules"]:  # the agent module ran as a signed action
            assert h["action"] == "matched" and h["agent"]["agent_version"] == h["version"]
    assert (audit.read_text() if audit.exists() else "") == audit_before  # nothing reached it
    assert f"{LAB_SIZE + 1} hosts: {LAB_SIZE - 1} ok, 2 failed" in done.stderr

    text = spyglass(env, "inventory", "check", "-t", "name=lab-00[12]", "--hello-only")
    assert text.returncode == 3
    lines = text.stdout.splitlines()
    assert lines[0].startswith("lab-001\t") and "\thostkey-mismatch\t" in lines[0]
    assert lines[1].startswith("lab-002\t") and "\tok\tversion " in lines[1]


def test_trust_refuses_a_wrong_fingerprint_then_pins_the_right_one(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    inventory = lab_inventory(lab, tmp_path, "")
    env = {**lab_env, "SPYGLASS_INVENTORY": str(save_inventory(inventory, tmp_path))}
    known_hosts = tmp_path / "known_hosts"

    unpinned = spyglass(env, "inventory", "check", "-t", "name=lab-003", "--hello-only")
    assert unpinned.returncode == 3 and "no pinned host key" in unpinned.stdout

    right = host_key_fingerprint(lab, "lab-003")
    wrong = host_key_fingerprint(lab, "lab-004")
    refused = spyglass(env, "inventory", "trust", "lab-003", "--fingerprint", wrong)
    assert refused.returncode == 2
    assert f"presented {right}, not {wrong}" in refused.stderr
    assert refused.stderr.count("\n") == 1
    assert known_hosts.read_text() == ""

    unconfirmed = spyglass(env, "inventory", "trust", "lab-003")
    assert unconfirmed.returncode == 2 and "not confirmed" in unconfirmed.stderr
    assert right in unconfirmed.stdout
    assert known_hosts.read_text() == ""

    pinned = spyglass(env, "inventory", "trust", "lab-003", "--fingerprint", right)
    assert pinned.returncode == 0, pinned.stderr
    (line,) = known_hosts.read_text().splitlines()
    host = next(h for h in inventory["hosts"] if h["name"] == "lab-003")
    assert line.startswith(f"[{host['address']}]:{host['port']} ssh-ed25519 ")

    again = spyglass(env, "inventory", "trust", "lab-003", "--yes")
    assert again.returncode == 0 and "already pinned" in again.stdout
    assert len(known_hosts.read_text().splitlines()) == 1

    checked = spyglass(env, "inventory", "check", "-t", "name=lab-003", "--hello-only", "--json")
    assert checked.returncode == 0, checked.stdout
    assert json.loads(checked.stdout)["status"] == "ok"


def test_trust_replaces_a_changed_key_only_when_confirmed(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    # lab-005 re-keyed (or someone in the way)
    known_hosts, stale = known_hosts_with_wrong_key(lab, 4)
    inventory = lab_inventory(lab, tmp_path, known_hosts)
    env = {**lab_env, "SPYGLASS_INVENTORY": str(save_inventory(inventory, tmp_path))}
    refused = spyglass(env, "inventory", "trust", "lab-005", "--fingerprint", "SHA256:" + "A" * 43)
    assert refused.returncode == 2 and "WARNING" in refused.stderr
    assert stale in (tmp_path / "known_hosts").read_text()
    right = host_key_fingerprint(lab, "lab-005")
    accepted = spyglass(env, "inventory", "trust", "lab-005", "--fingerprint", right)
    assert accepted.returncode == 0, accepted.stderr
    lines = (tmp_path / "known_hosts").read_text().splitlines()
    assert stale not in lines and len(lines) == LAB_SIZE
    checked = spyglass(env, "inventory", "check", "--hello-only")
    assert checked.returncode == 0, checked.stdout


class _Bastion(asyncssh.SSHServer):
    """A jump host that only forwards TCP (what `ssh -J` needs), like a locked-down sshd."""

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int):  # type: ignore[no-untyped-def]
        return True


async def test_host_reached_through_a_jump_host(
    lab: Lab, lab_env: dict[str, str], tmp_path: Path
) -> None:
    import asyncio

    bastion_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_factory=_Bastion,
        server_host_keys=[bastion_key],
        authorized_client_keys=str(lab.dir / "console_ed25519.pub"),
        gss_host=None,
    )
    try:
        port = server.sockets[0].getsockname()[1]
        bastion_line = f"[127.0.0.1]:{port} {bastion_key.export_public_key().decode().strip()}"
        inventory = lab_inventory(
            lab, tmp_path, (lab.dir / "known_hosts").read_text() + bastion_line + "\n"
        )
        inventory["hosts"].append(
            {"name": "bastion", "address": "127.0.0.1", "port": port, "tags": {"role": "jump"}}
        )
        for host in inventory["hosts"]:
            if host["name"] == "lab-002":
                host["jump"] = "bastion"
        env = {**lab_env, "SPYGLASS_INVENTORY": str(save_inventory(inventory, tmp_path))}
        proc = await asyncio.create_subprocess_exec(
            *SPYGLASS, "run", "file", "--paths", "/srv",
            "--name", "^planted-ioc.bin$", "-t", "name=lab-002", "--json",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, err.decode()
        events = [json.loads(line) for line in out.decode().splitlines()]
        assert [e["status"] for e in events if e["event"] == "host"] == ["matched"]
    finally:
        server.close()
        await server.wait_closed()
