"""Modules benchmark: the file and yara modules against the C tools, on one generated tree.

Each line compares a spyglass module, run in this process through a ``CollectingContext``, with
the tool an investigator would otherwise use, measured in the same run on the same warm tree:

    walk      file --paths T --name '\\.conf$'        find T -name '*.conf'
    content   file --paths T --content RE             grep -r -l -E RE T
    sha256    file --paths T --sha256 H               find T -type f -print0 | xargs -0 sha256sum
    yara      yara --paths T --rules R                rules.match(path) over os.walk (yara-python)

The page cache is warmed first; each side runs ``--repeat`` times (default 3) and the best time
counts. Goals (issue 3): walk and content at most 2x, sha256 at most 1.2x, yara about 1x.

    .venv/bin/python bench/modules.py                # tree cached in $TMPDIR between runs
    .venv/bin/python bench/modules.py --files 200000 --fresh
    .venv/bin/python bench/modules.py --only content --python-reader   # as without a C compiler
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modules.base import CollectingContext
from modules.registry import get_module

NEEDLE_RE = r"NEEDLE-[0-9]{4}-[a-z]+"
NAME_RE = r"\.conf$"
YARA_RULES = """
rule needle { strings: $a = /NEEDLE-[0-9]{4}-[a-z]+/ condition: $a }
rule elf_header { strings: $elf = { 7F 45 4C 46 } condition: $elf at 0 }
"""
#: Extensions and their share of the files; ``bin`` files hold random bytes, the rest text.
EXTENSIONS = (("txt", 55), ("log", 20), ("dat", 8), ("bin", 15), ("conf", 2))


def size_for(rng: random.Random) -> int:
    """Mostly small files, as on a real system, with a tail of large ones."""
    r = rng.random()
    if r < 0.70:
        return rng.randint(0, 2048)
    if r < 0.95:
        return rng.randint(2048, 16384)
    if r < 0.9995:
        return rng.randint(16384, 131072)
    return rng.randint(2 << 20, 6 << 20)


def make_tree(top: Path, files: int, seed: int = 7) -> dict[str, int]:
    """``files`` files over three directory levels; about 0.5% of text files hold a needle line."""
    rng = random.Random(seed)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(1, 9))) for _ in range(500)]
    lines = [" ".join(rng.choices(words, k=rng.randint(3, 14))) for _ in range(4000)]
    text = ("\n".join(lines * 3) + "\n").encode()  # ~600 KB of prose to cut files from
    noise = rng.randbytes(1 << 20)
    tmp = top.with_name(top.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    exts = [e for e, share in EXTENSIONS for _ in range(share)]
    counts = {"files": 0, "bytes": 0, "needles": 0, "conf": 0}
    per_dir = 200
    for i in range(files):
        d = i // per_dir
        folder = tmp / f"d{d // 25:03}" / f"e{d % 25:02}"
        if i % per_dir == 0:
            folder.mkdir(parents=True)
        ext = rng.choice(exts)
        size = size_for(rng)
        if ext == "bin":
            data = (noise * (size // len(noise) + 1))[:size] if size > len(noise) else None
            if data is None:
                start = rng.randrange(len(noise) - size + 1)
                data = noise[start : start + size]
        else:
            reps = size // len(text) + 1
            base = text * reps if reps > 1 else text
            start = rng.randrange(len(base) - size + 1)
            data = base[start : start + size]
            if rng.random() < 0.005:
                at = rng.randrange(len(data) + 1)
                data = data[:at] + b"\nsecret NEEDLE-%04d-leak here\n" % (i % 10000) + data[at:]
                counts["needles"] += 1
        counts["conf"] += ext == "conf"
        (folder / f"f{i:06}.{ext}").write_bytes(data)
        counts["files"] += 1
        counts["bytes"] += len(data)
    (tmp / "COMPLETE").write_text(repr(counts))
    tmp.rename(top)
    return counts


def tree(args: argparse.Namespace) -> tuple[Path, dict[str, int]]:
    top = Path(args.dir or Path(tempfile.gettempdir()) / f"spyglass-bench-{args.files}")
    if args.fresh:
        shutil.rmtree(top, ignore_errors=True)
    marker = top / "COMPLETE"
    if marker.exists():
        counts = eval(marker.read_text(), {})  # our own repr of a dict of ints
        marker.unlink()  # the tree is walked: the marker must not count as one of its files
        return top, counts
    print(f"generating {args.files} files in {top} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    counts = make_tree(top, args.files)
    (top / "COMPLETE").unlink()
    print(f"  done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return top, counts


def keep_marker(top: Path, counts: dict[str, int]) -> None:
    (top / "COMPLETE").write_text(repr(counts))


def warm(top: Path) -> int:
    """Read every file once, so both sides find the same page and dentry caches."""
    total = 0
    for dirpath, _dirs, names in os.walk(top):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                while chunk := f.read(1 << 20):
                    total += len(chunk)
    return total


def best_of(
    ours: Callable[[], Any], theirs: Callable[[], Any], repeat: int
) -> tuple[float, Any, float, Any]:
    """Best time and last result of each side, alternating runs so both see the same load."""
    times: dict[int, list[float]] = {0: [], 1: []}
    results: list[Any] = [None, None]
    for _ in range(repeat):
        for side, fn in ((1, theirs), (0, ours)):
            t0 = time.perf_counter()
            results[side] = fn()
            times[side].append(time.perf_counter() - t0)
    return min(times[0]), results[0], min(times[1]), results[1]


def module_run(name: str, params: dict[str, Any]) -> Callable[[], list[dict[str, Any]]]:
    module = get_module(name)
    assert module is not None
    valid = module.validate(params)

    def go() -> list[dict[str, Any]]:
        ctx = CollectingContext()
        module.run(valid, ctx)
        if ctx.errors:
            raise SystemExit(f"{name}: errors: {ctx.errors[:3]}")
        return ctx.rows

    return go


def command(argv: list[str], *, shell: bool = False) -> Callable[[], bytes]:
    # Output goes to a pipe, as a script would read it (GNU grep takes /dev/null as -q).
    def go() -> bytes:
        done = subprocess.run(argv if not shell else argv[0], shell=shell, capture_output=True)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{argv}: exit {done.returncode}: {done.stderr[:200]!r}")
        return done.stdout

    return go


def yara_loop(top: Path) -> Callable[[], int]:
    import yara

    rules = yara.compile(source=YARA_RULES)

    def go() -> int:
        hits = 0
        for dirpath, _dirs, names in os.walk(top):
            for name in names:
                if rules.match(os.path.join(dirpath, name)):
                    hits += 1
        return hits

    return go


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000, help="files in the tree")
    parser.add_argument("--dir", help="where the tree lives (default: $TMPDIR/spyglass-bench-N)")
    parser.add_argument("--fresh", action="store_true", help="regenerate the tree")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; the best counts")
    parser.add_argument(
        "--only", choices=["walk", "content", "sha256", "yara"], action="append", help="one line"
    )
    parser.add_argument(
        "--python-reader",
        action="store_true",
        help="content read by the Python twin, as where modules.fs._batchread was not built",
    )
    args = parser.parse_args()
    if args.python_reader:
        from modules.fs import batch

        batch.read_files = batch.read_files_py
    top, counts = tree(args)
    try:
        t0 = time.perf_counter()
        size = warm(top)
        print(
            f"tree {top}: {counts['files']} files, {size / 1e6:.0f} MB, "
            f"{counts['needles']} needles, {counts['conf']} .conf; warmed in "
            f"{time.perf_counter() - t0:.1f}s",
            flush=True,
        )
        d = str(top)
        suspect = next(p for p in sorted(top.glob("d000/e00/*")) if p.stat().st_size > 4096)
        suspect_hash = hashlib.sha256(suspect.read_bytes()).hexdigest()
        cases: list[
            tuple[str, Callable[[], Any], str, Callable[[], Any], Callable[..., tuple[int, int]]]
        ] = [
            (
                "walk",
                module_run("file", {"paths": [d], "name": [NAME_RE], "match_limit": 10**9}),
                "find -name '*.conf'",
                command(["find", d, "-name", "*.conf"]),
                lambda rows, out: (len(rows), out.count(b"\n")),
            ),
            (
                "content",
                module_run("file", {"paths": [d], "content": [NEEDLE_RE], "match_limit": 10**9}),
                "grep -r -l -E",
                command(["grep", "-r", "-l", "-E", NEEDLE_RE, d]),
                lambda rows, out: (len(rows), out.count(b"\n")),
            ),
            (
                "sha256",
                module_run("file", {"paths": [d], "sha256": [suspect_hash]}),
                "find|xargs sha256sum",
                command([f"find {d} -type f -print0 | xargs -0 sha256sum"], shell=True),
                lambda rows, out: (len(rows), out.count(suspect_hash.encode())),
            ),
            (
                "yara",
                module_run("yara", {"paths": [d], "rules": YARA_RULES, "match_limit": 10**9}),
                "yara-python loop",
                yara_loop(top),
                lambda rows, out: (len(rows), out),
            ),
        ]
        print(
            f"{'':8} {'spyglass':>9} {'baseline':>9} {'ratio':>6}  baseline tool   (best of "
            f"{args.repeat})"
        )
        for name, ours, label, theirs, agree in cases:
            if args.only and name not in args.only:
                continue
            t_ours, rows, t_theirs, out = best_of(ours, theirs, args.repeat)
            mine, other = agree(rows, out)
            note = "" if mine == other else f"  (results differ: {mine} vs {other})"
            ratio = t_ours / t_theirs
            line = f"{name:8} {t_ours:8.3f}s {t_theirs:8.3f}s {ratio:5.2f}x  {label}{note}"
            print(line, flush=True)
    finally:
        keep_marker(top, counts)


if __name__ == "__main__":
    main()
