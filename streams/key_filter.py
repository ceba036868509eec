"""A Bloom filter of the keys a partition's RocksDB may hold, kept in memory.

Most sightings are of a subject the stage has not seen (or no longer remembers), so most
state reads ask RocksDB for a key it does not have. RocksDB answers such a miss only after
looking in its memtables and in every level-0 file: profiled in the worker, those misses
were 7% of its time, 3 µs a sighting. The filter answers "certainly absent" from two bits.

The filter lives as long as the `PartitionKV` that owns it: it is built from the keys on
disk when the partition's stage first reads (after Faust's recovery, which writes to the
database before any envelope is handed over) and grows with every key written since.
Deleted keys keep their bits (a false "may hold" costs one RocksDB read, as before), and
the filter is rebuilt from the database, twice as large, once it holds more keys than its
size keeps the false-positive rate low for: a step per envelope while the full one still
serves (`PartitionKV.write_local`).
"""

from __future__ import annotations

from typing import Iterable

MIN_BITS_LOG2 = 20             # 128 KiB
BITS_PER_KEY = 16              # two bits set per key: about 1.4% false positives when full


class KeyFilter:
    __slots__ = ("bits", "mask", "count", "capacity")

    def __init__(self, keys: Iterable[bytes] = (), expected: int = 0) -> None:
        size_log2 = MIN_BITS_LOG2
        while (1 << size_log2) < expected * BITS_PER_KEY:
            size_log2 += 1
        self.bits = bytearray(1 << (size_log2 - 3))
        self.mask = (1 << size_log2) - 1
        self.capacity = (1 << size_log2) // BITS_PER_KEY
        self.count = 0
        self.add_all(keys)

    def may_hold(self, key: bytes) -> bool:
        # Two positions from the two halves of one 64-bit hash (Python's own: computed once
        # per bytes object, and seeded per process, which an in-memory filter can afford).
        h = hash(key)
        mask, bits = self.mask, self.bits
        i = h & mask
        if not bits[i >> 3] >> (i & 7) & 1:
            return False
        j = (h >> 32) & mask
        return bool(bits[j >> 3] >> (j & 7) & 1)

    def add_all(self, keys: Iterable[bytes]) -> None:
        """Note these keys. Counts those not seen before (as far as the filter can tell),
        which decides when it is full. One loop for all, not a call per key: it runs for
        every key written."""
        mask, bits = self.mask, self.bits
        new = 0
        for key in keys:
            h = hash(key)
            i = h & mask
            j = (h >> 32) & mask
            bi, bj = 1 << (i & 7), 1 << (j & 7)
            if bits[i >> 3] & bi and bits[j >> 3] & bj:
                continue
            bits[i >> 3] |= bi
            bits[j >> 3] |= bj
            new += 1
        self.count += new

    @property
    def full(self) -> bool:
        return self.count > self.capacity
