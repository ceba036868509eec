"""The offline driver: sightings from a file through the same core as the worker.

Event time only: the watermark is the newest event time read so far minus the allowed
lateness, taken before each batch, exactly as the worker's ingest stamps it on envelopes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator

from .clock import Watermark
from .decode import Limits, decode_sightings
from .errors import InvalidRecord
from .models import Alert
from .net import Net
from .pipeline import Pipeline
from .ruleset import RuleSet
from .watchlist import WatchlistView

END_OF_TIME = 2**61
BadLine = Callable[[int, InvalidRecord], None]


@dataclass(slots=True)
class ReplayStats:
    lines: int = 0
    bad: int = 0


def replay_lines(lines: Iterable[bytes], net: Net, rules: RuleSet, watchlist: WatchlistView,
                 *, on_bad: BadLine | None = None, batch_size: int = 1000,
                 limits: Limits = Limits(), stats: ReplayStats | None = None,
                 pipeline: Pipeline | None = None, flush: bool = False) -> Iterator[Alert]:
    """Yield alerts for JSON lines (bytes, one sighting each; blank lines are skipped).

    Like the worker, replay judges only what the watermark has passed: at the end of the
    input the ordered rules have not judged its last `lateness`, and deadlines after it have
    not fired. `flush` ends the input as if event time then ran on forever: everything is
    judged and every pending deadline fires (a backtest of a file that simply stops)."""
    pipe = pipeline or Pipeline(net, rules, watchlist)
    st = stats or ReplayStats()
    wm = Watermark(rules.lateness_ms, idle_s=float("inf"))
    buf: list[bytes] = []
    numbers: list[int] = []

    def run_batch() -> Iterator[Alert]:
        ok, bad = decode_sightings(buf, net.sites, limits)
        for i, err in bad:
            st.bad += 1
            if on_bad is not None:
                on_bad(numbers[i], err)
        before = wm.value()
        batch = [s for _, s in ok]
        for s in batch:
            wm.observe(0, s.ts)
        yield from pipe.process(batch, before, wm.value())
        buf.clear()
        numbers.clear()

    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        st.lines += 1
        buf.append(line)
        numbers.append(n)
        if len(buf) >= batch_size:
            yield from run_batch()
    if buf:
        yield from run_batch()
    if flush:
        yield from pipe.process([], None, END_OF_TIME)


def replay_file(f: BinaryIO, *args: object, **kw: object) -> Iterator[Alert]:
    return replay_lines(iter(f), *args, **kw)  # type: ignore[arg-type]
