"""Prometheus metrics of the worker. Labels come from the net and the rules, never from
subjects: no plate or person id may ever become a label value."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.sightings = Counter("rings_sightings_total",
                                 "Valid sightings ingested, by site type and ring of the site.",
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
        self.stage_watermark = Gauge(
            "rings_stage_watermark_seconds",
            "Lowest event-time watermark over this worker's partitions of a stage (subjects, "
            "sites, pairs): ordered rules have judged everything before it.",
            ["stage"], registry=r)
        self.stage_events = Counter(
            "rings_stage_events_total",
            "Items a stage of this worker has taken in (sightings for subjects and sites, "
            "co-passes for pairs), repeats included.", ["stage"], registry=r)
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
        self.rules_version = Gauge("rings_rules_version_info", "The active rule set.",
                                   ["version"], registry=r)
