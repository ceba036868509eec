"""The worker's reads of its RocksDB stores: stage state (PartitionKV) and the watchlist's
global table (WatchReader), on real rocksdict databases."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import rocksdict

from streams.changelog import (FLUSH_MS, MAX_DEFERRED_RECORDS, ChangelogWriter, PartitionKV,
                               flush_ms_from_env)
from streams.config import KafkaSettings
from streams.errors import ConfigError
from streams.watch_reader import WatchReader


class Stores:
    """What the readers use of a Faust table: its per-partition databases (`data._dbs`),
    opened on demand as Faust's rocksdict store does."""

    def __init__(self, tmp_path: Any, partitions: int = 0) -> None:
        self.tmp_path = tmp_path
        self._dbs: dict[int, rocksdict.Rdict] = {}
        for p in range(partitions):
            self._db_for_partition(p)

    def _db_for_partition(self, p: int) -> rocksdict.Rdict:
        if p not in self._dbs:
            self._dbs[p] = rocksdict.Rdict(str(self.tmp_path / f"p{p}"),
                                           rocksdict.Options(raw_mode=True))
        return self._dbs[p]


class Table:
    def __init__(self, data: Stores) -> None:
        self.data = data
        self.name = "subject-state"
        self.asked: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:      # the table's own (slow) path
        self.asked.append(key)
        return None


@pytest.fixture
def stores(tmp_path: Any) -> Any:
    s = Stores(tmp_path, 4)
    yield s
    for db in s._dbs.values():
        db.close()


def test_partition_kv_reads_its_pending_writes_before_the_database(stores: Stores) -> None:
    db = stores._dbs[1]
    db[b"s:v:A"] = b"old"                       # on disk before the stage reads (recovery)
    db[b"s:v:B"] = b"kept"
    kv = PartitionKV(Table(stores), 1)
    assert kv.get("s:v:A") == b"old"
    kv.put("s:v:A", b"new")
    kv.delete("s:v:B")
    assert kv.get("s:v:A") == b"new"
    assert kv.get("s:v:B") is None              # deleted here, though RocksDB has it
    assert kv.get("s:v:C") is None
    # Bookkeeping keys are per partition: the same name in two partitions' databases.
    kv.put("~off", b"7")
    assert kv.get("~off") == b"7"
    kv.put("s:v:D", b"after")
    # For the changelog: the entities, then the bookkeeping, whatever the order written.
    records = kv.take_writes()
    assert list(records.items()) == [
        (b"s:v:A", b"new"), (b"s:v:B", None), (b"s:v:D", b"after"), (b"~1~off", b"7")]
    kv.store(records)                           # (the changelog has it)
    assert db[b"~1~off"] == b"7"
    assert db[b"s:v:A"] == b"new" and db.get(b"s:v:B") is None
    assert not kv.has_writes() and kv.get("~off") == b"7" and kv.get("s:v:D") == b"after"


def test_partition_kv_filter_never_hides_a_written_key(stores: Stores) -> None:
    """Reads of absent keys skip RocksDB (the key filter); no key written, before the
    PartitionKV was made or through it, may read as absent, also after the filter has
    outgrown its first size and was rebuilt from the database."""
    db = stores._dbs[0]
    before = [f"s:vehicle:OLD{i}".encode() for i in range(5_000)]
    for k in before:
        db[k] = b"restored"
    kv = PartitionKV(Table(stores), 0)
    first = kv.filter
    # More keys than its first size holds, 10,000 a write: the larger filter is built from
    # the database a step per write, while the full one serves.
    n, chunks = 0, 0
    while kv.filter is first:
        chunks += 1
        assert chunks <= 30, "the filter was never replaced"
        for i in range(n, n + 10_000):
            kv.put(f"s:vehicle:NEW{i}", b"v%d" % i)
        kv.store(kv.take_writes())
        n += 10_000
        assert all(kv.get(k.decode()) == b"restored" for k in before)
        assert all(kv.get(f"s:vehicle:NEW{i}") == b"v%d" % i for i in range(n))
    assert n > first.capacity and kv.filter.capacity >= first.capacity
    assert all(kv.get(f"s:vehicle:NEW{i}") == b"v%d" % i for i in range(n))
    absent = [f"s:vehicle:NONE{i}" for i in range(20_000)]
    passed = sum(kv.filter.may_hold(k.encode()) for k in absent)
    assert passed < len(absent) * 0.05          # most absent keys never reach RocksDB
    assert all(kv.get(k) is None for k in absent)
    # A deleted key keeps its bits (a read of it goes to RocksDB, which has it no more).
    kv.delete("s:vehicle:NEW1")
    kv.store(kv.take_writes())
    assert kv.get("s:vehicle:NEW1") is None


def test_watch_reader_answers_listed_and_unlisted(stores: Stores) -> None:
    stores._dbs[2][b"vehicle:AB123"] = b"entry-ab"
    reader = WatchReader(Table(stores))
    assert reader("vehicle:AB123") == b"entry-ab"
    assert reader("vehicle:ZZ999") is None
    assert reader.filtered and len(reader) == 1


def test_watch_reader_sees_entries_written_after_it_was_built(stores: Stores) -> None:
    reader = WatchReader(Table(stores))
    assert reader("vehicle:NEW1") is None       # builds the set: nothing listed
    stores._dbs[0][b"vehicle:NEW1"] = b"entry-new"
    reader.changed(b"vehicle:NEW1")              # as the table's changelog tells it
    assert reader("vehicle:NEW1") == b"entry-new"
    # A removal leaves the key in the set: a lookup that finds nothing, never a miss.
    del stores._dbs[0][b"vehicle:NEW1"]
    reader.changed(b"vehicle:NEW1")
    assert reader("vehicle:NEW1") is None


def test_watch_reader_rebuilds_after_a_rebalance_and_when_stores_open(tmp_path: Any) -> None:
    stores = Stores(tmp_path, 1)
    try:
        reader = WatchReader(Table(stores))
        assert reader("person:P1") is None
        stores._dbs[0][b"person:P1"] = b"entry-p1"   # restored without passing `changed`
        reader.forget()                              # the worker rebalanced
        assert reader("person:P1") == b"entry-p1"
        stores._db_for_partition(1)[b"person:P2"] = b"entry-p2"   # a partition opened
        assert reader("person:P2") == b"entry-p2"
    finally:
        for db in stores._dbs.values():
            db.close()


def test_watch_reader_keeps_no_set_for_a_huge_watchlist(stores: Stores) -> None:
    for i in range(5):
        stores._dbs[i % 4][f"vehicle:X{i}".encode()] = f"entry-{i}".encode()
    reader = WatchReader(Table(stores), max_keys=3)
    assert reader("vehicle:X4") == b"entry-4"    # read from RocksDB, every time
    assert not reader.filtered and len(reader) == 0
    assert reader("vehicle:NOPE") is None
    small = WatchReader(Table(stores), max_keys=10)
    assert small("vehicle:X0") == b"entry-0" and small.filtered
    for i in range(10):                           # the changelog grows it past the limit
        small.changed(f"vehicle:Y{i}".encode())
    assert not small.filtered
    assert small("vehicle:X3") == b"entry-3"


def test_watch_reader_without_stores_asks_the_table(tmp_path: Any) -> None:
    table = Table(Stores(tmp_path, 0))
    assert WatchReader(table)("vehicle:Q") is None
    assert table.asked == [b"vehicle:Q"]


@pytest.mark.parametrize("seed", [1, 2])
def test_partition_kv_reads_back_what_was_written_across_filter_rebuilds(
        stores: Stores, seed: int) -> None:
    """Random writes and deletes, envelope after envelope, through several key-filter
    rebuilds (each built a step per write while the old one serves): every key reads back
    its last value or nothing, as a dict of the same writes says."""
    import random
    rnd = random.Random(seed)
    kv = PartitionKV(Table(stores), 3)
    model: dict[str, bytes] = {}
    last, rebuilt = kv.filter, 0
    for _ in range(120):
        for _ in range(rnd.randint(100, 5_000)):
            k = f"s:vehicle:{rnd.randint(0, 150_000)}"
            if rnd.random() < 0.2:
                kv.delete(k)
                model.pop(k, None)
            else:
                model[k] = v = b"%f" % rnd.random()
                kv.put(k, v)
        kv.store(kv.take_writes())
        rebuilt += kv.filter is not last
        last = kv.filter
        for k in rnd.sample(sorted(model), min(1_000, len(model))):
            assert kv.get(k) == model[k]
    assert rebuilt >= 1
    assert all(kv.get(f"s:vehicle:{i}") == model.get(f"s:vehicle:{i}")
               for i in range(0, 150_001, 7))


def test_partition_kv_stores_a_flush_only_once_its_changelog_has_it(stores: Stores) -> None:
    """RocksDB is a prefix of the changelog: a flush sent and not yet delivered is read from
    memory, never from (or in) the database, whatever the flushes after it change."""
    db = stores._dbs[2]
    db[b"s:v:gone"] = b"restored"
    kv = PartitionKV(Table(stores), 2)
    kv.put("s:v:A", b"A1")
    kv.delete("s:v:gone")
    kv.put("~off", b"1")
    first = kv.take_writes()
    kv.put("s:v:A", b"A2")
    kv.put("s:v:B", b"B2")
    kv.put("~off", b"2")
    second = kv.take_writes()
    assert db.get(b"s:v:A") is None and db[b"s:v:gone"] == b"restored"
    assert db.get(b"~2~off") is None
    assert (kv.get("s:v:A"), kv.get("s:v:B"), kv.get("s:v:gone"), kv.get("~off")) == \
        (b"A2", b"B2", None, b"2")
    kv.store(first)                             # delivered: the first flush, alone
    assert (db[b"s:v:A"], db.get(b"s:v:B"), db.get(b"s:v:gone"), db[b"~2~off"]) == \
        (b"A1", None, None, b"1")
    assert (kv.get("s:v:A"), kv.get("s:v:B"), kv.get("~off")) == (b"A2", b"B2", b"2")
    kv.store(second)
    assert (db[b"s:v:A"], db[b"s:v:B"], db[b"~2~off"]) == (b"A2", b"B2", b"2")
    assert kv.unstored == {}
    kv.put("s:v:C", b"C3")
    kv.store(kv.take_writes(), write=False)     # delivered after the store was let go
    assert db.get(b"s:v:C") is None and kv.unstored == {}


@pytest.mark.parametrize("seed", [3, 4])
def test_partition_kv_database_is_always_a_prefix_of_its_flushes(stores: Stores,
                                                                 seed: int) -> None:
    """Random flushes delivered with a random lag (several in flight, as pipelined sends
    are): the stage reads every key's last value, and the database holds exactly the
    state after the last flush delivered, never a key of a later one."""
    import random
    from collections import deque
    rnd = random.Random(seed)
    kv = PartitionKV(Table(stores), 1)
    model: dict[bytes, bytes] = {}
    inflight: deque[tuple[dict[bytes, bytes | None], dict[bytes, bytes]]] = deque()
    for _ in range(300):
        for _ in range(rnd.randint(1, 60)):
            k = f"s:vehicle:{rnd.randint(0, 400)}"
            if rnd.random() < 0.25:
                kv.delete(k)
                model.pop(k.encode(), None)
            else:
                model[k.encode()] = v = b"%f" % rnd.random()
                kv.put(k, v)
        inflight.append((kv.take_writes(), dict(model)))
        while inflight and (len(inflight) > 8 or rnd.random() < 0.4):
            records, state = inflight.popleft()
            kv.store(records)
            assert dict(stores._dbs[1].items()) == state
        assert all(kv.get(f"s:vehicle:{i}") == model.get(f"s:vehicle:{i}".encode())
                   for i in range(401))


class Writes(ChangelogWriter):
    """The stages' changelog writer, with what a flush would send kept here instead of going
    to Kafka (the flush itself runs on the real broker in the integration tests)."""

    def __init__(self, flush_ms: int) -> None:
        super().__init__(KafkaSettings(), flush_ms)
        self.now = 0.0
        self.clock = lambda: self.now
        self.flushed: list[dict[bytes, bytes | None]] = []

    async def flush(self, kv: PartitionKV) -> None:
        self._waiting.pop(id(kv), None)
        self.flushed.append(records := kv.take_writes())
        kv.store(records)


def envelope(kv: PartitionKV, off: int, *keys: str) -> None:
    """What a stage writes for one envelope: its entities, then the envelope's offset."""
    for k in keys:
        kv.put(k, f"{k}@{off}".encode())
    kv.put("~off", str(off).encode())


def test_stage_state_waits_and_is_written_once_per_key(stores: Stores) -> None:
    w, kv = Writes(250), PartitionKV(Table(stores), 0)
    for off, t in enumerate((0.0, 0.1, 0.2)):
        w.now = t
        envelope(kv, off, "s:a", f"s:n{off}")       # "s:a" changed by every envelope
        asyncio.run(w.commit(kv))
    assert w.flushed == [] and w.waiting() == [kv]
    assert w.waiting(older_s=0.25) == []
    assert stores._dbs[0].get(b"s:a") is None       # nothing written yet...
    assert kv.get("s:a") == b"s:a@2"                # ...but the stage reads its own writes
    w.now = 0.25                                     # the oldest envelope waited long enough
    envelope(kv, 3, "s:a")
    asyncio.run(w.commit(kv))
    assert w.flushed == [{b"s:a": b"s:a@3", b"s:n0": b"s:n0@0", b"s:n1": b"s:n1@1",
                          b"s:n2": b"s:n2@2", b"~0~off": b"3"}]
    assert stores._dbs[0][b"s:a"] == b"s:a@3" and stores._dbs[0][b"~0~off"] == b"3"
    assert w.waiting() == [] and not kv.has_writes()
    # The next envelope starts a new wait.
    w.now = 0.4
    envelope(kv, 4, "s:b")
    asyncio.run(w.commit(kv))
    assert len(w.flushed) == 1 and w.waiting(older_s=0.25) == []
    w.now = 0.65
    assert w.waiting(older_s=0.25) == [kv] and w.waiting(table="other") == []


def test_stage_state_is_written_at_once_when_many_records_wait(stores: Stores) -> None:
    w, kv = Writes(10_000), PartitionKV(Table(stores), 1)
    envelope(kv, 0, *(f"s:{i}" for i in range(MAX_DEFERRED_RECORDS - 2)))
    asyncio.run(w.commit(kv))
    assert w.flushed == []                           # one record short
    envelope(kv, 1, "s:last")
    asyncio.run(w.commit(kv))
    assert len(w.flushed) == 1 and len(w.flushed[0]) == MAX_DEFERRED_RECORDS


def test_stage_state_without_waiting_is_written_every_envelope(stores: Stores) -> None:
    w, kv = Writes(0), PartitionKV(Table(stores), 2)
    for off in range(3):
        envelope(kv, off, "s:a")
        asyncio.run(w.commit(kv))
    assert [f[b"~2~off"] for f in w.flushed] == [b"0", b"1", b"2"]


class Undelivered(ChangelogWriter):
    """The real flush and delivery bookkeeping; each record batch "sent" is a future this
    test completes, as the broker's acknowledgement would."""

    def __init__(self) -> None:
        super().__init__(KafkaSettings(), 0)
        self.sends: list[asyncio.Future[Any]] = []
        self.producer = object()            # (never used: _send is the test's)

    async def _send(self, kv: PartitionKV, records: dict[bytes, bytes | None]
                    ) -> list[tuple[Any, int]]:
        self.sends.append(fut := asyncio.get_running_loop().create_future())
        return [(fut, len(records))]


class Delivered:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def test_a_flush_reaches_rocksdb_only_once_its_changelog_has_it(stores: Stores) -> None:
    """A worker killed with flushes in flight leaves a store the changelog agrees with, and
    a persisted offset no further than the store (both read by recovery on its own disk)."""
    persisted: list[tuple[Any, int]] = []
    stores.set_persisted_offset = lambda tp, off: persisted.append((tp.partition, off))
    table = Table(stores)
    table.changelog_topic = type("Topic", (), {"get_topic_name": lambda self: "cl"})()
    db = stores._dbs[3]

    async def run() -> None:
        w, kv = Undelivered(), PartitionKV(table, 3)
        envelope(kv, 0, "s:a")
        await w.flush(kv)
        envelope(kv, 1, "s:a", "s:b")
        await w.flush(kv)
        assert db.get(b"s:a") is None and db.get(b"~3~off") is None and persisted == []
        assert kv.get("s:a") == b"s:a@1" and kv.get("~off") == b"1"
        w.sends[1].set_result(Delivered(11))    # the second acknowledged first: waits
        envelope(kv, 2, "s:c")
        await w.flush(kv)
        assert db.get(b"s:a") is None and persisted == []
        w.sends[0].set_result(Delivered(9))
        await w.flush(kv)                       # (nothing new: settles the delivered)
        assert (db[b"s:a"], db[b"s:b"], db[b"~3~off"], db.get(b"s:c")) == \
            (b"s:a@1", b"s:b@1", b"1", None)
        assert persisted == [(3, 10), (3, 13)]    # (the last record of each)
        assert kv.get("s:c") == b"s:c@2" and kv.get("~off") == b"2"
        w.sends[2].set_result(Delivered(13))
        await w.drain_all()
        assert (db[b"s:c"], db[b"~3~off"]) == (b"s:c@2", b"2") and kv.unstored == {}

    asyncio.run(run())


def test_state_flush_setting() -> None:
    assert flush_ms_from_env({}) == FLUSH_MS
    assert flush_ms_from_env({"RINGS_STATE_FLUSH_MS": "0"}) == 0
    for bad in ("-1", "soon", "20000"):
        with pytest.raises(ConfigError, match="RINGS_STATE_FLUSH_MS"):
            flush_ms_from_env({"RINGS_STATE_FLUSH_MS": bad})
