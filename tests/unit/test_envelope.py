"""Internal envelopes: partitioning must be Kafka's default partitioner, bit for bit (producers
that key sightings by subject key, as the contract asks, and the engine's envelopes must
agree), and a worker reads the envelopes of the version before its own."""

from __future__ import annotations

import orjson
import pytest
from aiokafka.partitioner import murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from rings.convoy import vehicle_pass
from rings.models import Sighting, Subject
from streams.envelope import Envelope, murmur2_fast, partition_for


@settings(max_examples=2000)
@given(st.binary(max_size=64))
def test_fast_murmur2_equals_kafkas(data: bytes) -> None:
    assert murmur2_fast(data) == murmur2(data)


def test_partition_for_a_known_key() -> None:
    key = "vehicle:蒙K3X521".encode()
    assert partition_for(key, 4) == (murmur2(key) & 0x7FFFFFFF) % 4
    assert {partition_for(f"vehicle:{i}".encode(), 4) for i in range(100)} == {0, 1, 2, 3}


def test_site_rows_read_alike_from_both_envelope_versions() -> None:
    """A worker upgraded over a site topic that still holds version-2 envelopes (whole
    sightings, persons among them) must hand the site stage the same vehicle passes the new
    ingest sends."""
    car = Sighting("s1", 1_700_000_000_000, 60, "CP01", "in", Subject("vehicle", "蒙K3X521"),
                   (Subject("person", "p1"),))
    walker = Sighting("s2", 1_700_000_000_500, 60, "CP01", None, Subject("person", "p2"))
    old = orjson.loads(Envelope({0: 5}, [car.to_row(), walker.to_row()], [1, 2]).encode())
    old["v"] = 2
    v2 = Envelope.decode(orjson.dumps(old))
    v3 = Envelope.decode(Envelope({0: 5}, [vehicle_pass(car)], [1]).encode())
    assert (v2.version, v3.version) == (2, 3)
    assert v2.vehicle_passes() == v3.vehicle_passes() == [
        [1_700_000_000_000, "s1", "CP01", "vehicle:蒙K3X521", 60]]


def test_an_unknown_envelope_version_is_refused() -> None:
    raw = orjson.loads(Envelope({0: 5}, []).encode())
    raw["v"] = 4
    with pytest.raises(ValueError, match="unsupported envelope version 4"):
        Envelope.decode(orjson.dumps(raw))
