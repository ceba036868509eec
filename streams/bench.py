"""`rings bench`: how many sightings per second, how late an alert, side by side with peers.

One run, one topic of simulated traffic over the sample net, and on it:

- the transport ceiling (raw aiokafka consume + JSON decode), the framework ceiling (a bare
  Faust agent with default settings) and the strongest Python peer (Quix Streams counting
  per subject in RocksDB with a changelog): `streams.bench_peers`;
- `engine_eps`: the real worker (`rings worker`, a subprocess on a fresh topic prefix and
  data directory), every default rule, RocksDB state, alerts produced; timed from its first
  ingested sighting until its subject and site stages have taken in every sighting;
- `core_eps`: the detector core alone, as replay runs it, on the same sightings decoded in
  advance (`replay_eps` adds decoding);
- `alert_latency_ms`: the same worker, offered fresh traffic at a steady rate (2,000/s by
  default), a share of it watchlisted: from just before each sighting is produced to the
  receipt of its watchlist-hit alert on `alerts` (after an untimed warm-up, once the worker
  is idle);
- `engine_cpu_us_per_sighting`, `engine_cores`: what `engine_eps` cost in CPU, over the
  worker's processes (`rings worker`, its stage processes and its ingest process);
  `faust_baseline_cores`, `peer_cores`: the cores the Faust and Quix peers' processes kept
  busy (all their threads), so that rates are compared with what they cost;
- `processes`: the stage processes of the worker (`rings worker --processes`; by default
  one per core, at most one per partition);
  `latency_cpu_us_per_sighting`, `latency_cores`: the same over the latency phase (a
  steady rate, as in service: a few sightings per envelope);
- `rss_mb`: the worker's peak resident memory (VmHWM, its processes together), and
  `rss_mb_by_quarter` its RSS as
  a quarter, half, three quarters and all of the sightings were in (`rss_mb_by_tenth`: at
  each tenth; flat once the caches are full);
- `quiet_wait_s`: the seconds each timed phase waited for a quiet machine before it began
  (`quiet`);
- `alerts`: the worker's alerts in all; `alerts_before_latency` those counted before the
  latency phase (the throughput traffic's and the warm-up's). The total also counts the
  latency traffic's ordered rules, judged by the end or not depending on timing: it varied
  by 1 over 200,000-sighting runs and by 4 over 1,000,000, the count before the latency
  phase by 0 and 1 (where the watermark stands when the worker has settled decides a
  deadline or so).

Rates are medians where a figure is measured more than once; the machine is shared and
noisy, so ratios say more than absolute numbers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from rings.clock import Watermark
from rings.decode import Limits, decode_sightings
from rings.gctune import tune_for_throughput
from rings.net import Net
from rings.pipeline import Pipeline
from rings.ruleset import RuleSet
from rings.sim import SimConfig, Simulator
from rings.timefmt import format_ts
from rings.watchlist import load_watchlist_lines

from .config import ALERTS, SIGHTINGS, WATCHLIST, KafkaSettings
from .errors import StreamsError
from .kafka_io import (drop_topics, ensure_topics, publish_lines, subject_key_of,
                       wait_for_broker)
from .stage_process import processes_from_env

REPO = Path(__file__).resolve().parents[1]
LOCAL_KAFKA = REPO / "deploy" / "local-kafka"

TARGETS = {"core_eps": 100_000, "alert_latency_p99_ms": 50}


class BenchError(StreamsError):
    """A benchmark step failed (a child process, a deadline)."""


@dataclass(slots=True)
class BenchConfig:
    events: int = 200_000
    partitions: int = 4
    rate: float = 200.0                 # sightings per second of event time (simulated)
    latency_rate: float = 2000.0        # offered load of the latency phase, per second
    latency_seconds: float | None = None  # default: 20 s, less for small runs
    latency_listed_share: float = 0.02
    seed: int = 1
    peers: bool = True
    workers: int = 1                    # worker processes in one group
    processes: int | None = None        # stage processes per worker (None: its default)
    timeout: float = 600.0
    core_runs: int = 3


@dataclass(slots=True)
class Traffic:
    lines: list[bytes]
    watchlist: list[bytes]
    subjects: int
    vehicles: int
    end_ms: int                          # event time just after the last sighting


@dataclass
class Progress:
    say: Callable[[str], None] = field(default=lambda msg: None)


# ---------------------------------------------------------------------------- traffic

def make_traffic(net: Net, events: int, rate: float, seed: int, start_ms: int,
                 listed_share: float | None = None) -> Traffic:
    """Simulated sightings (JSON lines, event-time order) and their watchlist. At the default
    rate nearly every sighting is of a subject not seen before in the run, the hard case for
    state: 200,000 sightings hold ~190,000 distinct subjects.

    `listed_share`: instead of the simulator's watchlist (a share of its whole population,
    millions at high rates), list about this share of the subjects the traffic shows, so
    that as many sightings raise a watchlist-hit (the latency phase times those)."""
    cfg = SimConfig(rate=rate, duration_s=events / rate * 1.1 + 1, seed=seed,
                    start=format_ts(start_ms, 480))
    sim = Simulator(net, cfg)
    lines: list[bytes] = []
    subjects: set[tuple[str, str]] = set()
    vehicles = 0
    last = start_ms
    for rec in sim.sightings():
        lines.append(orjson.dumps(rec))
        s = rec["subject"]
        subjects.add((s["type"], s["id"]))
        vehicles += s["type"] == "vehicle"
        if len(lines) >= events:
            break
    if lines:
        from rings.timefmt import parse_ts
        last = parse_ts(orjson.loads(lines[-1])["ts"])[0]
    if listed_share is None:
        watchlist = [orjson.dumps(e) for e in sim.watchlist()]
    else:
        step = max(1, round(1 / listed_share))
        watchlist = [orjson.dumps({"subject": {"type": t, "id": i}, "list": "wanted",
                                   "severity": "high", "reason": "bench"})
                     for n, (t, i) in enumerate(sorted(subjects)) if n % step == 0]
    return Traffic(lines, watchlist, len(subjects), vehicles, last + 1)


# ---------------------------------------------------------------------------- core

def core_rates(net: Net, rules: RuleSet, traffic: Traffic, runs: int) -> dict[str, float]:
    """The core as replay runs it (batches of 1000, replay's watermark, in-memory state):
    `core_eps` on sightings decoded in advance, `decode_eps` for the decoding alone."""
    wl = load_watchlist_lines(traffic.watchlist, net.sites)
    tune_for_throughput()
    t0 = time.perf_counter()
    ok, _ = decode_sightings(traffic.lines, net.sites, Limits())
    decode_s = time.perf_counter() - t0
    sightings = [s for _, s in ok]
    times = []
    for _ in range(runs):
        pipe = Pipeline(net, rules, wl)
        wm = Watermark(rules.lateness_ms, idle_s=float("inf"))
        t0 = time.perf_counter()
        for i in range(0, len(sightings), 1000):
            batch = sightings[i:i + 1000]
            before = wm.value()
            for s in batch:
                wm.observe(0, s.ts)
            pipe.process(batch, before, wm.value())
        times.append(time.perf_counter() - t0)
    core_s = statistics.median(times)
    n = len(sightings)
    return {"core_eps": n / core_s, "decode_eps": len(traffic.lines) / decode_s,
            "replay_eps": n / (core_s + decode_s)}


# ---------------------------------------------------------------------------- broker

def ensure_broker(settings: KafkaSettings, explicit: bool, say: Callable[[str], None]) -> None:
    """Use the broker given; with none given and none answering, start the local one."""
    try:
        asyncio.run(wait_for_broker(settings, 3.0 if not explicit else 30.0))
        return
    except StreamsError:
        if explicit or not LOCAL_KAFKA.exists():
            raise
    say(f"no broker at {settings.broker}: starting the local one ({LOCAL_KAFKA})")
    subprocess.run([str(LOCAL_KAFKA), "up"], check=True, stdout=subprocess.DEVNULL)
    asyncio.run(wait_for_broker(settings, 60.0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- worker

class WorkerProcess:
    """`rings worker` on its own topic prefix, data directory and web port."""

    def __init__(self, settings: KafkaSettings, partitions: int, data_dir: str,
                 processes: int | None = None) -> None:
        os.makedirs(data_dir, exist_ok=True)
        self.port = free_port()
        self.log = open(os.path.join(data_dir, "worker.log"), "wb")
        env = {**os.environ, "RINGS_BROKER": settings.broker,
               "RINGS_TOPIC_PREFIX": settings.prefix, "RINGS_LOGLEVEL": "warning"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rings.cli", "worker", "--web-port", str(self.port),
             "--partitions", str(partitions), "--data-dir", os.path.join(data_dir, "state"),
             *(("--processes", str(processes)) if processes is not None else ())],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.data_dir = data_dir

    def metrics(self) -> dict[str, float]:
        """The worker's counters as {"name{labels}": value}; {} while it is not serving."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                        timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    @staticmethod
    def total(m: dict[str, float], name: str, **labels: str) -> float:
        want = [f'{k}="{v}"' for k, v in labels.items()]
        return sum(v for k, v in m.items() if (k == name or k.startswith(name + "{"))
                   and all(w in k for w in want))

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"the worker exited ({self.proc.returncode}); its log: "
                             f"{self.tail()}")

    def tail(self, n: int = 2000) -> str:
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read()[-n:].decode(errors="replace")

    # The worker is a process tree: `rings worker` and its ingest process (RINGS_INGEST).
    # Memory and CPU are the tree's: the sum of each process's own figure (for the peak, an
    # upper bound: the two peaks need not coincide).

    def _pids(self) -> list[int]:
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return [pid, *(int(c) for c in f.read().split())]
        except OSError:
            return [pid]

    def rss_mb(self) -> float:
        return sum(self._status(p, "VmRSS:") for p in self._pids())

    def peak_rss_mb(self) -> float:
        return sum(self._status(p, "VmHWM:") for p in self._pids())

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self._pids():
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, IndexError, ValueError):
                pass
        return total

    @staticmethod
    def _status(pid: int, field: str) -> float:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
                self.proc.wait(timeout=20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()


class WorkerGroup:
    """Several workers in one consumer group, seen as one: counters summed, memory the
    largest worker's (each is a process of its own, on a core of its own at best)."""

    def __init__(self, workers: list[WorkerProcess]) -> None:
        self.workers = workers

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for w in self.workers:
            for k, v in w.metrics().items():
                out[k] = out.get(k, 0.0) + v
        return out

    @staticmethod
    def total(m: dict[str, float], name: str, **labels: str) -> float:
        return WorkerProcess.total(m, name, **labels)

    def alive(self) -> None:
        for w in self.workers:
            w.alive()

    def rss_mb(self) -> float:
        return max(w.rss_mb() for w in self.workers)

    def peak_rss_mb(self) -> float:
        return max(w.peak_rss_mb() for w in self.workers)

    def cpu_seconds(self) -> float:
        return sum(w.cpu_seconds() for w in self.workers)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


def wait_until(pred: Callable[[], bool], deadline: float, what: str,
               check: Callable[[], None] = lambda: None, every: float = 0.05) -> float:
    while True:
        check()
        if pred():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(every)


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot; None where /proc/stat is missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)        # idle + iowait
    return sum(fields) - idle, sum(fields)


def quiet(deadline: float, below: float = 0.25, at_most: float = 20.0,
          every: float = 0.5) -> float:
    """Before a timed phase: write back what the last phase left in the page cache, and
    wait until the machine's CPUs are less than `below` busy over `every` seconds (at most
    `at_most`). Returns the seconds waited.

    On a 2-core machine the phases share the cores with the broker and the kernel: what a
    peer left to write back, or the broker still busy with its changelog, must not be
    measured against the next contender."""
    t0 = time.monotonic()
    os.sync()
    before = _cpu_times()
    if before is None:
        return time.monotonic() - t0
    while time.monotonic() - t0 < at_most and time.monotonic() < deadline:
        time.sleep(every)
        now = _cpu_times()
        assert now is not None
        busy, total = now[0] - before[0], now[1] - before[1]
        before = now
        if total > 0 and busy / total < below:
            break
    return time.monotonic() - t0


def last_rows_at(worker: "WorkerProcess | WorkerGroup") -> float:
    """When the subject and site stages last took in rows (wall clock, the latest over the
    workers)."""
    workers = worker.workers if isinstance(worker, WorkerGroup) else [worker]
    return max(v for w in workers for k, v in w.metrics().items()
               if k.startswith("rings_stage_last_rows_timestamp_seconds")
               and ('stage="subjects"' in k or 'stage="sites"' in k))


def engine_rate(worker: "WorkerProcess | WorkerGroup", traffic: Traffic, deadline: float) -> dict[str, float]:
    """Sightings per second through the worker's subject and site stages (the pair stage
    follows event time and sees only co-passes: a few per thousand sightings)."""
    n = len(traffic.lines)
    state: dict[str, float] = {}

    def started() -> bool:
        # From the first sighting a stage takes in, as the peers are timed from their first
        # message: the ingest (its own process) may have started a moment before the stage
        # agents had their partitions, and that start-up is not the rate.
        m = worker.metrics()
        return worker.total(m, "rings_stage_events_total", stage="subjects") > 0

    def done() -> bool:
        m = worker.metrics()
        state["subjects"] = worker.total(m, "rings_stage_events_total", stage="subjects")
        state["sites"] = worker.total(m, "rings_stage_events_total", stage="sites")
        return state["subjects"] >= n and state["sites"] >= traffic.vehicles

    rss: list[tuple[float, float]] = []

    def done_and_sample() -> bool:
        finished = done()
        rss.append((state.get("subjects", 0.0), worker.rss_mb()))
        return finished

    wait_until(started, deadline, "the worker's first sighting", worker.alive, 0.01)
    t0, cpu0, seen0 = time.time(), worker.cpu_seconds(), time.monotonic()
    # Polled slowly: a scrape of /metrics costs the worker 1 to 2 ms, and every 50 ms that
    # was 3 to 4% of its time. The end is exact anyway: the stages report when they last
    # took in rows.
    wait_until(done_and_sample, deadline, "the worker to take in every sighting",
               worker.alive, 0.25)
    cpu, seen = worker.cpu_seconds() - cpu0, time.monotonic() - seen0
    t1 = last_rows_at(worker)
    # Resident memory when a quarter, half, three quarters and all of the sightings were
    # in: flat once the caches are full and state expires in event time.
    def curve(parts: int) -> list[int | None]:
        out = []
        for i in range(1, parts + 1):
            at = [m for k, m in rss if k >= i / parts * n]
            out.append(round(at[0]) if at else None)
        return out
    return {"engine_eps": n / max(1e-9, t1 - t0), "engine_seconds": t1 - t0,
            # What the rate cost: CPU of the worker's processes (all workers, with their
            # ingest processes) per sighting, and the cores they kept busy on average.
            "engine_cpu_us_per_sighting": cpu / n * 1e6,
            "engine_cores": cpu / max(1e-9, seen),
            "rss_mb_by_quarter": curve(4), "rss_mb_by_tenth": curve(10)}


def settle(worker: "WorkerProcess | WorkerGroup", deadline: float, quiet_s: float = 2.0) -> None:
    """Wait until the worker's stages have taken nothing in for `quiet_s`: the latency
    phase must not queue behind the throughput phase's tail."""
    last: dict[str, float] = {}
    since = time.monotonic()
    while time.monotonic() - since < quiet_s:
        worker.alive()
        if time.monotonic() > deadline:
            raise BenchError("timed out waiting for the worker to settle")
        m = {k: v for k, v in worker.metrics().items()
             if k.startswith("rings_stage_events_total")}
        if m != last:
            last, since = m, time.monotonic()
        time.sleep(0.2)


async def latency_phase(settings: KafkaSettings, traffic: Traffic, rate: float,
                        seconds: float) -> dict[str, Any]:
    """Offer `traffic` at `rate`/s (ticks of 10 ms) and time each watchlist-hit alert from
    just before its sighting was produced to its receipt."""
    sent_at: dict[str, float] = {}
    got: list[float] = []
    consumer = AIOKafkaConsumer(settings.topic(ALERTS), bootstrap_servers=settings.broker,
                                auto_offset_reset="latest", enable_auto_commit=False,
                                group_id=None, **settings.client_options)
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker, linger_ms=0,
                                **settings.client_options)
    await consumer.start()
    await producer.start()
    # Make sure the consumer has its position before anything is sent.
    for tp in consumer.assignment():
        await consumer.position(tp)
    stop = asyncio.Event()

    async def receive() -> None:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            now = time.monotonic()
            for msgs in batch.values():
                for m in msgs:
                    a = orjson.loads(m.value)
                    if a.get("rule") == "watchlist-hit":
                        t = sent_at.get(a["evidence"][-1])
                        if t is not None:
                            got.append((now - t) * 1000)

    receiver = asyncio.create_task(receive())
    topic = settings.topic(SIGHTINGS)
    total = min(len(traffic.lines), int(rate * seconds))
    tick = 0.01
    per_tick = rate * tick
    t0 = time.monotonic()
    sent = 0
    try:
        while sent < total:
            due = min(total, int((time.monotonic() - t0) / tick * per_tick + per_tick))
            while sent < due:
                line = traffic.lines[sent]
                sid = orjson.loads(line)["id"]
                sent_at[sid] = time.monotonic()
                await producer.send(topic, line, key=subject_key_of(line))
                sent += 1
            await asyncio.sleep(max(0.0, t0 + (sent / per_tick) * tick - time.monotonic()))
        offered = sent / (time.monotonic() - t0)
        await producer.flush()
        await asyncio.sleep(2.0)        # the last alerts, well within any sane latency
    finally:
        stop.set()
        await receiver
        await producer.stop()
        await consumer.stop()
    q = sorted(got)

    def pct(p: float) -> float | None:
        return round(q[min(len(q) - 1, int(p / 100 * len(q)))], 2) if q else None

    return {"p50": pct(50), "p95": pct(95), "p99": pct(99), "max": round(q[-1], 2) if q else
            None, "alerts": len(q), "offered_eps": round(offered), "sightings": sent}


# ---------------------------------------------------------------------------- run

def run_bench(settings: KafkaSettings, net: Net, rules: RuleSet, cfg: BenchConfig,
              explicit_broker: bool, say: Callable[[str], None] = lambda m: None
              ) -> dict[str, Any]:
    deadline = time.monotonic() + cfg.timeout
    ensure_broker(settings, explicit_broker, say)
    run_id = f"bench-{int(time.time())}-{os.getpid()}-"
    bs = dataclasses.replace(settings, prefix=settings.prefix + run_id)
    lat_s = cfg.latency_seconds if cfg.latency_seconds is not None else \
        max(3.0, min(20.0, cfg.events / cfg.latency_rate / 2))
    now_ms = int(time.time() * 1000)
    say(f"simulating {cfg.events:,} sightings (and {int(lat_s * cfg.latency_rate):,} for "
        "the latency phase)")
    span_ms = int(cfg.events / cfg.rate * 1000)
    traffic = make_traffic(net, cfg.events, cfg.rate, cfg.seed, now_ms - span_ms - 600_000)
    live = make_traffic(net, int((lat_s + 2) * cfg.latency_rate) + 1, cfg.latency_rate,
                        cfg.seed + 1, max(traffic.end_ms, now_ms),
                        cfg.latency_listed_share)
    result: dict[str, Any] = {"events": len(traffic.lines), "subjects": traffic.subjects,
                              "partitions": cfg.partitions, "cpus": os.cpu_count()}

    say("core: the detector core alone, as replay runs it")
    result.update({k: round(v) for k, v in core_rates(net, rules, traffic,
                                                        cfg.core_runs).items()})

    from .worker import topic_specs
    asyncio.run(ensure_topics(bs, topic_specs(cfg.partitions)))
    say(f"publishing to {bs.topic(SIGHTINGS)} ({cfg.partitions} partitions)")
    asyncio.run(publish_lines(bs, WATCHLIST, traffic.watchlist + live.watchlist))
    asyncio.run(publish_lines(bs, SIGHTINGS, traffic.lines))

    waited: dict[str, float] = {}       # quiet() before each timed phase
    if cfg.peers:
        from . import bench_peers as peers
        topic = SIGHTINGS           # bench_peers adds the prefix, as kafka_io does
        n = len(traffic.lines)
        say("aiokafka: raw consume + decode")
        waited["aiokafka"] = quiet(deadline)
        result["aiokafka_eps"] = round(peers.aiokafka_eps(bs, topic, n))
        say("faust: a bare agent with default settings")
        waited["faust"] = quiet(deadline)
        faust = peers.faust_baseline(bs, topic, n)
        result["faust_baseline_eps"] = round(faust["eps"])
        result["faust_baseline_cores"] = round(faust["cores"], 2)
        say("quix streams: a per-subject count in RocksDB with changelog")
        waited["quix"] = quiet(deadline)
        quix = peers.quix_count(bs, topic, n)
        result["peer_eps"] = round(quix["eps"])
        result["peer_cores"] = round(quix["cores"], 2)

    waited["engine"] = quiet(deadline)
    result["quiet_wait_s"] = {k: round(v, 1) for k, v in waited.items()}
    tmp = tempfile.mkdtemp(prefix="rings-bench-")
    worker = WorkerGroup([WorkerProcess(bs, cfg.partitions, os.path.join(tmp, f"w{i}"),
                                        cfg.processes) for i in range(cfg.workers)])
    result["workers"] = cfg.workers
    result["processes"] = cfg.processes if cfg.processes is not None else \
        processes_from_env(cfg.partitions)
    try:
        say("engine: the worker, every default rule" if cfg.workers == 1 else
            f"engine: {cfg.workers} workers in one group, every default rule")
        for k, v in engine_rate(worker, traffic, deadline).items():
            result[k] = round(v, 2) if k.endswith(("seconds", "cores")) else \
                v if isinstance(v, list) else round(v, 1) if k.endswith("sighting") \
                else round(v)
        # Warm-up, untimed: the first seconds of the live traffic move event time past
        # the throughput traffic, whose last `lateness` the ordered rules then judge in
        # one go; the timed part must not queue behind that.
        warm = int(2 * cfg.latency_rate)
        asyncio.run(publish_lines(bs, SIGHTINGS, live.lines[:warm]))
        live.lines = live.lines[warm:]
        say("waiting for the worker to settle (warm-up, pair stage, changelogs)")
        settle(worker, deadline)
        result["alerts_before_latency"] = int(worker.total(worker.metrics(),
                                                           "rings_alerts_total"))
        say(f"latency: {cfg.latency_rate:,.0f} sightings/s for {lat_s:.0f} s")
        t0, cpu0 = time.monotonic(), worker.cpu_seconds()
        lat = result["alert_latency_ms"] = asyncio.run(latency_phase(bs, live,
                                                                     cfg.latency_rate, lat_s))
        # What the worker costs at a steady rate, the way it runs in service (its stages
        # get a few sightings an envelope, where a backlog gives them thousands): from the
        # first sighting offered to the end of the phase's wait for the last alerts.
        cpu, span = worker.cpu_seconds() - cpu0, time.monotonic() - t0
        result["latency_cpu_us_per_sighting"] = round(cpu / max(1, lat["sightings"]) * 1e6, 1)
        result["latency_cores"] = round(cpu / max(1e-9, span), 2)
        worker.alive()
        m = worker.metrics()
        result["alerts"] = int(worker.total(m, "rings_alerts_total"))
        result["rss_mb"] = round(worker.peak_rss_mb())      # the largest worker's
    finally:
        worker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        asyncio.run(drop_topics(bs))
    result["ratios"] = ratios(result)
    result["targets"] = targets(result)
    return result


def ratios(r: dict[str, Any]) -> dict[str, float]:
    out = {}
    for a, b in (("engine_eps", "peer_eps"), ("engine_eps", "faust_baseline_eps"),
                 ("peer_eps", "faust_baseline_eps"), ("core_eps", "engine_eps"),
                 ("aiokafka_eps", "engine_eps")):
        if r.get(a) and r.get(b):
            out[f"{a.removesuffix('_eps')}/{b.removesuffix('_eps')}"] = round(r[a] / r[b], 2)
    return out


def targets(r: dict[str, Any]) -> dict[str, bool | None]:
    lat = (r.get("alert_latency_ms") or {}).get("p99")
    def vs(a: str, b: str, k: float = 1.0) -> bool | None:
        return None if not (r.get(a) and r.get(b)) else r[a] >= k * r[b]
    return {
        "engine_eps >= peer_eps": vs("engine_eps", "peer_eps"),
        "engine_eps >= 2 x faust_baseline_eps": vs("engine_eps", "faust_baseline_eps", 2.0),
        "core_eps >= 100000": r.get("core_eps", 0) >= TARGETS["core_eps"],
        "alert p99 <= 50 ms": None if lat is None else lat <= TARGETS["alert_latency_p99_ms"],
    }


def render(r: dict[str, Any]) -> str:
    """The readable table: each rate, and how it compares."""
    rows = [("aiokafka_eps", "raw aiokafka consume + JSON decode (transport ceiling)"),
            ("faust_baseline_eps", "bare Faust agent, default settings (framework ceiling)"),
            ("peer_eps", "Quix Streams, per-subject count in RocksDB + changelog"),
            ("engine_eps", "rings worker, every default rule, RocksDB, alerts"),
            ("core_eps", "rings core alone (replay path), decoded sightings"),
            ("replay_eps", "rings replay: decode + core")]
    lines = [f"rings bench: {r['events']:,} sightings, {r['subjects']:,} distinct subjects, "
             f"{r['partitions']} partitions, {r['cpus']} CPUs, "
             f"{r.get('processes', 1)} stage processes a worker", ""]
    cores = {"faust_baseline_eps": "faust_baseline_cores", "peer_eps": "peer_cores",
             "engine_eps": "engine_cores"}
    for key, what in rows:
        if key in r:
            busy = r.get(cores.get(key, ""))
            busy_s = f"{busy:4.2f} cores" if busy is not None else " " * 10
            lines.append(f"  {key:<20} {r[key]:>10,} /s  {busy_s}   {what}")
    lat = r.get("alert_latency_ms") or {}
    if lat:
        lines += ["", f"  alert latency at {lat.get('offered_eps', 0):,}/s offered "
                  f"({lat.get('alerts', 0)} watchlist-hits): p50 {lat.get('p50')} ms, "
                  f"p95 {lat.get('p95')} ms, p99 {lat.get('p99')} ms, max {lat.get('max')} ms"]
    if "alerts" in r:
        lines.append(f"  worker alerts: {r['alerts']:,} ({r.get('alerts_before_latency', 0):,} "
                     "before the latency phase)")
    if "engine_cpu_us_per_sighting" in r:
        lines.append(f"  worker CPU: {r['engine_cpu_us_per_sighting']} µs a sighting, "
                     f"{r['engine_cores']} cores busy on average (worker, its stage and "
                     "ingest processes)")
    if "latency_cores" in r:
        lines.append(f"  worker CPU at {lat.get('offered_eps', 0):,}/s offered: "
                     f"{r['latency_cpu_us_per_sighting']} µs a sighting, "
                     f"{r['latency_cores']} cores busy on average")
    if "rss_mb" in r:
        lines.append(f"  worker peak memory (VmHWM, its processes together): "
                     f"{r['rss_mb']} MB")
    if r.get("quiet_wait_s"):
        lines.append("  waited for a quiet machine before each phase: " + ", ".join(
            f"{k} {v} s" for k, v in r["quiet_wait_s"].items()))
    if r.get("ratios"):
        lines += ["", "  ratios: " + ", ".join(f"{k} {v}x" for k, v in r["ratios"].items())]
    if r.get("targets"):
        lines += ["", "  targets:"]
        for k, v in r["targets"].items():
            lines.append(f"    {'met   ' if v else 'MISSED' if v is False else 'n/a   '} {k}")
    return "\n".join(lines)
