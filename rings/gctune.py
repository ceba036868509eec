"""Garbage-collector settings for the drivers (replay, the worker, bench).

The core keeps per-subject state as small dicts and lists; at city scale that is hundreds of
thousands of live containers. CPython's default thresholds then run full collections over
all of them again and again, though state holds no reference cycles: measured on the
default rules, 60% of replay's time went to the collector. So the drivers freeze what was
loaded at start-up (net, rules, modules) and make the older generations rare; a long-running
process calls `collect_now` from time to time, so cycles made elsewhere (asyncio, Faust)
are still freed.
"""

from __future__ import annotations

import gc

YOUNG = 20_000          # allocations between young collections (default 700)
MIDDLE = 1_000          # young collections per middle one (default 10)
OLD = 1_000             # middle collections per full one (default 10)


def tune_for_throughput() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)


def collect_now() -> int:
    """A full collection (the worker runs one every few minutes, between envelopes)."""
    return gc.collect()
