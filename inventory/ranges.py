"""Host ranges: ``web-[01-40]`` is forty hosts, so a fleet fits in a few lines of TOML."""

from __future__ import annotations

import re

from inventory.fields import Invalid

_RANGE = re.compile(r"\[(\d+)-(\d+)\]")

#: Upper bound on one range, so a typo such as ``[1-10000000]`` fails instead of eating memory.
MAX_RANGE = 100_000


def expand(text: str) -> list[str]:
    """Expand the one ``[a-b]`` range of ``text``, keeping zero-padding (``[01-40]`` -> 01..40).

    Text without a range is returned alone; raises ``Invalid`` for a reversed, huge or second range.
    """
    ranges = list(_RANGE.finditer(text))
    if not ranges:
        return [text]
    if len(ranges) > 1:
        raise Invalid("only one range like [01-40] is allowed")
    found = ranges[0]
    first, last = found.group(1), found.group(2)
    start, stop = int(first), int(last)
    if start > stop:
        raise Invalid(f"range [{first}-{last}] runs backwards")
    if stop - start + 1 > MAX_RANGE:
        raise Invalid(f"range [{first}-{last}] has more than {MAX_RANGE} hosts")
    width = len(first) if len(first) > 1 and first.startswith("0") else 0
    head, tail = text[: found.start()], text[found.end() :]
    return [f"{head}{n:0{width}d}{tail}" for n in range(start, stop + 1)]
