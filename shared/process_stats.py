"""What a service reports about itself in `$SRV.STATS` and on its counters endpoint: its message
counters and the process's resident memory, read when asked (one small /proc read)."""

import resource
from collections import Counter
from pathlib import Path

STATM = Path("/proc/self/statm")  # sizes in pages: total, resident, shared, …
PAGE_BYTES = resource.getpagesize()


def resident_bytes() -> int:
    """This process's resident set size (0 where /proc is not there)."""
    try:
        return int(STATM.read_bytes().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


def reported(counters: Counter[str]) -> dict[str, int]:
    """The counters with `rss_bytes`, as the metrics read them (`stellaclaw metrics`)."""
    return {**counters, "rss_bytes": resident_bytes()}
