"""Watermarks: how far event time has certainly advanced.

A source with several partitions is read unevenly: one partition may be minutes ahead of
another that is still catching up. Taking the newest time seen overall would make the
lagging partition's sightings look late. So the watermark is the newest time seen, held
back by every partition that still has unread data, minus the allowed lateness. A partition
that is fully read cannot hold it back (it has nothing older to deliver, except late data).
"""

from __future__ import annotations

from typing import Iterable

from .engine import NO_TIME


class Watermark:
    def __init__(self, lateness_ms: int) -> None:
        self.lateness_ms = lateness_ms
        self.max_by_partition: dict[int, int] = {}
        self.max_ts = NO_TIME
        self._value = NO_TIME

    def observe(self, partition: int, ts: int) -> None:
        if ts > self.max_by_partition.get(partition, NO_TIME):
            self.max_by_partition[partition] = ts
            if ts > self.max_ts:
                self.max_ts = ts

    def value(self, lagging: Iterable[int] = ()) -> int:
        """The watermark given the partitions that still have unread data; never decreases."""
        if self.max_ts == NO_TIME:
            return self._value
        bound = self.max_ts
        for p in lagging:
            m = self.max_by_partition.get(p)
            if m is None:
                return self._value      # a lagging partition we know nothing of yet
            if m < bound:
                bound = m
        wm = bound - self.lateness_ms
        if wm > self._value:
            self._value = wm
        return self._value

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions moved to another worker no longer hold this one back."""
        for p in partitions:
            self.max_by_partition.pop(p, None)
