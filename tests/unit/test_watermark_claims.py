"""Per-partition watermark claims of a reader (rings.clock.Watermark.claims): what the
ingest tells the stages, and why a partition taken over must not inherit this reader's
watermark (the two-worker SIGKILL test found it)."""

from __future__ import annotations

from rings.clock import SourceClock, Watermark
from rings.state import MemoryKV

L = 120_000          # lateness
T = 1_790_000_000_000


def test_each_partition_claims_its_own_progress() -> None:
    wm = Watermark(L)
    wm.assign([0, 1], now=0.0)
    wm.observe(0, T + 600_000, now=1.0)
    wm.observe(1, T, now=1.0)
    assert wm.value(now=1.0) == T - L                 # the lowest of the two
    assert wm.claims(now=1.0) == {0: T + 600_000 - L, 1: T - L}


def test_a_partition_taken_over_claims_nothing_until_read() -> None:
    wm = Watermark(L)
    wm.assign([0], now=0.0)
    wm.observe(0, T + 3_600_000, now=1.0)             # this reader is an hour ahead
    assert wm.value(now=1.0) == T + 3_600_000 - L
    wm.assign([0, 1], now=2.0)                        # partition 1's old owner died
    claims = wm.claims(now=2.0)
    assert 1 not in claims                            # nothing read from it yet
    wm.observe(1, T, now=3.0)                         # its backlog, an hour behind
    assert wm.claims(now=3.0)[1] == T - L
    # The stage keeps the old owner's claim for partition 1, then this reader's: its
    # backlog is not late.
    stage = SourceClock(MemoryKV(), "~src", 2)
    stage.update({0: T + 3_600_000 - L, 1: T - 60_000 - L})    # before: both owners
    stage.update(wm.claims(now=3.0))
    assert stage.value() == T - L
    # What the reader's single watermark would have told it instead:
    assert wm.value(now=3.0) > T                      # monotone: an hour ahead of the backlog


def test_an_idle_partition_claims_the_others_watermark() -> None:
    wm = Watermark(L, idle_s=5.0)
    wm.assign([0, 1], now=0.0)
    wm.observe(0, T, now=1.0)
    assert wm.claims(now=1.0, caught_up=[1]) == {0: T - L}      # 1 not idle yet
    wm.observe(0, T + 60_000, now=9.0)
    # partition 1 is read to its end and silent for 9 s: idle, it does not hold the clock
    assert wm.claims(now=9.0, caught_up=[1]) == {0: T + 60_000 - L, 1: T + 60_000 - L}
