"""The deployment examples in contrib/ load with the real loaders and agree with each other."""

from __future__ import annotations

from pathlib import Path

from inventory.loader import load_inventory
from protocol.agent_config import load_config

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"


def unit() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (CONTRIB / "spyglass-agentd.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_example_agent_config_loads() -> None:
    config = load_config(CONTRIB / "agentd.toml")
    assert config.acl.rule_for("yara").minimum_weight == 2  # type: ignore[union-attr]
    assert config.acl.rule_for("file") == config.acl.rules["default"]


def test_example_inventory_loads_with_ranges_and_jumps() -> None:
    inventory = load_inventory(CONTRIB / "inventory.toml")
    web = inventory.select("role=web and env=prod")
    assert [h.name for h in web[:2]] == ["web-01", "web-02"] and len(web) == 40
    assert web[39].address == "10.0.1.40" and web[0].jump == "bastion-1"


def test_unit_is_hardened_and_writes_only_the_agent_state() -> None:
    settings = unit()
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "--config /etc/spyglass-agentd/agentd.toml" in settings["ExecStart"][0]
    config = load_config(CONTRIB / "agentd.toml")
    writable = settings["ReadWritePaths"][0].split()
    assert sorted(writable) == sorted(
        [str(config.state_dir), str(config.resolve(config.agent.audit_log).parent)]
    )
