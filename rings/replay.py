"""The offline driver: sightings from a file through the same core as the worker.

Event time only: the watermark is the newest event time read so far minus the allowed
lateness, taken before each batch, exactly as the worker's ingest stamps it on envelopes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable, Iterator

from .decode import Limits, decode_sightings
from .engine import NO_TIME, Engine
from .errors import InvalidRecord
from .models import Alert
from .net import Net
from .ruleset import RuleSet
from .state import MemoryKV
from .watchlist import WatchlistView

BadLine = Callable[[int, InvalidRecord], None]


@dataclass(slots=True)
class ReplayStats:
    lines: int = 0
    bad: int = 0


def replay_lines(lines: Iterable[bytes], net: Net, rules: RuleSet, watchlist: WatchlistView,
                 *, on_bad: BadLine | None = None, batch_size: int = 1000,
                 limits: Limits = Limits(), stats: ReplayStats | None = None,
                 engine: Engine | None = None) -> Iterator[Alert]:
    """Yield alerts for JSON lines (bytes, one sighting each; blank lines are skipped)."""
    eng = engine or Engine(net, rules, watchlist, MemoryKV())
    st = stats or ReplayStats()
    max_ts = NO_TIME
    buf: list[bytes] = []
    numbers: list[int] = []

    def flush() -> Iterator[Alert]:
        nonlocal max_ts
        ok, bad = decode_sightings(buf, net.sites, limits)
        for i, err in bad:
            st.bad += 1
            if on_bad is not None:
                on_bad(numbers[i], err)
        before = max_ts - rules.lateness_ms if max_ts != NO_TIME else None
        batch = [s for _, s in ok]
        for s in batch:
            if s.ts > max_ts:
                max_ts = s.ts
        after = max_ts - rules.lateness_ms if max_ts != NO_TIME else None
        yield from eng.process(batch, before, after)
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
            yield from flush()
    if buf:
        yield from flush()


def replay_file(f: BinaryIO, *args: object, **kw: object) -> Iterator[Alert]:
    return replay_lines(iter(f), *args, **kw)  # type: ignore[arg-type]
