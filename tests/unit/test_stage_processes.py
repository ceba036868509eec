"""A worker's stage processes (streams.stage_process): how many, and their metrics merged
into the worker's one /metrics (the processes themselves, killed and started again, are
tested on the real broker in tests/integration/test_faults.py)."""

from __future__ import annotations

import os

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.errors import ConfigError
from streams.metrics import Metrics, merged, snapshot
from streams.stage_process import processes_from_env


def test_processes_default_to_the_usable_cores_at_most_the_partitions() -> None:
    cores = len(os.sched_getaffinity(0))
    assert processes_from_env(64, {}) == min(cores, 64)
    assert processes_from_env(1, {}) == 1
    assert processes_from_env(4, {"RINGS_PROCESSES": "3"}) == 3
    # A process without partitions would only wait: never more than the partitions.
    assert processes_from_env(2, {"RINGS_PROCESSES": "8"}) == 2
    for raw in ("two", "0", "-1"):
        with pytest.raises(ConfigError, match="RINGS_PROCESSES"):
            processes_from_env(4, {"RINGS_PROCESSES": raw})


def _samples(text: bytes) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text.decode()) for s in fam.samples}


def test_metrics_of_the_processes_add_up_into_one_exposition() -> None:
    own, child = Metrics(), Metrics()
    own.alerts.labels("watchlist-hit", "high").inc(2)
    child.alerts.labels("watchlist-hit", "high").inc(3)
    child.alerts.labels("convoy", "medium").inc()
    own.latency.observe(0.003)
    child.latency.observe(0.2)
    own.stage_events.labels("subjects").inc(100)
    child.stage_events.labels("subjects").inc(50)
    own.ingest_rss.set(4e7)                       # the worker's own process only
    own.stage_watermark.labels("subjects").set(1_800_000_100)
    child.stage_watermark.labels("subjects").set(1_800_000_000)
    own.stage_rows_at.labels("subjects").set(1_900_000_000)
    child.stage_rows_at.labels("subjects").set(1_900_000_005)
    own.rules_version.labels("abc").set(1)
    child.rules_version.labels("abc").set(1)
    for m in (own, child):              # every process reads the rules topic
        m.rules_reloads.labels("refused").inc()

    s = _samples(generate_latest(merged([snapshot(own.registry),
                                         snapshot(child.registry)])))
    assert s[("rings_alerts_total", (("rule", "watchlist-hit"), ("severity", "high")))] == 5
    assert s[("rings_alerts_total", (("rule", "convoy"), ("severity", "medium")))] == 1
    assert s[("rings_stage_events_total", (("stage", "subjects"),))] == 150
    assert s[("rings_alert_latency_seconds_count", ())] == 2
    assert s[("rings_alert_latency_seconds_bucket", (("le", "0.005"),))] == 1
    assert s[("rings_alert_latency_seconds_bucket", (("le", "0.25"),))] == 2
    assert s[("rings_alert_latency_seconds_sum", ())] == pytest.approx(0.203)
    assert s[("rings_ingest_process_resident_memory_bytes", ())] == 4e7
    # The worker is as far as its slowest process, and active when any of them was.
    assert s[("rings_stage_watermark_seconds", (("stage", "subjects"),))] == 1_800_000_000
    assert s[("rings_stage_last_rows_timestamp_seconds", (("stage", "subjects"),))] == \
        1_900_000_005
    assert s[("rings_rules_version_info", (("version", "abc"),))] == 1
    assert s[("rings_rules_reloads_total", (("result", "refused"),))] == 1
    # Memory and CPU are the processes' together.
    rss = [v for (n, _), v in _samples(generate_latest(own.registry)).items()
           if n == "process_resident_memory_bytes"][0]
    assert s[("process_resident_memory_bytes", ())] == pytest.approx(2 * rss, rel=0.2)


def test_a_child_that_did_not_answer_leaves_the_worker_s_own_numbers() -> None:
    own = Metrics()
    own.alerts.labels("watchlist-hit", "high").inc(2)
    s = _samples(generate_latest(merged([snapshot(own.registry), []])))
    assert s[("rings_alerts_total", (("rule", "watchlist-hit"), ("severity", "high")))] == 2
