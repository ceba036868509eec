"""`rings bench` as CI runs it: a small run on the real broker, checked for its shape.

Benchmarks are not timed tests: nothing here judges a figure, only that every measurement
was made and is plausible, so that a broken step (a peer that never ran, a worker that
raised no alert) fails here rather than in a release note."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson

from streams.stage_process import processes_from_env

from .harness import ROOT, Kafka

RATES = ("aiokafka_eps", "faust_baseline_eps", "peer_eps", "engine_eps", "core_eps",
         "replay_eps", "decode_eps")


def test_bench_reports_every_figure(kafka: Kafka) -> None:
    env = {**os.environ, "RINGS_BROKER": kafka.broker, "RINGS_TOPIC_PREFIX": kafka.prefix}
    r = subprocess.run([sys.executable, "-m", "rings.cli", "bench", "--events", "20000",
                        "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=600)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = orjson.loads(r.stdout)
    assert out["events"] == 20000
    assert 15000 < out["subjects"] <= 20000          # nearly every sighting a new subject
    for key in RATES:
        assert isinstance(out[key], int) and out[key] > 0, (key, out.get(key))
    # The transport ceiling is above what anything built on it does.
    assert out["aiokafka_eps"] > out["engine_eps"]
    lat = out["alert_latency_ms"]
    assert lat["alerts"] > 50 and lat["sightings"] > 0
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert out["alerts"] >= lat["alerts"]
    # Counted before the latency phase: the throughput traffic's and the warm-up's alerts
    # (the warm-up's watchlist-hits at least), none of the latency phase's.
    assert 0 < out["alerts_before_latency"] <= out["alerts"] - lat["alerts"]
    assert out["rss_mb"] > 50
    # What the worker cost, at full speed and at the steady rate (its processes busy
    # somewhere between a little and every core of the machine).
    for cores in (out["engine_cores"], out["latency_cores"], out["peer_cores"],
                  out["faust_baseline_cores"]):
        assert 0 < cores <= out["cpus"] + 0.5
    # ...and the worker's stage processes: by default one per core, at most a partition
    # each.
    assert out["processes"] == processes_from_env(out["partitions"])
    assert out["engine_cpu_us_per_sighting"] > 0 and out["latency_cpu_us_per_sighting"] > 0
    # The memory curve: the worker's RSS at each quarter and tenth of the sightings (the
    # last of both is the same sample, taken when the last sighting was in).
    assert len(out["rss_mb_by_quarter"]) == 4 and len(out["rss_mb_by_tenth"]) == 10
    assert out["rss_mb_by_tenth"][-1] == out["rss_mb_by_quarter"][-1] > 50
    assert set(out["targets"]) == {"engine_eps >= peer_eps",
                                   "engine_eps >= 2 x faust_baseline_eps",
                                   "core_eps >= 100000", "alert p99 <= 50 ms"}
    assert all(isinstance(v, bool) for v in out["targets"].values())
    assert out["ratios"]["engine/peer"] == round(out["engine_eps"] / out["peer_eps"], 2)
    # The run removes its topics from the broker.
    left = [t for t in kafka.topics() if t.startswith(kafka.prefix + "bench-")]
    assert left == [], left
