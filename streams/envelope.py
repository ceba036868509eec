"""Batch envelopes on internal topics: one Kafka message carries many records.

Faust pays its cost per message (queue hand-offs, event objects, acks), so each stage packs
what it sends to one partition in one tick into one envelope. Every envelope also carries
the sender's watermark for each upstream partition it owns (`src`); an envelope with no
rows is a tick that only moves event time forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

VERSION = 2


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner for keyed records, so a producer that keys sightings by
    subject key (as the contract asks) puts them where the engine would."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(slots=True)
class Envelope:
    src: dict[int, int]                  # upstream partition -> watermark after these rows
    rows: list[Any] = field(default_factory=list)
    kts: list[int] = field(default_factory=list)   # Kafka timestamps of the rows' sources

    def encode(self) -> bytes:
        return orjson.dumps({"v": VERSION, "src": {str(k): v for k, v in self.src.items()},
                             "rows": self.rows, "kts": self.kts})

    @staticmethod
    def decode(raw: bytes) -> "Envelope":
        d = orjson.loads(raw)
        if d.get("v") != VERSION:
            raise ValueError(f"unsupported envelope version {d.get('v')!r}")
        return Envelope({int(k): v for k, v in d["src"].items()}, d["rows"], d.get("kts") or [])
