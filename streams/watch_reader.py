"""The stages' reads of the watchlist's global table: most answer "not listed" in memory.

Nearly every subject a stage meets is not on the watchlist. Asking the table's RocksDB
costs a call into each of its partitions' databases (4 by default): about 3 µs a new
subject, 6% of the worker's time on the benchmark's traffic. So the reader keeps the set of
keys the table holds, a few dozen bytes per listed subject (the watchlist is small next to
the traffic), and asks RocksDB only about those.

The set may hold more than the table, never less: it is rebuilt from the databases when
the table's partitions are opened or the worker rebalances, and every key the table's
changelog writes afterwards is added (a removed key stays until the next rebuild, and is
then only a lookup that finds nothing). Above `MAX_KEYS` listed subjects it is not kept,
and every read goes to RocksDB.
"""

from __future__ import annotations

from typing import Any

MAX_KEYS = 1_000_000


class WatchReader:
    def __init__(self, table: Any, max_keys: int = MAX_KEYS) -> None:
        self.table = table
        self.max_keys = max_keys
        self._keys: set[bytes] | None = None       # None: not kept (too many keys)
        self._built_over = -1                      # databases it was built over (-1: to build)

    @property
    def filtered(self) -> bool:
        """Whether the set of keys is kept (not past `max_keys`)."""
        return self._keys is not None

    def forget(self) -> None:
        """Build the set again at the next read (a rebalance may have reopened stores)."""
        self._keys, self._built_over = None, -1

    def changed(self, key: bytes) -> None:
        """The table's changelog wrote `key` (a new entry, a change or a removal)."""
        if self._keys is not None:
            self._keys.add(key)
            if len(self._keys) > self.max_keys:
                self._keys = None

    def __len__(self) -> int:
        return len(self._keys) if self._keys is not None else 0

    def _build(self, dbs: dict[int, Any]) -> None:
        self._built_over = len(dbs)
        keys: set[bytes] = set()
        for db in list(dbs.values()):
            for k in db.keys():
                keys.add(k)
                if len(keys) > self.max_keys:
                    self._keys = None
                    return
        self._keys = keys

    def __call__(self, key: str) -> bytes | None:
        """The raw entry listed under `key`, or None."""
        k = key.encode()
        dbs = self.table.data._dbs
        if not dbs:
            return self.table.get(k)
        if len(dbs) != self._built_over:
            self._build(dbs)
        keys = self._keys
        if keys is not None and k not in keys:
            return None
        for db in dbs.values():
            if db.key_may_exist(k):
                v = db.get(k)
                if v is not None:
                    return v
        return None
