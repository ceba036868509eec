"""Watermarks: how far event time has certainly advanced.

A source with several partitions is read unevenly: one partition may be minutes ahead of
another that is still catching up. Taking the newest time seen overall would make the
lagging partition's sightings look late. So the watermark is the lowest of the partitions'
newest times, minus the allowed lateness. A partition that is read to its end and has
delivered nothing for `idle_s` seconds of wall-clock time is idle and no longer holds the
others back (a quiet road must not stop the clock); it holds them again as soon as it
delivers. A partition with unread data is never idle, however long it waits its turn.

Wall-clock time is passed in by the driver, so this stays deterministic and testable.
Replay has one source partition that is never idle: its watermark is the newest event time
read so far, minus the lateness.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import orjson

from .schedule import NO_TIME

if TYPE_CHECKING:
    from .state import KV


class Watermark:
    def __init__(self, lateness_ms: int, idle_s: float = 5.0) -> None:
        self.lateness_ms = lateness_ms
        self.idle_s = idle_s
        self.max_by_partition: dict[int, int] = {}
        self.seen_at: dict[int, float] = {}    # wall-clock time of the last delivery
        self._value = NO_TIME

    def assign(self, partitions: Iterable[int], now: float) -> None:
        """Partitions this reader now owns; a new one holds the clock until it delivers or
        goes idle. Partitions no longer owned are forgotten."""
        owned = set(partitions)
        for p in list(self.seen_at):
            if p not in owned:
                self.seen_at.pop(p)
                self.max_by_partition.pop(p, None)
        for p in owned:
            self.seen_at.setdefault(p, now)

    def observe(self, partition: int, ts: int, now: float = 0.0) -> None:
        self.seen_at[partition] = now
        if ts > self.max_by_partition.get(partition, NO_TIME):
            self.max_by_partition[partition] = ts

    def value(self, now: float = 0.0, caught_up: Iterable[int] = ()) -> int:
        """The watermark now, given the partitions read to their end; never decreases."""
        done = set(caught_up)
        active = [p for p, t in self.seen_at.items()
                  if p not in done or now - t < self.idle_s]
        if active:
            if any(p not in self.max_by_partition for p in active):
                return self._value      # an active partition we know nothing of yet
            bound = min(self.max_by_partition[p] for p in active)
        elif self.max_by_partition:
            bound = max(self.max_by_partition.values())
        else:
            return self._value
        wm = bound - self.lateness_ms
        if wm > self._value:
            self._value = wm
        return self._value

    def claims(self, now: float = 0.0, caught_up: Iterable[int] = ()) -> dict[int, int]:
        """What this reader may tell the stages of each partition it owns: how far event time
        has certainly come *in that partition*. The stages take the lowest over all
        partitions, so per partition is enough, and it is what stays true when partitions
        move between readers: a partition just taken over from a reader that died holds a
        backlog older than anything this reader has seen, and claiming this reader's own
        watermark for it made that backlog late (found by killing one of two workers).

        A partition read so far claims its newest time minus the lateness; one nothing has
        been read from yet claims nothing (the stages keep what its last owner claimed); an
        idle one (read to its end, silent for `idle_s`) claims the watermark of the others,
        so a quiet road does not hold the clock."""
        done = set(caught_up)
        value = self.value(now, done)
        out: dict[int, int] = {}
        for p, t in self.seen_at.items():
            idle = p in done and now - t >= self.idle_s
            mine = self.max_by_partition.get(p)
            if idle:
                out[p] = value if mine is None else max(value, mine - self.lateness_ms)
            elif mine is not None:
                out[p] = mine - self.lateness_ms
        return {p: v for p, v in out.items() if v != NO_TIME}


class SourceClock:
    """The watermark of a stage fed by several upstream partitions.

    Each envelope says, for the upstream partitions its sender owns, how far event time has
    certainly come there. The stage's watermark is the lowest of them, once every upstream
    partition has reported: so a worker that lags behind its peers holds the others back
    instead of seeing its sightings arrive late. Reports survive restarts in the store.
    """

    def __init__(self, store: "KV", key: str, sources: int) -> None:
        self.store = store
        self.key = key
        self.sources = sources
        raw = store.get(key)
        self.reports: dict[int, int] = {int(k): v for k, v in orjson.loads(raw).items()} \
            if raw is not None else {}

    def update(self, reports: dict[int, int]) -> int | None:
        changed = False
        for src, wm in reports.items():
            if wm > self.reports.get(src, NO_TIME):
                self.reports[src] = wm
                changed = True
        if changed:
            self.store.put(self.key, self.encoded())
        return self.value()

    def encoded(self) -> bytes:
        """The reports as the store keeps them."""
        return orjson.dumps({str(k): v for k, v in self.reports.items()})

    def value(self) -> int | None:
        if len(self.reports) < self.sources:
            return None
        return min(self.reports.values())
