"""Internal partitioning must be Kafka's default partitioner, bit for bit: producers that key
sightings by subject key (as the contract asks) and the engine's envelopes must agree."""

from __future__ import annotations

from aiokafka.partitioner import murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.envelope import murmur2_fast, partition_for


@settings(max_examples=2000)
@given(st.binary(max_size=64))
def test_fast_murmur2_equals_kafkas(data: bytes) -> None:
    assert murmur2_fast(data) == murmur2(data)


def test_partition_for_a_known_key() -> None:
    key = "vehicle:蒙K3X521".encode()
    assert partition_for(key, 4) == (murmur2(key) & 0x7FFFFFFF) % 4
    assert {partition_for(f"vehicle:{i}".encode(), 4) for i in range(100)} == {0, 1, 2, 3}
