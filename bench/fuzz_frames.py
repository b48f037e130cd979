"""Coverage-guided fuzzing of the wire decoders with atheris (libFuzzer), for a timed run.

Whatever bytes a peer sends, ``FrameDecoder.feed``, ``decode_body`` and ``decode_message`` (both
directions) must end in a message or a ``FrameError``: any other exception is a crash, and
libFuzzer writes the input that caused it to ``crash-<sha1>`` in the working folder.

    pip install -e '.[fuzz]'
    python bench/fuzz_frames.py -max_total_time=60          # about a minute
    python bench/fuzz_frames.py -runs=100000 CORPUS_DIR     # another corpus folder

libFuzzer's flags pass through (``-help=1`` lists them). Without a corpus folder the corpus lives
in ``$XDG_CACHE_HOME/spyglass/fuzz_frames`` and grows from run to run; golden frames seed it, so
the fuzzer starts from valid messages instead of discovering JSON from scratch.
The hypothesis tests in tests/test_protocol_frames.py cover the same property in every test run;
this is the deeper, slower search.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["protocol"]):
    from protocol.errors import FrameError
    from protocol.frames import FrameDecoder, decode_body, encode_frame
    from protocol.messages import TO_AGENT, TO_CONSOLE, decode_message

MAX_FRAME = 4096  # small, so the oversize path is reached as often as the others

SEEDS = [
    {"type": "hello", "versions": [1]},
    {"type": "hello", "version": 1, "agent": {"name": "a", "version": "0", "modules": ["file"]}},
    {"type": "run", "envelope": {"action": {"id": "01JD3M8Q7K2Y5V0C4T6N9P1R3S"}, "signatures": []}},
    {"type": "accepted", "action_id": "01JD3M8Q7K2Y5V0C4T6N9P1R3S", "replay": True},
    {"type": "rejected", "reason": "acl", "detail": "x", "action_id": None},
    {"type": "match", "op": 0, "data": {"path": "/etc/\udcff", "size": 1, "matched": ["name"]}},
    {"type": "progress", "op": 0, "stats": {"files": 10}},
    {"type": "done", "op": 0, "status": "limit", "stats": {}, "errors": ["e"]},
    {"type": "finished", "action_id": "01JD3M8Q7K2Y5V0C4T6N9P1R3S"},
    {"type": "cancel"},
    {"type": "error", "detail": "frame too large"},
]


def decode_frames(data: bytes) -> None:
    """Feed ``data`` to an incremental decoder in fuzzer-chosen pieces, then decode each
    frame as a message of both directions; a FrameError ends the stream, as on the wire."""
    fdp = atheris.FuzzedDataProvider(data)
    decoder = FrameDecoder(MAX_FRAME)
    cuts = [fdp.ConsumeIntInRange(0, 64) for _ in range(fdp.ConsumeIntInRange(0, 8))]
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    pieces = []
    for cut in cuts:
        pieces.append(stream[:cut])
        stream = stream[cut:]
    pieces.append(stream)
    try:
        for piece in pieces:
            for frame in decoder.feed(piece):
                for table in (TO_CONSOLE, TO_AGENT):
                    with contextlib.suppress(FrameError):
                        decode_message(frame, table)
    except FrameError:
        pass


def decode_one_body(data: bytes) -> None:
    """A frame body on its own: the JSON and schema checks without the length header."""
    try:
        frame = decode_body(data)
    except FrameError:
        return
    for table in (TO_CONSOLE, TO_AGENT):
        with contextlib.suppress(FrameError):
            decode_message(frame, table)


def test_one_input(data: bytes) -> None:
    if data[:1] == b"B":  # one input space, two targets: the first byte chooses
        decode_one_body(data[1:])
    else:
        decode_frames(data)


def seed_corpus() -> str:
    """The kept corpus folder, holding at least the golden frames (for both targets)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    folder = Path(cache) / "spyglass" / "fuzz_frames"
    folder.mkdir(parents=True, exist_ok=True)
    for index, message in enumerate(SEEDS):
        frame = encode_frame(message)
        for name, blob in ((f"seed-f{index}", b"\0" + frame), (f"seed-b{index}", b"B" + frame[4:])):
            (folder / name).write_bytes(blob)
    return str(folder)


def main() -> None:
    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):  # no corpus folder given
        argv.append(seed_corpus())
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
