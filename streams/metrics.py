"""Prometheus metrics of the worker. Labels come from the net and the rules, never from
subjects: no plate or person id may ever become a label value."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram,
                               ProcessCollector, disable_created_metrics)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# No `*_created` series: a timestamp per counter and histogram child, twice the series for
# nothing Prometheus uses (rates handle restarts through resets).
disable_created_metrics()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # process_resident_memory_bytes, process_cpu_seconds_total, open file descriptors:
        # what an operator sizes workers by (docs/performance.md, "Memory").
        ProcessCollector(registry=r)
        self.sightings = Counter("rings_sightings_total",
                                 "Valid sightings ingested, by site type (source) and ring "
                                 "of the site (off-ring: an approach bayonet).",
                                 ["source", "ring"], registry=r)
        self.alerts = Counter("rings_alerts_total", "Alerts emitted, by rule and severity.",
                              ["rule", "severity"], registry=r)
        self.dlq = Counter("rings_dlq_total", "Records refused to a dead-letter topic, by reason.",
                           ["reason"], registry=r)
        self.duplicates = Counter("rings_duplicates_total",
                                  "Sightings dropped because their id was already seen.",
                                  registry=r)
        self.late = Counter("rings_late_events_total",
                            "Sightings older than the watermark (beyond the allowed lateness): "
                            "stateful rules skipped them.", registry=r)
        self.latency = Histogram(
            "rings_alert_latency_seconds",
            "Wall-clock time from a sighting's arrival in Kafka (its record timestamp) to the "
            "emission of the alert it caused.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r)
        self.watermark = Gauge("rings_watermark_seconds",
                               "Event-time watermark of the ingest, seconds since the epoch.",
                               registry=r)
        self.ingest_cpu = Counter(
            "rings_ingest_process_cpu_seconds",
            "CPU time (user and system) of this worker's ingest process (RINGS_INGEST="
            "process; the worker's own is process_cpu_seconds_total).", registry=r)
        self.ingest_rss = Gauge(
            "rings_ingest_process_resident_memory_bytes",
            "Resident memory of this worker's ingest process (RINGS_INGEST=process).",
            registry=r)
        self.stage_watermark = Gauge(
            "rings_stage_watermark_seconds",
            "Lowest event-time watermark over this worker's partitions of a stage (subjects, "
            "sites, pairs): ordered rules have judged everything before it.",
            ["stage"], registry=r)
        self.stage_events = Counter(
            "rings_stage_events_total",
            "Items a stage of this worker has taken in (sightings for subjects and sites, "
            "co-passes for pairs), repeats included.", ["stage"], registry=r)
        self.stage_rows_at = Gauge(
            "rings_stage_last_rows_timestamp_seconds",
            "Wall-clock time a stage of this worker last took in an envelope with rows, "
            "seconds since the epoch: with lag on its input, a stage whose time stands still "
            "is stuck.", ["stage"], registry=r)
        self.watchlist_invalid = Counter("rings_watchlist_invalid_total",
                                         "Watchlist entries ignored because they are invalid.",
                                         ["reason"], registry=r)
        self.plan_activations = Counter(
            "rings_plan_activations_total", "Plan activations started, by plan and trigger "
            "(command or rule).", ["plan", "trigger"], registry=r)
        deadline_buckets = (30, 60, 120, 180, 240, 300, 420, 600, 900, 1200, 1800, 3600)
        self.plan_time_to_respond = Histogram(
            "rings_plan_time_to_respond_seconds", "Per activation: from activation to the last "
            "ordered site's acknowledgement (its record time in Kafka).", ["plan"],
            buckets=deadline_buckets, registry=r)
        self.plan_time_to_close = Histogram(
            "rings_plan_time_to_close_seconds", "Per activation: from activation to the last "
            "ordered site's closure (its record time in Kafka).", ["plan"],
            buckets=deadline_buckets, registry=r)
        self.plan_overdue_sites = Gauge(
            "rings_plan_overdue_sites", "Sites of active activations still missing after a "
            "deadline that has passed, by plan.", ["plan"], registry=r)
        self.rules_reloads = Counter(
            "rings_rules_reloads_total", "Rule sets from the rules topic: applied, or refused "
            "as invalid for this net (the running set stays).", ["result"], registry=r)
        self.rules_version = Gauge("rings_rules_version_info", "The active rule set.",
                                   ["version"], registry=r)

    def init_plans(self, plans: Iterable[str]) -> None:
        """Every plan's series from the start (at zero), so that rates and increases see
        the first activation, and dashboards show the plans before anything happened."""
        for plan in plans:
            for trigger in ("command", "rule"):
                self.plan_activations.labels(plan, trigger)
            self.plan_time_to_respond.labels(plan)
            self.plan_time_to_close.labels(plan)
            self.plan_overdue_sites.labels(plan)

    def watch(self, state_subjects: Callable[[], int],
              lags: Callable[[], Iterable[tuple[str, int, int]]],
              memory: Callable[[], Any] = lambda: ([], [])) -> None:
        """Gauges read when scraped from what the worker already holds (nothing scanned)."""
        self.registry.register(_LiveGauges(state_subjects, lags, memory))


class _LiveGauges(Collector):
    def __init__(self, state_subjects: Callable[[], int],
                 lags: Callable[[], Iterable[tuple[str, int, int]]],
                 memory: Callable[[], Any]) -> None:
        self.state_subjects = state_subjects
        self.lags = lags
        self.memory = memory

    def collect(self) -> Iterator[Any]:
        g = GaugeMetricFamily(
            "rings_state_subjects",
            "Subjects with state in this worker's partitions of the subject stage, estimated "
            "by RocksDB (the sum of rocksdb.estimate-num-keys over those partitions, no scan): "
            "a few bookkeeping keys count too, and so do overwrites still in a memtable, so "
            "it reads high, by up to tens of thousands of keys per partition.")
        try:
            g.add_metric([], self.state_subjects())
        except Exception:  # noqa: BLE001 - a store closing in a rebalance: no sample now
            pass
        yield g
        lag = GaugeMetricFamily(
            "rings_consumer_lag_records",
            "Records not yet read by this worker, per partition it consumes: the partition's "
            "high watermark minus the consumer's position (sightings: the ingest consumer; "
            "internal topics: the stage and plan agents, as of their last read record).",
            labels=["topic", "partition"])
        try:
            rows = list(self.lags())
        except Exception:  # noqa: BLE001
            rows = []
        for topic, partition, n in rows:
            lag.add_metric([topic, str(partition)], n)
        yield lag
        mem = GaugeMetricFamily(
            "rings_rocksdb_memory_bytes",
            "RocksDB's memory over every table and partition of this worker, by part: "
            "`memtables`, `table_readers` (index and filter blocks outside the cache) and "
            "`cache`, the one cache all share (RINGS_ROCKSDB_MB), which holds data, index and "
            "filter blocks and is charged for the memtables. Compare with "
            "process_resident_memory_bytes.",
            labels=["part"])
        cached = GaugeMetricFamily(
            "rings_state_cache_entities",
            "Decoded entities the core keeps in memory between envelopes, by stage (bounded: "
            "RINGS_STATE_CACHE per stage and worker).", labels=["stage"])
        try:
            parts, caches = self.memory()
        except Exception:  # noqa: BLE001 - a store closing in a rebalance
            parts, caches = [], []
        for part, n in parts:
            mem.add_metric([part], n)
        for stage, n in caches:
            cached.add_metric([stage], n)
        yield mem
        yield cached


ROCKSDB_MEMORY = (("memtables", "rocksdb.cur-size-all-mem-tables"),
                  ("table_readers", "rocksdb.estimate-table-readers-mem"))


def rocksdb_memory(tables: Iterable[Any], cache: Any = None) -> list[tuple[str, int]]:
    """RocksDB's own account of its memory over the open partitions of `tables`: memtables,
    index and filter blocks held outside the cache, and the shared cache's usage (blocks,
    index and filter blocks, and the memtables' reservations)."""
    dbs = [db for t in tables for db in list(t.data._dbs.values())]
    out = [(part, sum(db.property_int_value(prop) or 0 for db in dbs))
           for part, prop in ROCKSDB_MEMORY]
    if cache is not None:
        out.append(("cache", cache.get_usage()))
    return out


def state_keys(table: Any) -> int:
    """RocksDB's estimate of the keys in the open partitions of a Faust table (rocksdict):
    read from each database's statistics, no scan."""
    return sum(db.property_int_value("rocksdb.estimate-num-keys") or 0
               for db in list(table.data._dbs.values()))


def consumer_lags(app: Any, ingest: Any) -> list[tuple[str, int, int]]:
    """(topic, partition, records not yet read) for every partition this worker consumes:
    the ingest's `sightings` partitions, and the partitions of the topics its agents read.
    Faust keeps, per partition, the offset of the last record its agents read (right after
    a seek: the committed offset, so this is at most one record short there)."""
    out = [(t, p, n) for (t, p), n in (ingest.lag.items() if ingest is not None else ())]
    try:
        consumer = app.consumer
        topics = {t for agent in app.agents.values()
                  for t in getattr(agent.channel, "topics", ())}
        read = consumer._read_offset
        for tp in consumer.assignment():
            if tp.topic not in topics:
                continue
            hw = consumer.highwater(tp)
            if hw is None:
                continue
            last = read.get(tp)
            out.append((tp.topic, tp.partition,
                        max(0, hw - (last + 1 if last is not None else 0))))
    except Exception:  # noqa: BLE001 - not started yet, or mid-rebalance: the ingest's only
        pass
    return out


# A registry's samples as plain data, to cross a process boundary: per family its name,
# type, help and unit, and its samples as (name, labels, value).
Snapshot = list[tuple[str, str, str, str, list[tuple[str, dict[str, str], float]]]]

# Families of several stage processes of one worker (streams.stage_process) that are not
# added up: watermarks and start times are the lowest (the worker as a whole is as far as
# its slowest part); times of the last activity and the ingest's watermark (reported by
# the worker's own process only) the highest; and rule sets, which every process reads
# from the rules topic and applies or refuses alike, counted once.
MERGE: dict[str, Callable[[float, float], float]] = {
    "rings_stage_watermark_seconds": min,
    "process_start_time_seconds": min,
    "rings_stage_last_rows_timestamp_seconds": max,
    "rings_watermark_seconds": max,
    "rings_rules_version_info": max,
    "process_max_fds": max,
    "rings_rules_reloads": max,
}


def snapshot(registry: Any) -> Snapshot:
    return [(m.name, m.type, m.documentation, m.unit,
             [(s.name, s.labels, s.value) for s in m.samples]) for m in registry.collect()]


class merged:
    """The samples of several processes' registries as one, for `generate_latest`: the
    same series added up (counters, histograms, and gauges such as memory), or for the
    families of MERGE their lowest or highest value. A family only some processes
    have (the ingest's, the plans' of the process holding the inbox) is theirs alone."""

    def __init__(self, snapshots: Iterable[Snapshot]) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        families: dict[str, tuple[str, str, str, dict[tuple[str, tuple], float]]] = {}
        for snap in self.snapshots:
            for name, typ, doc, unit, samples in snap:
                fam = families.setdefault(name, (typ, doc, unit, {}))
                values = fam[3]
                combine = MERGE.get(name)
                for sname, labels, value in samples:
                    key = (sname, tuple(sorted(labels.items())))
                    old = values.get(key)
                    values[key] = value if old is None else \
                        combine(old, value) if combine is not None else old + value
        for name, (typ, doc, unit, values) in families.items():
            m = Metric(name, doc, typ, unit)
            for (sname, labels), value in values.items():
                m.add_sample(sname, dict(labels), value)
            yield m
