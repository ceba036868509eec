"""One memory budget for every RocksDB database the worker opens.

Faust opens a database per table and partition, each with a block cache and memtables of
its own, and RocksDB keeps the index and filter blocks of every table file outside any
cache. So a worker's memory grew with its partitions (3 state tables times their
partitions, each up to 16 MB of memtables and 16 MB of cache) and, past them, with the
state on disk (index and filter blocks of every file). Here all of them share one LRU
cache, which also holds the index and filter blocks and is charged for the memtables (a
write-buffer manager): RocksDB's memory is then one figure, `RINGS_ROCKSDB_MB`, whatever the
partitions and the state on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from rings.schedule import CACHE_LIMIT

from .config import env_int
from .errors import ConfigError

DEFAULT_MB = 192


@dataclass(frozen=True)
class RocksBudget:
    cache: Any                  # rocksdict.Cache, shared by every database
    write_buffers: Any          # rocksdict.WriteBufferManager, charged to that cache
    mb: int

    @staticmethod
    def from_env(env: dict[str, str] | None = None, share: int = 1) -> "RocksBudget | None":
        """From RINGS_ROCKSDB_MB (default 192), the worker's whole budget, of which this
        process gets one `share` (a worker with several stage processes: each its part,
        at least 16 MB); 0: no shared budget, each database with options of its own (per
        table and partition, as before the budget)."""
        mb = env_int("RINGS_ROCKSDB_MB", DEFAULT_MB, env, unit=" of MB")
        if mb == 0:
            return None
        if mb < 16:
            raise ConfigError(f"RINGS_ROCKSDB_MB must be 0 (no budget) or at least 16, not {mb}")
        mb = max(16, mb // max(1, share))
        cache = rocksdict.Cache(mb << 20)
        # Memtables may take up to half of the budget before RocksDB flushes the largest;
        # their memory is charged to the cache, so blocks are evicted to make room.
        wbm = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            (mb << 20) // 2, False, cache)
        return RocksBudget(cache, wbm, mb)


class BudgetedOptions(RocksDBOptions):
    """Faust's rocksdict options, with the shared cache and write-buffer budget."""

    budget: RocksBudget

    def as_options(self) -> Any:
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        if self.max_open_files is not None:
            opts.set_max_open_files(self.max_open_files)
        opts.set_write_buffer_size(self.write_buffer_size)
        opts.set_target_file_size_base(self.target_file_size_base)
        opts.set_max_write_buffer_number(self.max_write_buffer_number)
        opts.set_write_buffer_manager(self.budget.write_buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(self.budget.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        opts.set_block_based_table_factory(table)
        return opts


def use_budget(table: Any, budget: RocksBudget) -> None:
    """Make a Faust table (rocksdict driver) open its partitions' databases within `budget`.
    Called before the worker starts: databases open when partitions are assigned."""
    store = table.data
    old = store.rocksdb_options
    new = BudgetedOptions.__new__(BudgetedOptions)
    new.__dict__.update(old.__dict__)
    new.budget = budget
    store.rocksdb_options = new


def state_cache_from_env(env: dict[str, str] | None = None) -> int:
    """RINGS_STATE_CACHE: decoded entities each stage keeps per partition between envelopes."""
    return env_int("RINGS_STATE_CACHE", CACHE_LIMIT, env)
