"""No single hostile file or process can fail or stall a sweep (issue 11, point 5).

An ordinary local user plants one thing, and the sweep must still end with every other result:
a process with a 1.3 MiB command line (the row is cut, the sweep ends ``ok``), a PKCS#8 key of an
unknown algorithm (one counted error), an encrypted key whose ``.pub`` is a FIFO and a FIFO as
dpkg's database (refused without blocking), files of unterminated ``BEGIN`` lines (parsed in
linear time). Stalls are caught by a deadline on a worker thread, never by timing the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from console.lab.local import Lab
from modules.bounds import ROW_BUDGET, bound_row
from protocol.action import Operation, make_action
from protocol.envelope import Envelope
from protocol.signing import Signer
from tests.support.agents import converse, run_frames, start_agent, stop_agent
from tests.support.module_runs import run_module
from tests.support.solo_agent import hostile_agent_dir

#: Eleven arguments of 120 KiB (one argument may hold at most 128 KiB): 1.3 MiB in all.
HUGE_ARGS = ["x" * (120 * 1024)] * 11


@pytest.fixture
def huge_process() -> Iterator[subprocess.Popen[bytes]]:
    marker = "spyglass-huge-cmdline-marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()", marker, *HUGE_ARGS],
        stdin=subprocess.PIPE,
    )
    yield proc
    proc.kill()
    proc.wait()


def test_every_row_is_bounded_with_the_true_length() -> None:
    row = bound_row({"cmdline": "a" * 2_000_000, "matched": ["x"] * 100_000, "n": 7})
    assert row["cmdline"].endswith("...[2000000 chars]") and len(row["cmdline"]) < 70_000
    assert row["matched"][-1] == "...[100000 items]"
    assert row["n"] == 7
    control = bound_row({"a": "\x1b" * 200_000, "b": "\x1b" * 200_000, "c": "\x1b" * 200_000})
    assert len(str(control).encode()) < ROW_BUDGET  # JSON escapes each in 6 bytes: still fits
    small = {"path": "/etc/passwd", "size": 1, "matched": ["name"]}
    assert bound_row(small) == small


def test_a_huge_command_line_is_cut_in_its_row(huge_process: subprocess.Popen[bytes]) -> None:
    ctx = run_module("process", "/", cmdline=["spyglass-huge-cmdline-marker"])
    rows = [r for r in ctx.rows if r["pid"] == huge_process.pid]
    assert len(rows) == 1
    true_length = len(" ".join([sys.executable, "-c", "import sys; sys.stdin.read()"]))
    true_length += len(" spyglass-huge-cmdline-marker") + sum(1 + len(a) for a in HUGE_ARGS)
    assert rows[0]["cmdline"].endswith(f"...[{true_length} chars]")


async def test_a_huge_command_line_does_not_end_the_sweep_through_the_agent(
    lab: Lab, huge_process: subprocess.Popen[bytes]
) -> None:
    agent = start_agent(hostile_agent_dir(lab))
    try:
        signer = Signer(lab.gnupghome)
        action = make_action("huge", "all", [Operation("process", {"name": ["^python"]})])
        frames = await converse(
            agent, run_frames(signer.sign(Envelope(action)).to_dict()), timeout=60
        )
    finally:
        stop_agent(agent)
    done = next(f for f in frames if f["type"] == "done")
    assert done["status"] == "ok", done
    rows = [f["data"] for f in frames if f["type"] == "match"]
    huge = [r for r in rows if r["pid"] == huge_process.pid]
    assert len(huge) == 1 and huge[0]["cmdline"].endswith(" chars]"), done


def _pkcs8_unknown_algorithm() -> bytes:
    """A PKCS#8 PrivateKeyInfo whose algorithm is the OID 1.2.3.4: cryptography raises
    UnsupportedAlgorithm on it."""
    import base64

    oid = bytes([0x06, 0x03, 0x2A, 0x03, 0x04])
    algorithm = bytes([0x30, len(oid)]) + oid
    key = bytes([0x04, 0x04]) + b"\x00" * 4
    body = bytes([0x02, 0x01, 0x00]) + algorithm + key
    der = bytes([0x30, len(body)]) + body
    pem = base64.encodebytes(der).decode()
    return f"-----BEGIN PRIVATE KEY-----\n{pem}-----END PRIVATE KEY-----\n".encode()


def _good_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(
        key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    )


def test_a_key_of_an_unknown_algorithm_is_one_counted_error(tmp_path: Path) -> None:
    home = tmp_path / "home" / "u" / ".ssh"
    home.mkdir(parents=True)
    (home / "a_odd_key").write_bytes(_pkcs8_unknown_algorithm())
    _good_key(home / "b_good_key")
    ctx = run_module("sshkey", tmp_path, paths=["/home"])
    assert [r["path"] for r in ctx.rows] == ["/home/u/.ssh/b_good_key"]
    assert ctx.last_progress["errors"] == 1
    assert len(ctx.errors) == 1 and ctx.errors[0].startswith("/home/u/.ssh/a_odd_key: ")


def test_an_encrypted_key_whose_pub_is_a_fifo_does_not_block(tmp_path: Path) -> None:
    home = tmp_path / "home" / "u" / ".ssh"
    home.mkdir(parents=True)
    (home / "id_rsa").write_bytes(
        b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
        b"DEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n"
        b"-----END RSA PRIVATE KEY-----\n"
    )
    os.mkfifo(home / "id_rsa.pub")  # no writer: opening it blocking would wait forever
    ctx = run_module("sshkey", tmp_path, paths=["/home"])
    assert [(r["path"], r["encrypted"], r["fingerprint_sha256"]) for r in ctx.rows] == [
        ("/home/u/.ssh/id_rsa", True, None)
    ]


def test_unterminated_begin_lines_are_parsed_in_linear_time(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    line = b"-----BEGIN RSA PRIVATE KEY-----\n"
    for i in range(200):  # quadratic parsing: about 1.5 s per file, 5 minutes in all
        (home / f"trap{i:03d}").write_bytes(line * (64 * 1024 // len(line)))
    _good_key(home / "zz_good_key")
    ctx = run_module("sshkey", tmp_path, paths=["/home"])
    assert [r["path"] for r in ctx.rows] == ["/home/zz_good_key"]
    assert ctx.last_progress["files_scanned"] == 201


def test_a_fifo_as_the_dpkg_database_does_not_hang_pkg(tmp_path: Path) -> None:
    status = tmp_path / "var" / "lib" / "dpkg" / "status"
    status.parent.mkdir(parents=True)
    os.mkfifo(status)
    apk = tmp_path / "lib" / "apk" / "db" / "installed"
    apk.parent.mkdir(parents=True)
    apk.write_text("P:musl\nV:1.2.4-r2\nA:x86_64\n\n")
    ctx = run_module("pkg", tmp_path)
    assert [r["name"] for r in ctx.rows] == ["musl"]
    assert ctx.errors == ["/var/lib/dpkg/status: not a regular file"]


def test_max_errors_bounds_the_reported_errors(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    for i in range(30):
        (home / f"bad{i:02d}").write_bytes(_pkcs8_unknown_algorithm())
        (home / f"bad{i:02d}.gz").write_bytes(b"\x1f\x8b\x08\x00truncated gzip")
    for ctx in (
        run_module("sshkey", tmp_path, paths=["/home"], max_errors=5),
        run_module("file", tmp_path, paths=["/home"], content=["x"], decompress=True, max_errors=5),
    ):
        assert ctx.last_progress["errors"] == 30
        assert len(ctx.errors) == 6
        assert ctx.errors[-1] == "more than 5 errors: further ones are only counted"
