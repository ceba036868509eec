"""Faults survived (issue 8): the broker going away and coming back under a running worker,
a worker of two killed with SIGKILL, a consumer of `alerts` that does not keep up, and a
worker's own ingest or stage process killed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Iterator

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from streams.children import process_name

from .harness import Kafka, PrivateBroker, Worker, one_id_per_partition, wait_until
from .test_replay_equals_worker import END, _canon, rings
from .test_scale_out import barrier_all, check_alive, settled, watchlist_everywhere

WANTED = {"type": "vehicle", "id": "蒙K3X521"}


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    b = PrivateBroker(tmp_path / "kafka")
    b.up()
    yield b
    b.down(wipe=True)


def sighting(sid: str, ts: str = "2026-11-29T12:30:00+08:00") -> dict:
    return {"id": sid, "ts": ts, "site": "CP01", "dir": "in", "subject": WANTED}


def hit_ids(kafka: Kafka) -> set[str]:
    return {a["evidence"][0] for a in kafka.alerts() if a["rule"] == "watchlist-hit"}


def test_the_broker_restarts_under_a_running_worker(own_broker: PrivateBroker, prefix: str,
                                                    tmp_path: Path) -> None:
    kafka = Kafka(own_broker.address, prefix)
    worker = Worker(own_broker.address, prefix, tmp_path / "data", tmp_path / "w.log")
    try:
        worker.wait_ready()
        kafka.send_json("watchlist", [{"subject": WANTED, "list": "wanted",
                                       "severity": "critical"}])
        kafka.barrier(worker)
        before = [sighting(f"before-{i}") for i in range(200)]
        kafka.send_json("sightings", before)
        own_broker.down()               # some of them may not be processed yet

        # The worker notices, and waits for the broker: it neither exits nor restarts.
        pid = worker.proc.pid
        wait_until(lambda: "onnect" in worker.log_tail(200) or not worker.alive, 60,
                   "the worker to notice the broker is gone")
        assert worker.alive, worker.log_tail()

        own_broker.up()
        after = [sighting(f"after-{i}") for i in range(200)]
        kafka.send_json("sightings", after)
        kafka.barrier(worker, timeout=180)
        assert worker.alive and worker.proc.pid == pid
        # Nothing lost: every sighting, from before the outage and after it, alerted.
        got = hit_ids(kafka)
        assert {s["id"] for s in before + after} <= got
        assert worker.get("/ready")[0] == 200
    finally:
        worker.stop()


def test_a_worker_killed_hands_its_partitions_to_the_other(kafka: Kafka, start_worker,
                                                           tmp_path: Path) -> None:
    day, watchlist = tmp_path / "day.jsonl", tmp_path / "wl.jsonl"
    rings("simulate", "--rate", "1.5", "--duration", "43200", "--seed", "11",
          "--watch-fraction", "0.01", "--plant", "all", "--cases", "2",
          "--truth", str(tmp_path / "truth.jsonl"), "-o", str(day),
          "--watchlist-out", str(watchlist))
    lines = day.read_bytes().splitlines()
    w1, w2 = start_worker("w1"), start_worker("w2")
    wait_until(lambda: settled(kafka, [w1, w2]), 90, "both workers to share the partitions")
    kafka.send_json("watchlist", [orjson.loads(x) for x in watchlist.read_bytes().splitlines()])
    barrier_all(kafka, [w1, w2], ts="2026-11-28T23:00:00+08:00")
    watchlist_everywhere(kafka, [w1, w2], ts="2026-11-28T23:00:00+08:00")

    half = len(lines) // 2
    kafka.send_json("sightings", [orjson.loads(x) for x in lines[:half]])
    w2.stop(signal.SIGKILL)           # mid-stream: part of the first half may be unapplied
    kafka.send_json("sightings", [orjson.loads(x) for x in lines[half:]])
    # The survivor takes over w2's partitions, their tables restored from the changelogs.
    barrier_all(kafka, [w1], timeout=400, ts=END["ts"], judged="2026-11-30T01:00:00+08:00")
    check_alive([w1])
    streamed = kafka.alerts()

    day.write_bytes(day.read_bytes() + orjson.dumps(END) + b"\n")
    replayed = [orjson.loads(x) for x in
                rings("replay", str(day), "--watchlist", str(watchlist)).splitlines()]
    # At least once: an alert sent again after the kill is the same alert (same id, same
    # content); consumers deduplicate by alert_id. After that, exactly replay's alerts.
    by_id: dict[str, bytes] = {}
    for a, c in zip(streamed, _canon_each(streamed)):
        assert by_id.setdefault(a["alert_id"], c) == c, "an alert id with two contents"
    got, want = set(by_id.values()), set(_canon(replayed))
    assert got == want, (f"only streamed: {sorted(got - want)[:5]}\n"
                         f"only replayed: {sorted(want - got)[:5]}")
    assert len(by_id) == len(replayed)
    assert len({a["rule"] for a in replayed}) == 8


def _canon_each(alerts: list[dict]) -> list[bytes]:
    return [orjson.dumps({k: v for k, v in a.items() if k != "emitted"},
                         option=orjson.OPT_SORT_KEYS) for a in alerts]


def test_a_slow_consumer_of_alerts_does_not_slow_detection(kafka: Kafka, start_worker) -> None:
    worker = start_worker()
    kafka.send_json("watchlist", [{"subject": WANTED, "list": "wanted", "severity": "high"}])
    kafka.barrier(worker)

    # A command centre that joined the alerts topic and then reads one alert a second.
    stop = asyncio.Event()
    read: list[int] = []

    async def slow_centre() -> None:
        c = AIOKafkaConsumer(kafka.t("alerts"), bootstrap_servers=kafka.broker,
                             group_id=kafka.t("slow-centre"), auto_offset_reset="earliest")
        await c.start()
        try:
            while not stop.is_set():
                got = await c.getmany(timeout_ms=200, max_records=1)
                read.extend(1 for msgs in got.values() for _ in msgs)
                await asyncio.sleep(1.0)
        finally:
            await c.stop()

    async def run() -> float:
        task = asyncio.create_task(slow_centre())
        await asyncio.sleep(0)
        t0 = time.monotonic()
        await asyncio.to_thread(kafka.send_json, "sightings",
                                [sighting(f"burst-{i}") for i in range(3000)])
        await asyncio.to_thread(wait_until, lambda: len(hit_ids(kafka)) >= 3000, 120,
                                "every sighting of the burst to alert")
        took = time.monotonic() - t0
        stop.set()
        await task
        return took

    took = asyncio.run(run())
    # Every alert was raised while the centre had read only a handful: detection does not
    # wait for consumers (Kafka keeps the backlog for them).
    assert len(read) < 300 and took < 120, (len(read), took)
    assert worker.alive


def _children(pid: int, name: str = "rings-ingest") -> list[int]:
    """The worker's child processes of that name (its ingest process, `rings-stages-N`
    its stage processes; multiprocessing also starts a resource tracker)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids = [int(c) for c in f.read().split()]
    except OSError:
        return []
    return [c for c in pids if process_name(c) == name]


def _metric(worker: Worker, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in worker.metrics().splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def test_the_ingest_process_killed_is_started_again(kafka: Kafka, start_worker) -> None:
    """The ingest runs in a child process of the worker (RINGS_INGEST=process, the
    default). Killed, it is started again by the worker, which itself stays up, and reads
    on from its committed offsets: nothing is lost, and its counts still reach /metrics."""
    worker = start_worker()
    kafka.send_json("watchlist", [{"subject": WANTED, "list": "wanted", "severity": "high"}])
    kafka.barrier(worker)
    first = _children(worker.proc.pid)
    assert len(first) == 1, first
    before = [sighting(f"before-{i}") for i in range(300)]
    kafka.send_json("sightings", before)
    os.kill(first[0], signal.SIGKILL)  # some of them may not be ingested yet
    after = [sighting(f"after-{i}") for i in range(300)]
    kafka.send_json("sightings", after)
    wait_until(lambda: _children(worker.proc.pid) not in ([], first), 60,
               "the worker to start its ingest process again")
    kafka.barrier(worker, timeout=120)
    assert worker.alive
    assert {s["id"] for s in before + after} <= hit_ids(kafka)
    assert "the rings-ingest process exited" in worker.log_tail(400)
    # The new process's counts are forwarded: at least every sighting it read again.
    wait_until(lambda: _metric(worker, "rings_sightings_total") >= len(after), 30,
               "the restarted ingest's count in /metrics")
    assert _metric(worker, "rings_ingest_process_cpu_seconds_total") > 0
    assert _metric(worker, "rings_ingest_process_resident_memory_bytes") > 10e6
    assert worker.get("/ready")[0] == 200
    # Stopping the worker stops its ingest process too.
    child = _children(worker.proc.pid)[0]
    worker.stop()
    wait_until(lambda: not os.path.exists(f"/proc/{child}") or
               open(f"/proc/{child}/stat").read().split()[2] == "Z", 30,
               "the ingest process to stop with the worker")


def test_a_stage_process_killed_is_started_again(kafka: Kafka, start_worker) -> None:
    """A worker's stages run in several processes (streams.stage_process). One killed is
    started again by the worker, which stays up and ready for its operator: the group
    gives the dead member's partitions to the others, then a share back to the new one,
    and every sighting still raises its alert (at least once), whichever process held its
    partition when."""
    worker = start_worker("w1", "--processes", "2")
    vehicles = one_id_per_partition("vehicle", "STAGEKILL-")
    kafka.send_json("watchlist", [{"subject": {"type": "vehicle", "id": v}, "list": "wanted",
                                   "severity": "high"} for v in vehicles])
    kafka.barrier(worker)
    [first] = _children(worker.proc.pid, "rings-stages-1")

    def traffic(tag: str) -> list[dict]:
        return [{"id": f"{tag}-{p}-{i}", "ts": "2026-11-29T12:30:00+08:00", "site": "CP01",
                 "dir": "in", "subject": {"type": "vehicle", "id": v}}
                for p, v in enumerate(vehicles) for i in range(100)]

    before, after = traffic("before"), traffic("after")
    kafka.send_json("sightings", before)
    os.kill(first, signal.SIGKILL)  # some of them may not be judged yet
    kafka.send_json("sightings", after)
    wait_until(lambda: _children(worker.proc.pid, "rings-stages-1") not in ([], [first]), 60,
               "the worker to start its stage process again")
    kafka.barrier(worker, timeout=180)
    assert worker.alive
    assert {s["id"] for s in before + after} <= hit_ids(kafka)
    assert "the rings-stages-1 process exited" in worker.log_tail(2000)
    # Ready again once the new process holds partitions, and the worker's /metrics has
    # its numbers again (the two processes' counts added up).
    wait_until(lambda: worker.get("/ready")[0] == 200, 120, "the worker to be ready again")
    assert _metric(worker, "rings_stage_events_total") >= len(before) + len(after)
    # Stopping the worker stops its stage process too.
    child = _children(worker.proc.pid, "rings-stages-1")[0]
    worker.stop()
    wait_until(lambda: not os.path.exists(f"/proc/{child}") or
               open(f"/proc/{child}/stat").read().split()[2] == "Z", 30,
               "the stage process to stop with the worker")
