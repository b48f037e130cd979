"""Inventory loading: one bad file per failure mode, each with its exact message, and good files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inventory import Defaults, Host, Inventory, dump_inventory, load_inventory
from protocol.errors import InventoryError

DATA = Path(__file__).parent / "data" / "inventory"
NAME_RULE = "a host name (letters, digits, '.', '_', '-', ':')"
TAG_RULE = (
    "a tag name must be letters, digits, '_', '.', '-' (not starting with a digit, '.' or '-') "
    "and not a selector keyword (all, and, or, not, in)"
)

BAD = {
    "syntax": "invalid TOML: Expected newline or end of document after a statement "
    "(at line 6, column 15)",
    "encoding": "not UTF-8 text (byte 0xe9 at offset 11)",
    "top_key": 'host: unknown key (did you mean "hosts"?)',
    "defaults_type": "defaults: expected a table, got 3",
    "defaults_key": 'defaults.prot: unknown key (did you mean "port"?)',
    "defaults_timeout": "defaults.connect_timeout: expected a number of seconds above 0, got 0",
    "defaults_user": 'defaults.user: expected a non-empty string, got ""',
    "known_hosts": "defaults.known_hosts: expected a path (a non-empty string), got 3",
    "client_keys_type": "defaults.client_keys: expected an array of paths, "
    'got "keys/console_ed25519"',
    "client_keys_item": "defaults.client_keys[1]: expected a path (a non-empty string), got 3",
    "hosts_type": 'hosts: expected an array of tables ([[hosts]]), got "web-1"',
    "host_not_table": "hosts[0]: expected a table, got 1",
    "port_string": 'hosts[3].port: expected an integer 1-65535, got "x"',
    "port_range": "hosts[0].port: expected an integer 1-65535, got 70000",
    "port_zero": "defaults.port: expected an integer 1-65535, got 0",
    "port_bool": "hosts[0].port: expected an integer 1-65535, got true",
    "port_float": "hosts[0].port: expected an integer 1-65535, got 22.0",
    "missing_name": "hosts[0].name: missing (required)",
    "missing_address": "hosts[0].address: missing (required)",
    "host_key": 'hosts[0].adress: unknown key (did you mean "address"?)',
    "host_key_far": "hosts[0].colour: unknown key "
    "(known keys: name, address, port, user, tags, jump)",
    "name_chars": f"hosts[0].name: expected {NAME_RULE}, optionally with one range like [01-40], "
    'got "web 1"',
    "name_type": f"hosts[0].name: expected {NAME_RULE}, optionally with one range like [01-40], "
    "got 1",
    "address_space": "hosts[0].address: expected an address (a non-empty string without spaces), "
    'got "10.0.0.1 10.0.0.2"',
    "duplicate": 'hosts[1].name: duplicate host name "web-1" (already defined by hosts[0])',
    "duplicate_range": 'hosts[1].name: duplicate host name "web-2" (already defined by hosts[0])',
    "jump_unknown": 'hosts[0].jump: no host named "bastion"',
    "jump_type": f"hosts[0].jump: expected {NAME_RULE}, got an array",
    "jump_self": "hosts[0].jump: jump cycle: web-1 -> web-1",
    "jump_cycle": "hosts[1].jump: jump cycle: a -> b -> c -> a",
    "tags_type": 'hosts[0].tags: expected a table of strings, got "prod"',
    "tag_value": "hosts[0].tags.tier: expected a string, got 1",
    "tag_reserved": 'hosts[0].tags.name: reserved: every host has the tag "name" already',
    "tag_keyword": f"hosts[0].tags.in: {TAG_RULE}",
    "tag_key_chars": f'hosts[0].tags."data center": {TAG_RULE}',
    "range_reversed": "hosts[0].name: range [10-01] runs backwards",
    "range_two": "hosts[0].address: only one range like [01-40] is allowed",
    "range_huge": "hosts[0].name: range [1-1000000] has more than 100000 hosts",
    "range_fixed_address": 'hosts[0].address: the name "web-[01-40]" is a range of 40 hosts, '
    "so the address needs a range of 40 too (like 10.0.0.[1-40])",
    "range_count": "hosts[0].address: a range of 6 addresses does not match the 40 hosts "
    'of the name "web-[01-40]"',
    "range_address_only": 'hosts[0].address: the name "web-1" has no range, '
    "so the address cannot have one",
}


def test_every_bad_file_has_a_case() -> None:
    assert {p.stem.removeprefix("bad_") for p in DATA.glob("bad_*.toml")} == set(BAD)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The message names the file as the user gave it, the key path and the problem."""
    monkeypatch.chdir(DATA)
    with pytest.raises(InventoryError) as caught:
        load_inventory(f"bad_{case}.toml")
    assert str(caught.value) == f"bad_{case}.toml: {BAD[case]}"
    assert "\n" not in str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert str(caught.value) == f"{path}: cannot read the inventory: No such file or directory"


def test_deep_nesting_is_an_inventory_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 100_000)
    with pytest.raises(InventoryError, match=r"deep\.toml: invalid TOML"):
        load_inventory(path)


FULL = """\
[defaults]
port = 4022
user = "spyglass"
known_hosts = "known_hosts"
client_keys = ["keys/console_ed25519", "/abs/other_key"]
connect_timeout = 2.5

[[hosts]]
name = "bastion-1"
address = "192.0.2.1"
port = 22
user = "ops"
tags = { env = "prod", role = "bastion" }

[[hosts]]
name = "web-1"
address = "10.0.0.5"
tags = { env = "prod", role = "web", os = "linux" }
jump = "bastion-1"
"""


def test_load_full_example(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text(FULL)
    inv = load_inventory(path)
    assert inv.path == path
    assert inv.defaults == Defaults(
        port=4022,
        user="spyglass",
        known_hosts=tmp_path / "known_hosts",
        client_keys=(tmp_path / "keys/console_ed25519", Path("/abs/other_key")),
        connect_timeout=2.5,
    )
    assert inv.hosts == (
        Host(
            name="bastion-1",
            address="192.0.2.1",
            port=22,
            user="ops",
            tags={"env": "prod", "role": "bastion", "name": "bastion-1"},
        ),
        Host(
            name="web-1",
            address="10.0.0.5",
            port=4022,
            user="spyglass",
            tags={"env": "prod", "role": "web", "os": "linux", "name": "web-1"},
            jump="bastion-1",
        ),
    )


def test_relative_inventory_path_resolves_against_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "inventory.toml").write_text('[defaults]\nknown_hosts = "known_hosts"\n')
    monkeypatch.chdir(tmp_path)
    inv = load_inventory("lab/inventory.toml")
    assert inv.defaults.known_hosts == tmp_path / "lab" / "known_hosts"
    assert inv.path == tmp_path / "lab" / "inventory.toml"


def test_empty_file_is_an_empty_inventory(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text("")
    inv = load_inventory(path)
    assert inv.hosts == ()
    assert inv.defaults == Defaults()
    assert inv.defaults.client_keys == ()  # the ssh-agent


def test_integer_timeout_becomes_float(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text("[defaults]\nconnect_timeout = 5\n")
    assert load_inventory(path).defaults.connect_timeout == 5.0


def test_range_expands_in_lockstep(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text(
        '[[hosts]]\nname = "web-[01-40]"\naddress = "10.0.0.[5-44]"\ntags = { role = "web" }\n'
        '\n[[hosts]]\nname = "db[8-11].dc"\naddress = "db[8-11].example.org"\nport = 2222\n'
    )
    inv = load_inventory(path)
    assert len(inv.hosts) == 44
    assert [(h.name, h.address) for h in inv.hosts[:2]] == [
        ("web-01", "10.0.0.5"),
        ("web-02", "10.0.0.6"),
    ]
    assert (inv.hosts[39].name, inv.hosts[39].address) == ("web-40", "10.0.0.44")
    assert inv.hosts[39].tags == {"role": "web", "name": "web-40"}
    assert [h.name for h in inv.hosts[40:]] == ["db8.dc", "db9.dc", "db10.dc", "db11.dc"]
    assert inv.hosts[43].address == "db11.example.org"
    assert {h.port for h in inv.hosts[40:]} == {2222}


def test_range_padding_follows_the_first_number(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text('[[hosts]]\nname = "n[008-010]"\naddress = "10.0.[0-2].1"\n')
    assert [(h.name, h.address) for h in load_inventory(path).hosts] == [
        ("n008", "10.0.0.1"),
        ("n009", "10.0.1.1"),
        ("n010", "10.0.2.1"),
    ]


def test_range_hosts_share_a_jump(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text(
        '[[hosts]]\nname = "bastion"\naddress = "192.0.2.1"\n'
        '[[hosts]]\nname = "w[1-2]"\naddress = "10.0.0.[1-2]"\njump = "bastion"\n'
    )
    assert [h.jump for h in load_inventory(path).hosts] == [None, "bastion", "bastion"]


def test_jump_chain_without_cycle(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text(
        '[[hosts]]\nname = "c"\naddress = "3"\njump = "b"\n'
        '[[hosts]]\nname = "b"\naddress = "2"\njump = "a"\n'
        '[[hosts]]\nname = "a"\naddress = "1"\n'
    )
    assert [h.jump for h in load_inventory(path).hosts] == ["b", "a", None]


def test_by_name(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text(FULL)
    inv = load_inventory(path)
    assert inv.by_name("web-1").address == "10.0.0.5"
    with pytest.raises(InventoryError) as caught:
        inv.by_name("web-2")
    assert str(caught.value) == f'{path}: no host named "web-2" (did you mean "web-1"?)'
    with pytest.raises(InventoryError) as caught:
        inv.by_name("zzzzzz")
    assert str(caught.value) == f'{path}: no host named "zzzzzz"'


def test_select(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text(FULL)
    inv = load_inventory(path)
    assert [h.name for h in inv.select("all")] == ["bastion-1", "web-1"]
    assert [h.name for h in inv.select("role=web")] == ["web-1"]
    assert [h.name for h in inv.select("address=192.0.2.*")] == ["bastion-1"]
    assert inv.select("env=dev") == []


def test_hosts_are_hashable_and_frozen(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text(FULL)
    inv = load_inventory(path)
    assert len(set(inv.hosts)) == 2
    with pytest.raises(AttributeError):
        inv.hosts[0].port = 1  # type: ignore[misc]


def test_dump_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "inventory.toml"
    source.write_text(FULL)
    inv = load_inventory(source)
    copy = tmp_path / "copy.toml"
    dump_inventory(inv, copy)
    again = load_inventory(copy)
    assert again.defaults == inv.defaults
    assert again.hosts == inv.hosts
    text = copy.read_text()
    assert 'known_hosts = "known_hosts"' in text  # relative to the file, so a lab can move
    assert "port = 22\n" in text and "port = 4022" in text  # host override kept, default not
    assert 'name = "web-1"' in text and "[hosts.tags]" in text


def test_dump_dict_like_the_lab(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    dump_inventory(
        {
            "defaults": {"known_hosts": "known_hosts", "client_keys": ["console_ed25519"]},
            "hosts": [
                {"name": f"lab-{i:03d}", "address": f"127.0.1.{i}", "tags": {"role": "web"}}
                for i in range(1, 4)
            ],
        },
        path,
    )
    inv = load_inventory(path)
    assert [h.name for h in inv.hosts] == ["lab-001", "lab-002", "lab-003"]
    assert inv.defaults.client_keys == (tmp_path / "console_ed25519",)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_dump_refuses_a_bad_document_and_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text("# old\n")
    with pytest.raises(InventoryError) as caught:
        dump_inventory({"hosts": [{"name": "a", "address": "b", "port": 0}]}, path)
    assert str(caught.value) == f"{path}: hosts[0].port: expected an integer 1-65535, got 0"
    assert path.read_text() == "# old\n"


def test_dump_into_missing_folder(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "inventory.toml"
    with pytest.raises(InventoryError) as caught:
        dump_inventory({"hosts": []}, path)
    assert str(caught.value) == f"{path}: cannot write the inventory: No such file or directory"


def test_inventory_stays_headless() -> None:
    """The CLI checks inventories without paying for the SSH or TUI stacks."""
    code = (
        "import sys, inventory\n"
        "inventory.compile_selector('all')\n"
        "bad = {'asyncssh', 'textual', 'console', 'agentd', 'tui', 'modules'} & set(sys.modules)\n"
        "print(sorted(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_inventory_is_constructible_directly() -> None:
    host = Host(name="h", address="a", port=1, user="u", tags={"name": "h"})
    inv = Inventory(path=Path("x.toml"), defaults=Defaults(), hosts=(host,))
    assert inv.by_name("h") is host


def test_odd_unknown_key_is_quoted_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "inventory.toml"
    path.write_text('[[hosts]]\nname = "a"\naddress = "b"\n"x\\ny" = 1\n')
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert str(caught.value) == (
        f'{path}: hosts[0]."x\\ny": unknown key (known keys: name, address, port, user, tags, jump)'
    )
