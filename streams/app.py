"""The Faust application: topics, tables, the stage agents, the ingest service, web pages.

Topology (one worker process; several share the work through consumer groups):

    sightings ──ingest──▶ rings-by-subject ──subjects (Engine)─────────────────────▶ alerts
        │        └─────▶ rings-by-site ────sites (SiteStage)──▶ rings-by-pair ──pairs──▶ alerts
        └── bad records ──▶ sightings-dlq
    watchlist (compacted) ──▶ GlobalTable, read by every stage

Each agent runs its core stage per partition, on a Faust table (RocksDB + changelog)
co-partitioned with its input topic, and learns event time from the envelopes. The ingest
runs in a child process of the worker (`streams.ingest_process`; `RINGS_INGEST=inline`: in
this one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rings.clock import SourceClock
from rings.convoy import CoPass, PairStage, SiteStage
from rings.decode import limits_for
from rings.detectors import Context
from rings.engine import NO_TIME, Engine
from rings.decode import watch_entry_from_obj
from rings.errors import InvalidRecord
from rings.gctune import collect_now
from rings.models import Alert, Sighting
from rings.net import Net
from rings.ruleset import RuleSet
from rings.timefmt import format_ts
from rings.watchlist import RawWatchlist

from .config import (ALERTS, BY_PAIR, BY_SITE, BY_SUBJECT, ENGINE_DLQ, PSEUDO_WATCHLIST,
                     WATCHLIST, KafkaSettings)
from .changelog import ChangelogWriter, PartitionKV, flush_ms_from_env
from .envelope import Envelope, partition_for
from .held import HeldState, bookkeeping, hold_ms_from_env
from .ingest_process import IngestConfig, IngestProcess
from .lockdown import Lockdown
from .rules_feed import RulesFeed
from .metrics import Metrics, consumer_lags, merged, rocksdb_memory, snapshot, state_keys
from .rocks import RocksBudget, state_cache_from_env, use_budget
from .stage_process import StageConfig, StageProcess, assigned
from .watch_reader import WatchReader

log = logging.getLogger("rings.worker")


@dataclass(slots=True)
class WorkerOptions:
    partitions: int = 4                 # of the internal topics and tables
    source_partitions: int = 4          # of the `sightings` topic
    data_dir: str = "./.rings-data"
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    pseudonyms: Any = None              # rings.pseudonym.Pseudonymizer: ids replaced at ingest
    ingest: str = "process"             # RINGS_INGEST: in a child process, or inline
    processes: int = 1                  # stage processes (RINGS_PROCESSES, --processes)
    process_index: int = 0              # this one's: 0 the worker's own, 1.. its children
    loglevel: str = "info"              # (for the ingest process's own logging)
    log_format: str = "text"


# Per partition of a state table. Faust's defaults (64 MB write buffers, three of them, and a
# 2 GB block cache) are sized for one big table; a worker has three tables times their
# partitions, and state is written once per entity per envelope and read mostly from the
# core's own cache.
# How long the broker may hold a stage process's fetch for data to come (see
# RingsApp._new_consumer): idle, a fetch every 50 ms per broker.
FETCH_MAX_WAIT_MS = 50

ROCKSDB_OPTIONS = {"write_buffer_size": 8 * 1024 * 1024, "max_write_buffer_number": 2,
                   "block_cache_size": 16 * 1024 * 1024,
                   "block_cache_compressed_size": 4 * 1024 * 1024}


class ExternalGlobalTable(faust.GlobalTable):
    """A global table whose changelog is a topic of its own name (here the contract's
    compacted `watchlist` topic).

    Faust's partition assignor derives the changelog name from the app id and table name
    and ignores a custom `changelog_topic`; the assignment then fails with a KeyError that
    leaves the worker waiting forever after "performing partition assignments".
    """

    on_change: Callable[[bytes], None] | None = None

    def _changelog_topic_name(self) -> str:
        return self.changelog_topic.get_topic_name()

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        """Every update of a global table comes through here: tell the reader's cache."""
        events = list(batch)
        super().apply_changelog_batch(events)
        if self.on_change is not None:
            for event in events:
                self.on_change(event.message.key)


class RingsApp(faust.App):
    # The worker's other stage processes (streams.stage_process). Started with the app,
    # before it joins its consumer group, so that they join at the same time: Faust starts
    # the services of `app.service` only once its first assignment is recovered, and a
    # member joining then makes the group rebalance again (measured after a SIGKILL: the
    # second process joined a minute late, once the dead members' sessions had expired).
    early_services: list[Any] = []

    async def on_first_start(self) -> None:
        await super().on_first_start()
        for svc in self.early_services:
            await svc.maybe_start()

    def _new_consumer(self) -> Any:
        """Faust's consumer, its fetches answered within FETCH_MAX_WAIT_MS.

        Faust asks the broker to hold a fetch up to 1.5 s for data to come, and aiokafka
        has one fetch in flight per broker: a partition whose fetched envelopes are all
        applied waits for the fetch of the others (the plan topics, the pair stage's, the
        watchlist: idle at full speed) to come back empty before it is fetched again.
        Measured on the bench's backlog: a stage process idle 0.5 to 1.3 s at a time,
        both cores of the machine free, envelopes waiting on the broker for it."""
        consumer = super()._new_consumer()
        thread = consumer._thread
        create = thread._create_worker_consumer

        def create_with_short_waits(transport: Any) -> Any:
            c = create(transport)
            c._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
            return c
        thread._create_worker_consumer = create_with_short_waits
        return consumer

    async def on_stop(self) -> None:
        # Every process of the worker leaves the group at once: one that stays while the
        # others leave is caught rejoining the group as it stops, and does not leave it
        # (measured: the worker's own process then stayed a member until its session
        # expired, and a worker started again waited that long for its partitions).
        for svc in self.early_services:
            svc.request_stop()
        # Stopping, Faust runs a full garbage collection for each table's store and for
        # each wait on unacknowledged messages: with the state caches full (two million
        # objects) 1.3 s each: a worker took 14.2 s to stop, 1.2 s with this. Objects made so
        # far are not collected any more: at exit, nothing is lost by that.
        gc.freeze()
        await super().on_stop()

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        for svc in self.early_services:     # they exit; wait for them
            await svc.stop()


def build_app(settings: KafkaSettings, net: Net, rules: RuleSet, opts: WorkerOptions,
              rules_offset: int | None = None) -> tuple[faust.App, Metrics]:
    """The worker's app. With `rules_offset`, it follows the `rules` topic from there and
    switches to each rule set pushed (see `apply_rules`)."""
    app_id = settings.topic("rings")
    extra: dict[str, Any] = {}
    if opts.process_index:
        # The group's members name their worker by URL; a stage process is its worker's.
        extra["canonical_url"] = (f"http://{opts.web_host}:{opts.web_port}/"
                                  f"process-{opts.process_index}")
    app = RingsApp(
        app_id,
        broker=f"kafka://{settings.broker}",
        # SASL/TLS for Faust's consumer and producer, and the topic creation they do
        broker_credentials=settings.faust_credentials(),
        store="rocksdb://",
        datadir=opts.data_dir,
        web_port=opts.web_port,
        web_bind=opts.web_host,
        web_host=opts.web_host,
        topic_partitions=opts.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        # Members learn of a rebalance at their next heartbeat: every second rather than
        # Faust's 3 s, so that a worker's stage processes, which join one after the other,
        # are one group about 2 s sooner (and so is a group after any member joins). And a
        # member that died (a worker, or one of its stage processes, killed) is given up
        # after 20 s without a heartbeat, not Faust's 60: its partitions, and the alerts
        # of their subjects, wait that long for another member.
        broker_heartbeat_interval=1.0,
        broker_session_timeout=20.0,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        producer_linger=0.002,
        table_cleanup_interval=3600.0,
        # Stage processes other than the worker's own answer through it (stage_process).
        web_enabled=opts.process_index == 0,
        autodiscover=False,
        table_standby_replicas=0,
        GlobalTable=ExternalGlobalTable,
        # Per partition and fetch. Faust's 1 MB is a handful of envelopes: with the stages
        # reading a backlog, their agents waited on fetches (the bench's worker rate,
        # medians of three: 23,300/s with 1 MB, 27,900 with 4 MB, 29,600 with 16 MB). Not
        # more than 4 MB: a fetch is held in memory per partition, and over 1,000,000
        # sightings the worker grew by 7 to 22% from half-way on with 16 MB, 4% with 4 MB.
        consumer_max_fetch_size=4 * 1024 * 1024,
        **extra,
    )
    metrics = Metrics()
    metrics.rules_version.labels(rules.version).set(1)
    metrics.init_plans(rules.plans)
    # The rule set in force; replaced whole by a push (hot reload). Stages read it when they
    # are built, so a new set takes effect at the next envelope of each partition.
    current = [rules]

    def convoys() -> list[Any]:
        return [d for d in current[0].detectors if d.mode == "stage"]

    def raw_topic(name: str, **kw: Any) -> Any:
        return app.topic(settings.topic(name), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw", **kw)

    def state_table(name: str) -> Any:
        # key_type/value_type bytes select the raw codec for the store and the changelog
        # (a Schema alone does not reach the store, which then falls back to JSON).
        return app.Table(name, key_type=bytes, value_type=bytes, partitions=opts.partitions,
                         options={"driver": "rocksdict", **ROCKSDB_OPTIONS})

    by_subject = raw_topic(BY_SUBJECT, partitions=opts.partitions, internal=True)
    by_site = raw_topic(BY_SITE, partitions=opts.partitions, internal=True)
    by_pair = raw_topic(BY_PAIR, partitions=opts.partitions, internal=True)
    alerts_topic = raw_topic(ALERTS)
    engine_dlq = raw_topic(ENGINE_DLQ)
    subject_state = state_table("subject-state")
    site_state = state_table("site-state")
    pair_state = state_table("pair-state")
    budget = RocksBudget.from_env(share=opts.processes)
    cache_limit = state_cache_from_env()

    def cached(stage: Any) -> Any:
        stage.table.cache_limit = cache_limit
        return stage

    raw = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    # Every worker needs the whole watchlist: a global table reads all partitions of the
    # compacted contract topic itself (no changelog of its own).
    # With pseudonymisation the table reads a copy of the watchlist keyed by pseudonyms
    # (made below), so no raw identifier reaches this worker's state.
    pz = opts.pseudonyms
    watch_name = WATCHLIST if pz is None else PSEUDO_WATCHLIST
    watch_table = app.GlobalTable(settings.topic(watch_name), schema=raw, key_type=bytes,
                                  value_type=bytes, changelog_topic=raw_topic(watch_name),
                                  partitions=opts.partitions,
                                  synchronize_all_active_partitions=True,
                                  # Apply each update at once: with the default (1000) a
                                  # handful of new entries waits in a buffer indefinitely.
                                  recovery_buffer_size=1,
                                  options={"driver": "rocksdict"})

    def on_invalid(key: str, err: InvalidRecord) -> None:
        metrics.watchlist_invalid.labels(err.reason).inc()
        log.warning("ignoring an invalid watchlist entry: %s", err.reason)

    watch_raw = WatchReader(watch_table)
    watchlist = RawWatchlist(watch_raw, net.sites, on_invalid)
    state_tables = [subject_state, site_state, pair_state, watch_table]

    if pz is not None:
        pseudo_topic = raw_topic(PSEUDO_WATCHLIST)

        async def pseudonymise_watchlist(stream: Any) -> None:
            """`watchlist` -> its pseudonymous copy: the same entries and tombstones, each
            subject id replaced by its keyed pseudonym (the ingest does the same to
            sightings). An invalid entry is dropped here, counted, and never stored."""
            async for event in stream.events():
                m = event.message
                try:
                    if m.value is None:
                        if m.key:
                            await pseudo_topic.send(key=pz.key(m.key.decode()).encode(),
                                                    value=None)
                        continue
                    d = orjson.loads(m.value)
                    entry = watch_entry_from_obj(d, net.sites)       # validates, copies
                    d["subject"]["id"] = pz.subject(entry.subject).id
                    await pseudo_topic.send(key=pz.key(entry.subject.key).encode(),
                                            value=orjson.dumps(d))
                except (InvalidRecord, orjson.JSONDecodeError, UnicodeDecodeError) as e:
                    reason = e.reason if isinstance(e, InvalidRecord) else "bad-json"
                    on_invalid("", InvalidRecord(reason))
        app.agent(raw_topic(WATCHLIST), name="watchlist-pseudonyms")(pseudonymise_watchlist)
    def on_watch_change(k: bytes | None) -> None:
        if k is not None:
            watch_raw.changed(k)
            watchlist.changed(k.decode(errors="replace"))
    watch_table.on_change = on_watch_change
    ctx = Context(net, watchlist)

    # Per partition: the stage objects and the clock of their upstream partitions. Rebuilt
    # after every rebalance, since a partition's state may have moved while it was away.
    kvs: dict[tuple[str, int], PartitionKV] = {}
    stage_locks: dict[str, asyncio.Lock] = {}       # per state table, held per envelope
    subjects: dict[int, tuple[Engine, SourceClock]] = {}
    sites: dict[int, tuple[list[SiteStage], SourceClock]] = {}
    pairs: dict[int, tuple[dict[str, PairStage], SourceClock]] = {}
    sent_frontier: dict[int, int] = {}
    # Per (state table, partition): the offset of the last envelope applied, and those
    # that failed (see stage_agent); forgotten with the stages at every rebalance.
    last_applied: dict[tuple[str, int], int] = {}
    failed: dict[tuple[str, int], set[int]] = {}
    hold_ms = hold_ms_from_env()

    def to_flush(name: str, older_s: float, force: bool) -> list[PartitionKV]:
        """A stage's partitions whose waiting state is due (see changelog.commit), or whose
        held state has waited too long (streams.held); `force`: every one with either."""
        todo = changelog.waiting(name, older_s)
        for (table_name, _), kv in kvs.items():
            if table_name == name and kv.holds is not None and kv not in todo and \
                    (kv.holds.due() or force and kv.holds.table.held):
                todo.append(kv)
        return todo

    async def flush_waiting(older_s: float = 0.0, force: bool = False) -> None:
        """Write the stages' waiting state, each stage between two of its envelopes;
        `force`: with everything held (before the stages are let go)."""
        for name, lock in stage_locks.items():
            if to_flush(name, older_s, force):
                async with lock:
                    for kv in to_flush(name, older_s, force):
                        await changelog.flush(kv, force)

    @app.on_before_shutdown.connect
    async def _drain(app: faust.App, **kw: Any) -> None:
        await flush_waiting(force=True)
        await changelog.drain_all()         # while the stores are still open

    @app.on_partitions_revoked.connect
    async def _release(app: faust.App, revoked: Any, **kw: Any) -> None:
        # Before Faust drops the stores of revoked partitions: what was sent for them must
        # be delivered, and no stage may keep a handle on their RocksDB (the two-worker test
        # found a worker crashing here on the RocksDB lock when its peer joined).
        await _reset(app, ())

    @app.on_partitions_assigned.connect
    async def _reset(app: faust.App, assigned: Any, **kw: Any) -> None:
        await flush_waiting(force=True)
        await changelog.drain_all()
        for kv in kvs.values():
            kv.release()
        kvs.clear()
        watchlist.forget()
        watch_raw.forget()
        subjects.clear()
        sites.clear()
        pairs.clear()
        sent_frontier.clear()
        last_applied.clear()
        failed.clear()
        lockdown.reset()

    def kv_for(table: Any, p: int) -> PartitionKV:
        kv = kvs.get((table.name, p))
        if kv is None:
            kv = kvs[(table.name, p)] = PartitionKV(table, p)
        return kv

    async def emit(alerts: list[Alert], env: Envelope | None = None,
                   triggers: bool = True) -> None:
        if not alerts:
            return
        now_ms = int(time.time() * 1000)
        emitted = format_ts(now_ms, 0)
        kts = dict(zip((r[0] for r in env.rows), env.kts)) if env is not None and env.kts \
            else {}
        sent = []
        for a in alerts:
            sent.append(await alerts_topic.send(key=a.subject.key.encode(),
                                                value=orjson.dumps(a.to_json(emitted))))
            metrics.alerts.labels(a.rule, a.severity).inc()
            t0 = kts.get(a.evidence[-1]) if a.evidence else None
            if t0:
                metrics.latency.observe(max(0.0, (now_ms - t0) / 1000))
        # Delivered before the envelope counts as applied (see stage_agent).
        await asyncio.gather(*sent)
        if triggers and any(a.plan for a in alerts):
            await lockdown.trigger(alerts, emitted)     # rules that activate a plan

    def show_watermark(stage: str, stages: Any) -> None:
        marks = [st.watermark for st in stages]
        if marks and min(marks) > NO_TIME:
            metrics.stage_watermark.labels(stage).set(min(marks) / 1000)

    def stage_agent(topic: Any, name: str, table: Any) -> Any:
        """An agent that hands each envelope to `handle`, exactly once per envelope.

        The last envelope offset applied is kept in the stage's table with its state (and
        written after the envelope's alerts are delivered). An envelope at or below it is a
        repeat after a restart and is skipped; an offset past the next one means Faust
        skipped envelopes (seen after a SIGKILL: a committed offset beyond an envelope never
        handed to the agent), which are then read back from the topic and applied first.
        One envelope never kills the agent: a failure keeps it on the engine DLQ.
        """
        def wrap(handle: Any) -> Any:
            async def apply(p: int, off: int, raw: bytes) -> bool:
                """Apply one envelope and note it applied; False if the stage had to be
                made again from its store (see `rewind`), which then has not applied it."""
                kv, key = kv_for(table, p), (table.name, p)
                if off not in failed.get(key, ()):
                    try:
                        await handle(p, Envelope.decode(raw))
                    except Exception as e:  # noqa: BLE001
                        # A bug, not bad input (input was validated at ingest): keep the
                        # envelope for replay after a fix, and go on with the next one.
                        log.exception("%s failed on an envelope; kept on %s", name,
                                      ENGINE_DLQ)
                        await engine_dlq.send(value=raw, headers={
                            "rings-reason": type(e).__name__.encode(),
                            "rings-stage": name.encode(), "rings-partition": str(p).encode()})
                        metrics.dlq.labels("engine-error").inc()
                        failed.setdefault(key, set()).add(off)
                        base = rewind(table, p)
                        if base is not None:
                            last_applied[key] = base
                            return False
                kv.put("~off", str(off).encode())
                last_applied[key] = off
                if kv.holds is not None:
                    kv.holds.applied(off)
                return True

            lock = stage_locks[table.name] = asyncio.Lock()

            async def agent(stream: Any) -> None:
                async for event in stream.events():
                    p, off = event.message.partition, event.message.offset
                    async with lock:        # (the stage's state is whole between envelopes)
                        kv, key = kv_for(table, p), (table.name, p)
                        while True:         # (again only after a rewind: see apply)
                            last = last_applied.get(key)
                            if last is None:
                                # None in the store: no envelope of the partition is in
                                # it. The consumer may still have committed some (held
                                # or waiting state, a process killed before its first
                                # flush): all of them are read back.
                                raw_last = kv.get("~off")
                                last = int(raw_last) if raw_last is not None else -1
                                log.info("%s: partition %d resumes at envelope %d; its "
                                         "store holds envelopes up to %d", name, p, off, last)
                            if off <= last:
                                break
                            if off > last + 1:
                                # The consumer committed them, their state was not written:
                                # a crash between the two (state waits, see
                                # changelog.commit, or was held, see streams.held).
                                log.warning("%s: envelopes %d..%d of partition %d were not "
                                            "applied to its state; reading them back",
                                            name, last + 1, off - 1, p)
                                rewound = False
                                for past, raw in await read_range(topic.get_topic_name(), p,
                                                                  last + 1, off):
                                    if not await apply(p, past, raw):
                                        rewound = True
                                        break
                                if rewound:
                                    continue
                            if await apply(p, off, event.value):
                                break
                        # The envelope's state, and that it was applied, in one changelog
                        # batch: now, or with the next envelopes' (see changelog.commit).
                        await changelog.commit(kv)
            agent.__name__ = name
            return app.agent(topic, name=name)(agent)
        return wrap

    def rewind(table: Any, p: int) -> int | None:
        """After a failed envelope: if the subject stage lost what it held (its objects
        may hold half of the failed batch), its store's bookkeeping goes back to the last
        envelope wholly in the store and the stage is made again from the store; the
        envelopes since are applied again with the next one (the failed one skipped).
        Returns that envelope's offset, None if nothing was lost."""
        if table is not subject_state or p not in subjects or \
                not subjects[p][0].table.lost_held:
            return None
        kv = kv_for(table, p)
        base = kv.holds.rewind()
        kv.holds = None
        del subjects[p]
        changelog.note(kv)
        log.warning("subjects: partition %d made again from its store after a failed "
                    "envelope; applying again from envelope %d", p, base + 1)
        return base

    async def read_range(topic_name: str, p: int, start: int, end: int
                         ) -> list[tuple[int, bytes]]:
        # (From the earliest envelope kept, if `start` is gone to the topic's retention.)
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    **settings.client_options)
        await consumer.start()
        try:
            tp = TopicPartition(topic_name, p)
            consumer.assign([tp])
            consumer.seek(tp, start)
            out: list[tuple[int, bytes]] = []
            while await consumer.position(tp) < end:
                for msgs in (await consumer.getmany(tp, timeout_ms=1000)).values():
                    out.extend((m.offset, m.value) for m in msgs if m.offset < end)
            return out
        finally:
            await consumer.stop()

    @stage_agent(by_subject, "subjects", subject_state)
    async def on_subjects(p: int, env: Envelope) -> None:
        if p not in subjects:
            kv = kv_for(subject_state, p)
            eng = cached(Engine(net, current[0], watchlist, kv))
            src = SourceClock(kv, "~src", opts.source_partitions)
            subjects[p] = (eng, src)
            kv.holds = HeldState(kv, eng.table, lambda off: bookkeeping(off, eng.watermark,
                                                                         src), hold_ms)
        eng, clock = subjects[p]
        before = (eng.stats.duplicates, eng.stats.late)
        metrics.stage_events.labels("subjects").inc(len(env.rows))
        alerts = eng.process([Sighting.from_row(r) for r in env.rows], None,
                             clock.update(env.src))
        if env.rows:
            metrics.stage_rows_at.labels("subjects").set(time.time())
        metrics.duplicates.inc(eng.stats.duplicates - before[0])
        metrics.late.inc(eng.stats.late - before[1])
        await emit(alerts, env)
        show_watermark("subjects", (e for e, _ in subjects.values()))

    @stage_agent(by_site, "sites", site_state)
    async def on_sites(p: int, env: Envelope) -> None:
        if not convoys():
            return
        if p not in sites:
            kv = kv_for(site_state, p)
            sites[p] = ([cached(SiteStage(ctx, d, kv)) for d in convoys()],
                        SourceClock(kv, "~src", opts.source_partitions))
        stages, clock = sites[p]
        wm = clock.update(env.src)
        metrics.stage_events.labels("sites").inc(len(env.rows))
        if env.rows:
            metrics.stage_rows_at.labels("sites").set(time.time())
        passes = env.vehicle_passes()
        out: dict[int, list[list[Any]]] = {}
        for stage in stages:
            for cp in stage.process(passes, None, wm):
                q = partition_for(f"{cp.a}|{cp.b}".encode(), opts.partitions)
                out.setdefault(q, []).append([stage.rule.rule_id, *cp.to_wire()])
        frontier = stages[0].limit
        tick = frontier != sent_frontier.get(p)
        sent_frontier[p] = frontier
        for q in (range(opts.partitions) if tick else list(out)):
            await by_pair.send(value=Envelope({p: frontier}, out.get(q, [])).encode(),
                               partition=q)
        show_watermark("sites", (st for ss, _ in sites.values() for st in ss))

    @stage_agent(by_pair, "pairs", pair_state)
    async def on_pairs(p: int, env: Envelope) -> None:
        if not convoys():
            return
        if p not in pairs:
            kv = kv_for(pair_state, p)
            pairs[p] = ({d.rule_id: cached(PairStage(ctx, d, kv, current[0].version))
                         for d in convoys()},
                        SourceClock(kv, "~src", opts.partitions))
        stages, clock = pairs[p]
        wm = clock.update(env.src)
        metrics.stage_events.labels("pairs").inc(len(env.rows))
        if env.rows:
            metrics.stage_rows_at.labels("pairs").set(time.time())
        by_rule: dict[str, list[CoPass]] = {}
        for row in env.rows:
            by_rule.setdefault(row[0], []).append(CoPass.from_wire(row[1:]))
        for rule_id, stage in stages.items():
            await emit(stage.process(by_rule.get(rule_id, []), None, wm))
        show_watermark("pairs", (st for ss, _ in pairs.values() for st in ss.values()))

    @app.timer(300.0)
    async def _collect_garbage() -> None:
        # The worker runs without automatic collections (rings.gctune); free cycles made
        # by the framework every few minutes, between envelopes.
        t0 = time.perf_counter()
        found = collect_now()
        log.info("garbage collection: %d unreachable objects freed in %.2f s", found,
                 time.perf_counter() - t0)

    @app.task
    async def _widen_producer_buffer() -> None:
        # Table writes are queued in Faust's producer buffer; its default of 100 messages
        # makes the agent stall and warn on every envelope that touches more subjects.
        app.producer.buffer.max_messages = 50_000

    changelog = ChangelogWriter(settings, flush_ms_from_env())

    @app.timer(max(changelog.flush_s / 2, 0.05))
    async def _flush_waiting_state() -> None:
        # State that waits for the next envelopes of its partition, which may be long in
        # coming at a low rate.
        await flush_waiting(changelog.flush_s)
    app.service(changelog)
    lockdown = Lockdown(app, settings, net, rules, metrics, changelog, raw_topic,
                        lambda alerts: emit(alerts, None, False), kv_for)
    ingest_ref: list[Any] = []        # the IngestService or IngestProcess
    state_tables.append(lockdown.table)
    if budget is not None:
        for t in state_tables:
            use_budget(t, budget)

    def memory() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
        caches = [
            ("subjects", sum(len(e.table.cache) for e, _ in list(subjects.values()))),
            ("sites", sum(len(st.table.cache) for ss, _ in list(sites.values()) for st in ss)),
            ("pairs", sum(len(st.table.cache) for ps, _ in list(pairs.values())
                          for st in ps.values()))]
        return rocksdb_memory(state_tables, budget.cache if budget else None), caches

    metrics.watch(lambda: state_keys(subject_state),
                  lambda: consumer_lags(app, ingest_ref[0] if ingest_ref else None), memory)

    # The worker's own process (index 0) runs the ingest, the web pages and the other
    # stage processes (streams.stage_process); those run the stages alone.
    children: list[StageProcess] = []
    if opts.process_index == 0:
        for i in range(1, opts.processes):
            child_opts = dataclasses.replace(
                opts, process_index=i, data_dir=os.path.join(opts.data_dir, f"process-{i}"))
            children.append(StageProcess(StageConfig(
                settings.portable(), net, current[0], child_opts, rules_offset,
                by_subject.get_topic_name())))
        app.early_services = list(children)

    def stages_formed() -> bool:
        """Every stage process of this worker has its assignment: they have all joined."""
        return assigned(app) and all(c.ready for c in children)

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        """200 once this worker consumes: its ingest has started and each of its stage
        processes has its assignment."""
        ok = ingest_ref and ingest_ref[0].started_consuming and stages_formed()
        return web.json({"ready": bool(ok)}, status=200 if ok else 503)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        if children:
            theirs = await asyncio.gather(*(c.scrape() for c in children))
            body = generate_latest(merged([snapshot(metrics.registry), *theirs]))
        else:
            body = generate_latest(metrics.registry)
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway.
        return web.bytes(body,
                         content_type=CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4")

    if opts.process_index == 0:
        ingest_config = IngestConfig(settings.portable(), net, current[0].lateness_ms,
                                     opts.partitions, f"{app_id}-ingest",
                                     limits_for(current[0]),       # max_skew, max_age
                                     pz, opts.loglevel, opts.log_format)
        ingest = IngestProcess(ingest_config, metrics) if opts.ingest == "process" \
            else ingest_config.service(metrics)
        if children and opts.ingest == "process":
            # Sightings flow once the group is whole: a member joining later would make
            # the others give up partitions (and move their state) in mid-backlog.
            ingest.start_when = stages_formed
        ingest_ref.append(ingest)
        app.service(ingest)

    def apply_rules(new: RuleSet, bundle: dict[str, Any]) -> None:
        """Switch to a pushed rule set. Between envelopes (no await here): the stages are
        dropped and rebuilt on their next envelope with the new rules, on the same state,
        exactly as after a rebalance; rule state is kept by rule id, so a changed threshold
        applies to the windows already open."""
        old = current[0]
        if new.version == old.version:
            return
        current[0] = new
        for p in subjects:
            kv = kv_for(subject_state, p)
            if kv.holds is not None:
                kv.holds.release_all(last_applied.get((subject_state.name, p), -1))
                kv.holds = None
                changelog.note(kv)
        subjects.clear()
        sites.clear()
        pairs.clear()
        lockdown.set_rules(new)
        metrics.init_plans(new.plans)
        if ingest_ref:
            ingest_ref[0].use_rules(new.lateness_ms, limits_for(new))
        metrics.rules_version.remove(old.version)
        metrics.rules_version.labels(new.version).set(1)
        metrics.rules_reloads.labels("applied").inc()
        log.info("rule set %s applied (was %s), pushed by %s at %s", new.version, old.version,
                 bundle.get("by"), bundle.get("pushed"))

    if rules_offset is not None:
        app.service(RulesFeed(settings, net, rules_offset, apply_rules,
                              lambda: metrics.rules_reloads.labels("refused").inc()))
    return app, metrics
