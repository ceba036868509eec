"""The Faust application: topics, tables, the detect agent, the ingest service, /metrics.

Topology (one worker process; several share the work through consumer groups):

    sightings ──ingest (aiokafka, bulk)──▶ rings-by-subject ──detect (Faust agent)──▶ alerts
        └──────────────── bad records ──▶ sightings-dlq        ▲
    watchlist (compacted) ──▶ GlobalTable ─────────────────────┘
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rings.engine import Engine
from rings.errors import InvalidRecord
from rings.net import Net
from rings.ruleset import RuleSet
from rings.timefmt import format_ts
from rings.watchlist import RawWatchlist

from .config import ALERTS, BY_SUBJECT, ENGINE_DLQ, WATCHLIST, KafkaSettings
from .envelope import Envelope
from .ingest import IngestService
from .metrics import Metrics

log = logging.getLogger("rings.worker")


@dataclass(slots=True)
class WorkerOptions:
    partitions: int = 4
    data_dir: str = "./.rings-data"
    web_port: int = 6066
    web_host: str = "127.0.0.1"


class ExternalGlobalTable(faust.GlobalTable):
    """A global table whose changelog is a topic of its own name (here the contract's
    compacted `watchlist` topic).

    Faust's partition assignor derives the changelog name from the app id and table name
    and ignores a custom `changelog_topic`; the assignment then fails with a KeyError that
    leaves the worker waiting forever after "performing partition assignments".
    """

    def _changelog_topic_name(self) -> str:
        return self.changelog_topic.get_topic_name()


class TableKV:
    """The core's KV interface over a Faust table of raw bytes.

    Reads and writes happen inside the detect agent, so Faust routes them to the RocksDB
    instance and changelog partition of the envelope being processed.
    """

    __slots__ = ("table", "prefix")

    def __init__(self, table: Any, prefix: str) -> None:
        self.table = table
        self.prefix = prefix   # per-partition prefix for the engine's bookkeeping keys

    def _k(self, key: str) -> bytes:
        return (key if key.startswith("s:") else self.prefix + key).encode()

    def get(self, key: str) -> bytes | None:
        return self.table.get(self._k(key))

    def put(self, key: str, value: bytes) -> None:
        self.table[self._k(key)] = value

    def delete(self, key: str) -> None:
        self.table.pop(self._k(key), None)


def build_app(settings: KafkaSettings, net: Net, rules: RuleSet, opts: WorkerOptions
              ) -> tuple[faust.App, Metrics]:
    app_id = settings.topic("rings")
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.broker}",
        store="rocksdb://",
        datadir=opts.data_dir,
        web_port=opts.web_port,
        web_bind=opts.web_host,
        web_host=opts.web_host,
        topic_partitions=opts.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        producer_linger=0.002,
        table_cleanup_interval=3600.0,
        web_enabled=True,
        autodiscover=False,
        table_standby_replicas=0,
        GlobalTable=ExternalGlobalTable,
    )
    metrics = Metrics()
    metrics.rules_version.labels(rules.version).set(1)

    by_subject = app.topic(settings.topic(BY_SUBJECT), key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw",
                           partitions=opts.partitions, internal=True)
    alerts_topic = app.topic(settings.topic(ALERTS), key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw")
    raw = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    # key_type/value_type bytes select the raw codec for the store and the changelog
    # (a Schema alone does not reach the store, which then falls back to JSON).
    state = app.Table("subject-state", schema=raw, key_type=bytes, value_type=bytes,
                      partitions=opts.partitions,
                      options={"driver": "rocksdict"})
    watch_topic = app.topic(settings.topic(WATCHLIST), schema=raw)
    # Every worker needs the whole watchlist: a global table reads all partitions of the
    # compacted contract topic itself (no changelog of its own).
    watch_table = app.GlobalTable(settings.topic(WATCHLIST), schema=raw, key_type=bytes,
                                  value_type=bytes,
                                  changelog_topic=watch_topic, partitions=opts.partitions,
                                  synchronize_all_active_partitions=True,
                                  # Apply each update at once: with the default (1000) a
                                  # handful of new entries waits in a buffer indefinitely.
                                  recovery_buffer_size=1,
                                  options={"driver": "rocksdict"})

    def on_invalid(key: str, err: InvalidRecord) -> None:
        metrics.watchlist_invalid.labels(err.reason).inc()
        log.warning("ignoring an invalid watchlist entry: %s", err.reason)

    watchlist = RawWatchlist(lambda k: watch_table.get(k.encode()), net.sites, on_invalid)
    engines: dict[int, Engine] = {}

    @app.on_partitions_assigned.connect
    async def _reset_engines(app: faust.App, assigned: Any, **kw: Any) -> None:
        # Partition state may have moved while it was elsewhere: reload from the table.
        engines.clear()

    engine_dlq = app.topic(settings.topic(ENGINE_DLQ), key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw")

    @app.agent(by_subject)
    async def detect(stream: Any) -> None:
        async for event in stream.events():
            try:
                await _detect_one(event)
            except Exception as e:  # noqa: BLE001 - never let one envelope kill the agent
                # A bug, not bad input (input was validated at ingest): keep the envelope
                # for replay after a fix, and go on with the next one.
                log.exception("engine failed on an envelope; kept on %s", ENGINE_DLQ)
                await engine_dlq.send(value=event.value, headers={
                    "rings-reason": type(e).__name__.encode(),
                    "rings-partition": str(event.message.partition).encode()})
                metrics.dlq.labels("engine-error").inc()

    async def _detect_one(event: Any) -> None:
        p = event.message.partition
        env = Envelope.decode(event.value)
        eng = engines.get(p)
        if eng is None:
            eng = engines[p] = Engine(net, rules, watchlist, TableKV(state, f"~{p}"))
        before = (eng.stats.duplicates, eng.stats.late)
        alerts = eng.process(env.sightings(), env.wm_before, env.wm_after)
        metrics.duplicates.inc(eng.stats.duplicates - before[0])
        metrics.late.inc(eng.stats.late - before[1])
        if not alerts:
            return
        now_ms = int(time.time() * 1000)
        emitted = format_ts(now_ms, 0)
        kts = dict(zip((r[0] for r in env.rows), env.kts)) if env.kts else {}
        for a in alerts:
            await alerts_topic.send(key=a.subject.key.encode(),
                                    value=orjson.dumps(a.to_json(emitted)))
            metrics.alerts.labels(a.rule, a.severity).inc()
            t0 = kts.get(a.evidence[-1]) if a.evidence else None
            if t0:
                metrics.latency.observe(max(0.0, (now_ms - t0) / 1000))

    @app.task
    async def _widen_producer_buffer() -> None:
        # Table writes are queued in Faust's producer buffer; its default of 100 messages
        # makes the agent stall and warn on every envelope that touches more subjects.
        app.producer.buffer.max_messages = 50_000

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        """200 once this worker consumes: its ingest and its detect agent have partitions
        (or, in a group with more workers than partitions, its ingest is started)."""
        ok = ingest_ref and ingest_ref[0].started_consuming and bool(app.consumer.assignment())
        return web.json({"ready": bool(ok)}, status=200 if ok else 503)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway.
        return web.bytes(generate_latest(metrics.registry),
                         content_type=CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4")

    ingest_ref: list[IngestService] = []

    class Ingest(IngestService):
        def __init__(self, **kw: Any) -> None:
            super().__init__(settings, net, rules.lateness_ms, opts.partitions,
                             group_id=f"{app_id}-ingest", metrics=metrics, **kw)
            ingest_ref.append(self)

    app.service(Ingest)
    return app, metrics
