"""Batch envelopes on internal topics: one Kafka message carries many sightings.

Faust pays its cost per message (queue hand-offs, event objects, acks), so the ingest packs
the sightings bound for one partition in one tick into one envelope, with the watermark
before and after them. An envelope with no rows is a tick: it moves event time forward on a
partition that received nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from aiokafka.partitioner import murmur2

from rings.models import Sighting

VERSION = 1


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for keyed records, so a producer that keys sightings by
    subject key (as the contract asks) puts them where the engine would."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(slots=True)
class Envelope:
    wm_before: int
    wm_after: int
    rows: list[list]
    kts: list[int]          # Kafka timestamp of each row's source record, for latency

    def encode(self) -> bytes:
        return orjson.dumps({"v": VERSION, "wm": self.wm_before, "wm2": self.wm_after,
                             "rows": self.rows, "kts": self.kts})

    @staticmethod
    def decode(raw: bytes) -> "Envelope":
        d = orjson.loads(raw)
        if d.get("v") != VERSION:
            raise ValueError(f"unsupported envelope version {d.get('v')!r}")
        return Envelope(d["wm"], d["wm2"], d["rows"], d.get("kts") or [])

    def sightings(self) -> list[Sighting]:
        return [Sighting.from_row(r) for r in self.rows]
