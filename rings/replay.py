"""The offline driver: sightings from a file through the same core as the worker.

Event time only: the watermark is the newest event time read so far minus the allowed
lateness, taken before each batch, exactly as the worker's ingest stamps it on envelopes.

The rule set's event-time bounds (`max_skew`, `max_age`: rings.decode.Limits) are checked
against the wall clock at ingest in the worker. A recorded file has no such clock: replay
checks them only against an explicit `now` (`rings replay --now`), and by default accepts
every valid time, as the contract's replay always has. With `now` it refuses what a worker
reading every line at that wall-clock time would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator

from .clock import Watermark
from .decode import Limits, decode_sightings, limits_for
from .errors import InvalidRecord
from .models import Alert
from .net import Net
from .pipeline import Pipeline
from .pseudonym import Pseudonymizer
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
                 limits: Limits | None = None, stats: ReplayStats | None = None,
                 pipeline: Pipeline | None = None, flush: bool = False,
                 now: int | None = None, pseudonyms: Pseudonymizer | None = None
                 ) -> Iterator[Alert]:
    """Yield alerts for JSON lines (bytes, one sighting each; blank lines are skipped).

    Like the worker, replay judges only what the watermark has passed: at the end of the
    input the ordered rules have not judged its last `lateness`, and deadlines after it have
    not fired. `flush` ends the input as if event time then ran on forever: everything is
    judged and every pending deadline fires (a backtest of a file that simply stops).
    `now` (epoch ms): the wall-clock time the event-time bounds of `limits` (default: the
    rule set's) are checked against; None: not checked. `pseudonyms`: subject ids are
    replaced by their keyed pseudonyms as the worker's ingest does (the watchlist must be
    pseudonymised with the same key)."""
    pipe = pipeline or Pipeline(net, rules, watchlist)
    st = stats or ReplayStats()
    wm = Watermark(rules.lateness_ms, idle_s=float("inf"))
    lim = limits if limits is not None else limits_for(rules)
    buf: list[bytes] = []
    numbers: list[int] = []

    def run_batch() -> Iterator[Alert]:
        ok, bad = decode_sightings(buf, net.sites, lim, now)
        for i, err in bad:
            st.bad += 1
            if on_bad is not None:
                on_bad(numbers[i], err)
        before = wm.value()
        batch = [s for _, s in ok] if pseudonyms is None else \
            [pseudonyms.sighting(s) for _, s in ok]
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
