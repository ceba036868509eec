"""The worker's memory settings: one RocksDB budget, a bounded cache of decoded state."""

from __future__ import annotations

import pytest

from rings.schedule import CACHE_LIMIT
from streams.errors import ConfigError
from streams.rocks import DEFAULT_MB, RocksBudget, state_cache_from_env


def test_rocksdb_budget_defaults_and_splits_between_cache_and_memtables() -> None:
    b = RocksBudget.from_env({})
    assert b is not None and b.mb == DEFAULT_MB
    # Memtables may use up to half the budget, charged to the one cache.
    assert b.write_buffers.get_buffer_size() == (DEFAULT_MB << 20) // 2
    assert b.write_buffers.enabled()
    assert RocksBudget.from_env({"RINGS_ROCKSDB_MB": "64"}).mb == 64


def test_rocksdb_budget_zero_turns_it_off() -> None:
    assert RocksBudget.from_env({"RINGS_ROCKSDB_MB": "0"}) is None


@pytest.mark.parametrize("raw", ["lots", "1.5", "8", "-1"])
def test_rocksdb_budget_refuses_bad_values(raw: str) -> None:
    with pytest.raises(ConfigError, match="RINGS_ROCKSDB_MB"):
        RocksBudget.from_env({"RINGS_ROCKSDB_MB": raw})


def test_state_cache_setting() -> None:
    assert state_cache_from_env({}) == CACHE_LIMIT
    assert state_cache_from_env({"RINGS_STATE_CACHE": "10000"}) == 10_000
    for raw in ("many", "-5"):
        with pytest.raises(ConfigError, match="RINGS_STATE_CACHE"):
            state_cache_from_env({"RINGS_STATE_CACHE": raw})


def test_rocksdb_budget_is_shared_out_among_stage_processes() -> None:
    b = RocksBudget.from_env({"RINGS_ROCKSDB_MB": "192"}, share=2)
    assert b is not None and b.mb == 96
    assert b.write_buffers.get_buffer_size() == (96 << 20) // 2
    # Never below RocksDB's useful minimum, however many processes.
    assert RocksBudget.from_env({"RINGS_ROCKSDB_MB": "32"}, share=4).mb == 16
