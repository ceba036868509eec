"""Stage state on a Faust table's RocksDB, with its changelog written in batches.

A Faust table sends one changelog message per key write, each through Faust's producer
buffer, a future, a callback and a persisted-offset update: measured, two thirds of the
worker's time went there, and its commits stalled for seconds flushing the buffer. The
stages already coalesce their writes to one per entity per envelope; here those writes go
straight to the partition's RocksDB, and at the end of the envelope to the table's own
changelog partition as record batches (aiokafka `send_batch`: a few microseconds a record).

The changelog is the same compacted topic Faust reads on recovery, with the same raw keys
and values, so restoring a partition (a restart on an empty disk, a rebalance) is Faust's
own recovery, unchanged. The persisted offset is advanced after each delivered batch, as
Faust would.

RocksDB gets a flush only once the broker has it (until then the stage reads it from
memory, `PartitionKV.unstored`): the store is always a prefix of its changelog, so a
worker restarted on its own disk, whose recovery applies the changelog from the persisted
offset on, ends with exactly the changelog's state, as one restarted on an empty disk does.
Written at once, before delivery, a store could hold flushes the changelog never got (sends
are pipelined); recovery then laid older records over some of their keys and not others, a
state that never existed (the likely cause of 93 alerts replay does not raise, after a
SIGKILL on the same disk, once in CI).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from itertools import islice
from typing import Any, Iterator

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from faust.types import TP
from mode import Service
from rocksdict import WriteBatch

from .config import KafkaSettings, env_int
from .key_filter import KeyFilter

log = logging.getLogger("rings.worker")
MAX_INFLIGHT = 8
REBUILD_STEP = 20_000        # keys read back per write while a key filter is rebuilt
# The largest flush sent as one record batch, and so the changelog topics' max.message.bytes
# (set when `rings worker` creates them). A record batch is appended to the log whole or not
# at all, so a flush within it is atomic: a worker killed while sending cannot leave a
# partition's changelog with part of an envelope's state. With several batches per flush it
# could (an entity written, its index entry not), and a restarted stage skipped the sighting
# as a duplicate and never judged it.
MAX_FLUSH_BYTES = 32 * 1024 * 1024
_ABSENT = object()
# How long a stage partition's state may wait in memory after an envelope before it is
# written (RocksDB and changelog), and how many records it may gather meanwhile (see
# ChangelogWriter.commit). Not more records: the worker's memory grows with the size of a
# flush, not only with what waits (measured over the bench's 200,000 sightings, waiting up
# to 1 s: peak 1,474 MB with flushes of up to 20,000 records, 992 MB with 4,000, 950 MB
# with a flush per envelope; what waited and was in flight, 35 MB at most).
FLUSH_MS = 250
MAX_DEFERRED_RECORDS = 4_000


def flush_ms_from_env(env: dict[str, str] | None = None) -> int:
    """RINGS_STATE_FLUSH_MS: milliseconds a stage's state may wait before it is written
    (0: after every envelope)."""
    return env_int("RINGS_STATE_FLUSH_MS", FLUSH_MS, env, high=10_000)


class PartitionKV:
    """The core's KV interface on one partition of a table, collecting changelog records.

    Entity keys are unique to their partition by construction; bookkeeping keys (`~...`)
    are the same in every partition, so they get the partition's prefix."""

    __slots__ = ("table", "partition", "db", "prefix", "pending", "meta", "unstored",
                 "unsent", "filter", "_next", "_scan", "holds")

    def __init__(self, table: Any, partition: int) -> None:
        self.table = table
        self.partition = partition
        # The partition's RocksDB (rocksdict), opened by Faust when it was assigned.
        self.db = table.data._db_for_partition(partition)
        self.prefix = f"~{partition}"
        # Writes since the last flush, by key (None: deleted): they are read from here,
        # sent to the changelog, and once delivered written to RocksDB in one write batch
        # (one WAL append instead of one per key: a put each was the worker's largest
        # single cost).
        # Entities in `pending`, the partition's bookkeeping (`~…`) apart in `meta`: the
        # changelog gets it after them (see ChangelogWriter.flush), and sorting one dict
        # of both at every flush was 1.6% of the worker's time.
        self.pending: dict[bytes, bytes | None] = {}
        self.meta: dict[bytes, bytes | None] = {}
        # Flushed and sent, not yet in RocksDB (see `store`): the newest value of each key
        # among those flushes, read before the database; and the flushes, oldest first.
        # (Not derived from the writer's delivery queue: a flush is taken before it joins
        # that queue, across its send's await, and a delivery stored meanwhile must still
        # know it is coming.)
        self.unstored: dict[bytes, bytes | None] = {}
        self.unsent: deque[dict[bytes, bytes | None]] = deque()
        # What the database may hold: a read of a key it certainly lacks (most reads: new
        # subjects) is answered without asking RocksDB (see key_filter).
        self.filter = self._filter_from_disk()
        # A larger filter being built from the database while `filter` serves, and the scan
        # of the database's keys that fills it (see write_local).
        self._next: KeyFilter | None = None
        self._scan: Iterator[bytes] | None = None
        # The subject stage's held state (streams.held.HeldState): asked before each flush
        # what to write of it, and which bookkeeping.
        self.holds: Any = None

    def _filter_from_disk(self) -> KeyFilter:
        # RocksDB's estimate sizes it (an estimate too low only means one more rebuild).
        on_disk = self.db.property_int_value("rocksdb.estimate-num-keys") or 0
        return KeyFilter(self.db.keys(), on_disk)

    def get(self, key: str) -> bytes | None:
        # Inline and without a KeyError: most reads are of new subjects, in neither place
        # (a raised and caught exception was a microsecond of each).
        if key[0] == "~":
            k = (self.prefix + key).encode()
            v = self.meta.get(k, _ABSENT)
        else:
            k = key.encode()
            v = self.pending.get(k, _ABSENT)
        if v is not _ABSENT:
            return v
        if self.unstored:
            v = self.unstored.get(k, _ABSENT)
            if v is not _ABSENT:
                return v
        return self.db.get(k) if self.filter.may_hold(k) else None

    def put(self, key: str, value: bytes) -> None:
        if key[0] == "~":
            self.meta[(self.prefix + key).encode()] = value
        else:
            self.pending[key.encode()] = value

    def delete(self, key: str) -> None:
        if key[0] == "~":
            self.meta[(self.prefix + key).encode()] = None
        else:
            self.pending[key.encode()] = None

    def has_writes(self) -> bool:
        return bool(self.pending or self.meta)

    def writes(self) -> int:
        return len(self.pending) + len(self.meta)

    def discard_writes(self) -> None:
        """Forget what was written since the last flush (a batch that failed half-way)."""
        self.pending.clear()
        self.meta.clear()

    def take_writes(self) -> dict[bytes, bytes | None]:
        """What was written since the last flush, in the order the changelog gets it:
        entities first, then the bookkeeping. Read from `unstored` until `store`d."""
        records = self.pending
        records.update(self.meta)
        self.pending = {}
        self.meta.clear()
        self.unstored.update(records)
        self.unsent.append(records)
        return records

    def store(self, records: dict[bytes, bytes | None], write: bool = True) -> None:
        """The oldest flush not stored, which the changelog now holds: into RocksDB,
        atomically (`write`: False when the store was let go meanwhile), and no longer
        read from memory unless a later flush changed the key again."""
        unsent = self.unsent
        if not unsent or unsent[0] is not records:
            raise RuntimeError("flushes are stored in the order they were taken")
        unsent.popleft()
        if write:
            self.write_local(records)
        unstored = self.unstored
        if not unsent:
            unstored.clear()
            return
        for k in records:
            for later in unsent:
                if k in later:
                    break
            else:
                del unstored[k]

    def write_local(self, records: dict[bytes, bytes | None]) -> None:
        """Apply one flush's records to RocksDB, atomically."""
        batch = WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        for k, v in records.items():
            if v is None:
                delete(k)
            else:
                put(k, v)
        self.db.write(batch)
        written = [k for k, v in records.items() if v is not None]
        f = self.filter
        f.add_all(written)
        if self._next is not None:
            self._next.add_all(written)
            self._rebuild_step()
        elif f.full:
            # Twice as large, from the keys the database holds now (a snapshot: what is
            # written from here on goes to both filters). Built a step per write, not at
            # once: reading back a partition's keys took 0.125 s per 250,000 (measured),
            # on the event loop, and alerts waited behind it.
            self._next = KeyFilter((), 2 * f.count)
            self._scan = iter(self.db.keys())
            self._rebuild_step()

    def _rebuild_step(self) -> None:
        assert self._next is not None and self._scan is not None
        keys = list(islice(self._scan, REBUILD_STEP))
        self._next.add_all(keys)
        if len(keys) < REBUILD_STEP:            # read to the end: it holds every key
            self.filter, self._next, self._scan = self._next, None, None

    def release(self) -> None:
        """Before the partition's store is closed: no scan may keep the database open."""
        self._next = self._scan = None


class ChangelogWriter(Service):
    """One producer for the changelog batches of every stage agent of this worker."""

    def __init__(self, settings: KafkaSettings, flush_ms: int = FLUSH_MS, **kw: Any) -> None:
        super().__init__(**kw)
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self.records = 0
        self.flush_s = flush_ms / 1000
        # Partitions whose writes wait (see commit), by id: it, and when it began to wait.
        self._waiting: dict[int, tuple[PartitionKV, float]] = {}
        self.clock = time.monotonic
        # per PartitionKV (by id): it, and its undelivered flushes in the order sent,
        # each [records, [(delivery future, records in that batch)] or None: not sent]
        self._inflight: dict[int, tuple[PartitionKV, deque[list[Any]]]] = {}

    async def on_start(self) -> None:
        s = self.settings
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.broker, acks="all", linger_ms=0,
            max_batch_size=MAX_FLUSH_BYTES, max_request_size=MAX_FLUSH_BYTES + (1 << 20),
            **s.client_options)
        await self.producer.start()

    async def on_stop(self) -> None:
        if self.producer is not None:
            try:
                await asyncio.wait_for(self.drain_all(), 30.0)
            finally:
                await self.producer.stop()

    async def commit(self, kv: PartitionKV) -> None:
        """The end of an envelope: write what `kv` collected now if its oldest unwritten
        envelope is `flush_s` old or it holds `MAX_DEFERRED_RECORDS` records, else leave
        it for a later commit or `flush_waiting` (whose caller must hold the stage between
        envelopes, as the agent does here: never half an envelope's writes).

        A flush per envelope cost a RocksDB write, a produce request and a persisted
        offset each, and rewrote each second's index entry (a list of every entity
        scheduled in it) once per envelope: at a steady 2,000 sightings/s, 375 envelopes
        a second on the subject topic made 2.45 MB/s of subject changelog, 1,226 bytes a
        sighting (measured). Waiting writes a key once however many envelopes changed it.
        It is safe for the same reason pipelined sends are (see flush): `~off` travels with
        the state, and what was applied but not yet written is applied again after a
        crash, from the stage's own topic. Alerts do not wait for it."""
        if not kv.has_writes():
            return
        now = self.clock()
        since = self._waiting.setdefault(id(kv), (kv, now))[1]
        if now - since >= self.flush_s or kv.writes() >= MAX_DEFERRED_RECORDS:
            await self.flush(kv)

    def note(self, kv: PartitionKV) -> None:
        """`kv` was written outside an envelope: flush it with the waiting ones."""
        if kv.has_writes():
            self._waiting.setdefault(id(kv), (kv, self.clock()))

    def waiting(self, table: str | None = None, older_s: float = 0.0) -> list[PartitionKV]:
        """The partitions (of `table`, or all) whose writes have waited `older_s` or more."""
        now = self.clock()
        return [kv for kv, since in self._waiting.values()
                if (table is None or kv.table.name == table) and now - since >= older_s]

    async def flush(self, kv: PartitionKV, force: bool = False) -> None:
        """Send what `kv` collected to its changelog partition (with what its held state
        has held too long: see streams.held; `force`: all of it), and into RocksDB once
        delivered (see `PartitionKV.store`).

        Sends are pipelined: this returns once the records are queued. Awaiting each
        delivery in line cost a broker round trip per envelope, and at a steady 2,000
        sightings/s that queueing was most of the alert latency. Not waiting is safe: the
        stage's `~off` marker travels in the same batch, so a partition restored from the
        changelog (or from its own store, which holds no more than the changelog) resumes
        after the last envelope the changelog holds, and reads back whatever the consumer
        committed past it (see the stage agent). At most `MAX_INFLIGHT` flushes of a
        partition are undelivered at once.

        Records of one partition reach the broker in the order sent. A failed delivery is
        sent again with everything after it, in order, until it succeeds (a record sent
        twice is the same key and value): the agent must not die of a broker outage, and a
        compacted changelog must not end on an older value."""
        self._waiting.pop(id(kv), None)
        await self._reap(kv, keep=MAX_INFLIGHT - 1)
        if kv.holds is not None:
            kv.holds.before_flush(force)
        if not kv.has_writes():
            return
        # Entity writes first, the partition's bookkeeping (`~…`: the stage watermark, the
        # upstream clock, the last envelope applied) after them. A flush too big for one
        # record batch goes out in several, and a kill can land between them: recovery
        # must then find the old bookkeeping, so that the envelope is applied again as the
        # first time. With the watermark first, a recovered stage judged the envelope
        # against the watermark after it and took its sightings as late (two false
        # checkpoint-avoidance alerts in the SIGKILL recovery test).
        records = kv.take_writes()
        if self.producer is None:
            await self.maybe_start()     # an agent may run before the app starts services
        self.records += len(records)
        try:
            sent: list[tuple[Any, int]] | None = await self._send(kv, records)
        except KafkaError:
            sent = None                  # sent again when reaped
        self._inflight.setdefault(id(kv), (kv, deque()))[1].append([records, sent])

    async def drain_all(self) -> None:
        """Wait until everything sent is delivered (before the stores are let go)."""
        for kv, _ in list(self._inflight.values()):
            await self._reap(kv, keep=0)

    async def _reap(self, kv: PartitionKV, keep: int) -> None:
        """Settle delivered flushes of `kv`; wait for the oldest until at most `keep` are
        left undelivered."""
        entry = self._inflight.get(id(kv))
        if entry is None:
            return
        q = entry[1]
        delay = 0.5
        while q:
            records, sent = q[0]
            done = sent is not None and all(f.done() for f, _ in sent)
            if not done and len(q) <= keep:
                return
            try:
                if sent is None:
                    raise KafkaError("not sent")
                metas = await asyncio.gather(*(f for f, _ in sent))
            except KafkaError as e:
                log.warning("changelog write of %d records failed (%s); sending again",
                            len(records), type(e).__name__)
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
                for item in q:               # this one and all after it, in order
                    try:
                        item[1] = await self._send(kv, item[0])
                    except KafkaError:
                        item[1] = None
                continue
            q.popleft()
            # Into RocksDB now that the changelog has it, and the persisted offset after it
            # (never ahead of what the store holds). Only while Faust still has this
            # partition's store open: setting the offset reopens a closed one (after a
            # revocation, at shutdown), and the old handle still holds RocksDB's lock. A
            # store left behind only makes recovery read more of the changelog.
            is_open = kv.table.data._dbs.get(kv.partition) is kv.db
            kv.store(records, write=is_open)
            if is_open:
                topic = kv.table.changelog_topic.get_topic_name()
                kv.table.data.set_persisted_offset(TP(topic, kv.partition),
                                                   metas[-1].offset + sent[-1][1] - 1)
        self._inflight.pop(id(kv), None)

    async def _send(self, kv: PartitionKV, records: dict[bytes, bytes | None]
                    ) -> list[tuple[Any, int]]:
        producer = self.producer
        assert producer is not None
        topic = kv.table.changelog_topic.get_topic_name()
        sent = []
        batch = producer.create_batch()
        count = 0
        for k, v in records.items():
            if batch.append(key=k, value=v, timestamp=None) is None:
                sent.append((await producer.send_batch(batch, topic, partition=kv.partition),
                             count))
                batch = producer.create_batch()
                count = 0
                if batch.append(key=k, value=v, timestamp=None) is None:
                    raise ValueError(f"a state value of {len(v or b'')} bytes does not fit a "
                                     "changelog batch")
            count += 1
        sent.append((await producer.send_batch(batch, topic, partition=kv.partition), count))
        if len(sent) > 1:
            log.warning("a changelog flush of %d records took %d record batches: it is not "
                        "atomic (more than %d MB of state in one envelope)", len(records),
                        len(sent), MAX_FLUSH_BYTES >> 20)
        return sent
