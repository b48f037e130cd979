"""Every `spyglass ...` example of the README's usage and module sections runs as it is, against
the lab (the README's `demo-lab` is the conftest `lab` here), from a folder holding `contrib/`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import SPYGLASS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


#: What the lab's planted findings make each `spyglass run MODULE` example return.
FINDS = {"file": (0,), "pkg": (0,), "sshkey": (0,), "yara": (0,), "agent": (0,)}


def examples() -> list[str]:
    """The `spyglass` lines of the sh blocks from "Using it" to "Security model"."""
    text = README.read_text()
    usage = text[text.index("## Using it") : text.index("## Security model")]
    blocks = re.findall(r"```sh\n(.*?)```", usage, re.S)
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    # Not run here: a --follow runs until stopped, and a <PLACEHOLDER> wants a value of the
    # reader's own (the lines before it say where it comes from).
    return [
        line
        for line in lines
        if line.startswith("spyglass ") and "--follow" not in line and "<" not in line
    ]


def test_the_readme_has_the_examples_it_promises() -> None:
    found = examples()
    for module in ("file", "pkg", "sshkey", "netstat", "process", "yara", "agent"):
        assert any(line.startswith(f"spyglass run {module} ") for line in found), module
    assert "spyglass results show last --csv > matches.csv" in found


@pytest.mark.parametrize("line", examples())
def test_readme_example_runs_against_the_lab(
    line: str, lab_env: dict[str, str], tmp_path: Path
) -> None:
    shutil.copytree(ROOT / "contrib", tmp_path / "contrib")
    if "results" in line:  # something to list and show: the README's first example
        subprocess.run([*SPYGLASS, "run", "agent", "-t", "all"], env=lab_env, check=True)
    script = f'spyglass() {{ "{SPYGLASS[0]}" -m spyglass_cli "$@"; }}\nset -o pipefail\n{line}'
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=lab_env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    # 0: found something, 1: every host answered, nothing found; never 2 (refused) or 3 (failed)
    assert done.returncode in FINDS.get(line.split()[2], (0, 1)), done.stderr
    assert "spyglass_cli" not in done.stdout  # no example finds the console's own process
    assert "spyglass:" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    if line.startswith("spyglass results show"):
        assert (tmp_path / "matches.csv").read_text().startswith("host,op,module,")
