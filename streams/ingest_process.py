"""The ingest in a process of its own, beside the worker's stages.

The ingest (decode, validate, route into envelopes: `streams.ingest`) holds no state but
its consumer offsets and talks to the stages only through Kafka, so it can run anywhere.
In the worker's own process it took a fifth of the one core the worker can use (Python
runs one thread at a time): profiled with py-spy over a whole bench run, 20% of the
worker's samples, 9 µs of CPU a sighting. In a child process it runs on another core, and
the stages get that fifth back.

The worker stays one unit for its operator: it starts the child, stops it, starts it again
if it dies, and forwards what the child counts (`rings_sightings_total`, the ingest's DLQ
reasons, the watermark, the consumer lag, its CPU and memory) into the worker's own
`/metrics`. A rule set pushed while running reaches the child over the same pipe. The child
stops when the worker does, also when the worker is killed (the pipe closes, and on Linux
the kernel sends it SIGTERM).

`RINGS_INGEST=inline` keeps the ingest in the worker's process (a one-core machine gains
nothing from a second process).
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from mode import Service

from rings.decode import Limits
from rings.net import Net
from rings.pseudonym import Pseudonymizer

from .config import KafkaSettings
from .errors import ConfigError
from .metrics import Metrics

log = logging.getLogger("rings.ingest")
REPORT_S = 0.1              # seconds between the child's reports
RESTART_S = (1.0, 30.0)     # first and longest wait before starting a dead child again
STOP_S = 15.0               # how long a stopping child may take to commit and close
MODES = ("process", "inline")


def mode_from_env(env: dict[str, str] | None = None) -> str:
    """RINGS_INGEST: `process` (default) or `inline`."""
    raw = (env if env is not None else os.environ).get("RINGS_INGEST", "process").strip()
    if raw not in MODES:
        raise ConfigError(f"RINGS_INGEST must be one of {', '.join(MODES)}, not {raw!r}")
    return raw


@dataclass(slots=True)
class IngestConfig:
    """What the child needs to build its IngestService; it crosses the process boundary
    (pickled), so settings come without their SSLContext (`KafkaSettings.portable`)."""

    settings: KafkaSettings
    net: Net
    lateness_ms: int
    partitions: int
    group_id: str
    limits: Limits
    pseudonyms: Pseudonymizer | None
    loglevel: str = "info"
    log_format: str = "text"

    def service(self, metrics: Metrics, **kw: Any) -> Any:
        """The IngestService this describes, in this process (the child's, or the worker's
        own with RINGS_INGEST=inline)."""
        from .ingest import IngestService

        # by_site always: a rule set pushed later may enable convoy.
        return IngestService(self.settings.restored(), self.net, self.lateness_ms,
                             self.partitions, group_id=self.group_id, metrics=metrics,
                             limits=self.limits, by_site=True, pseudonyms=self.pseudonyms,
                             **kw)


class IngestProcess(Service):
    """The worker's side: the child, its supervision, and what it reported last. Offers
    what the worker reads of an inline IngestService (`started_consuming`, `lag`,
    `use_rules`)."""

    def __init__(self, config: IngestConfig, metrics: Metrics, **kw: Any) -> None:
        super().__init__(**kw)
        self.config = config
        self.metrics = metrics
        self.started_consuming = False
        self.lag: dict[tuple[str, int], int] = {}
        self.restarts = 0
        self._proc: Any = None
        self._conn: Connection | None = None
        self._generation = 0
        self._counted: dict[tuple[str, tuple[str, ...]], float] = {}

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        self._spawn()

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._next_generation()
        proc = ctx.Process(target=child_main, args=(self.config, child, self._generation),
                           name="rings-ingest", daemon=True)
        proc.start()
        child.close()                    # the child's end lives in the child only
        self._proc, self._conn = proc, parent
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_report)
        log.info("ingest process started (pid %d)", proc.pid)

    def _next_generation(self) -> None:
        """A new child: its totals start from zero, and reports of the old one are
        ignored."""
        self._generation += 1
        self._counted.clear()

    def _drop_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                asyncio.get_running_loop().remove_reader(conn.fileno())
            except (ValueError, OSError):
                pass
            conn.close()

    async def on_stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if self._conn is not None and proc.is_alive():
            try:
                self._conn.send(("stop", None))
            except OSError:
                pass
        deadline = time.monotonic() + STOP_S
        while proc.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.is_alive():
            log.warning("the ingest process did not stop within %.0f s; killing it", STOP_S)
            proc.kill()
            proc.join(5)
        self._drop_conn()

    @Service.task
    async def _supervise(self) -> None:
        """A dead child is started again, after a wait that doubles while it keeps dying
        (its offsets are committed only after its envelopes are acknowledged, so a new one
        reads on from there: at least once)."""
        wait = RESTART_S[0]
        while not self.should_stop:
            await self.sleep(0.5)
            proc = self._proc
            if proc is None or proc.is_alive() or self.should_stop:
                if proc is not None and proc.is_alive() and self.started_consuming:
                    wait = RESTART_S[0]
                continue
            log.error("the ingest process exited (code %s); starting it again in %.0f s",
                      proc.exitcode, wait)
            self._drop_conn()
            self.started_consuming = False
            await self.sleep(wait)
            wait = min(RESTART_S[1], wait * 2)
            if not self.should_stop:
                self.restarts += 1
                self._spawn()

    # ------------------------------------------------------------------ child -> worker

    def _on_report(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            while conn.poll():
                kind, body = conn.recv()
                if kind == "report":
                    self._apply(body)
        except (EOFError, OSError):
            self._drop_conn()            # the child is gone: _supervise sees it

    def _apply(self, r: dict[str, Any]) -> None:
        if r["generation"] != self._generation:
            return
        self.started_consuming = r["started"]
        self.lag = {(t, p): n for t, p, n in r["lag"]}
        m = self.metrics
        if r["watermark"] is not None:
            m.watermark.set(r["watermark"])
        m.ingest_rss.set(r["rss"])
        targets = {"sightings": m.sightings, "dlq": m.dlq, "cpu": m.ingest_cpu}
        for name, labels, value in r["counters"]:
            # The child's counters are totals: add what is new since its last report.
            key = (name, tuple(labels))
            delta = value - self._counted.get(key, 0.0)
            self._counted[key] = value
            if delta > 0:
                c = targets[name]
                (c.labels(*labels) if labels else c).inc(delta)

    # ------------------------------------------------------------------ worker -> child

    def use_rules(self, lateness_ms: int, limits: Limits) -> None:
        self.config.lateness_ms, self.config.limits = lateness_ms, limits  # for a restart
        if self._conn is not None:
            try:
                self._conn.send(("rules", (lateness_ms, limits)))
            except OSError:
                pass                     # a dead child starts again with the config


# ---------------------------------------------------------------------- the child

def child_main(config: IngestConfig, conn: Connection, generation: int) -> None:
    """Entry point of the child process."""
    _die_with_parent()
    _logging(config.loglevel, config.log_format)
    from rings.gctune import tune_for_throughput

    tune_for_throughput()
    try:
        asyncio.run(_child(config, conn, generation))
    except KeyboardInterrupt:
        pass


async def _child(config: IngestConfig, conn: Connection, generation: int) -> None:
    metrics = Metrics()
    svc = config.service(metrics)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def on_message() -> None:
        try:
            while conn.poll():
                kind, body = conn.recv()
                if kind == "rules":
                    svc.use_rules(*body)
                elif kind == "stop":
                    stop.set()
        except (EOFError, OSError):
            stop.set()                   # the worker is gone
            loop.remove_reader(conn.fileno())

    loop.add_reader(conn.fileno(), on_message)
    await svc.start()
    try:
        while not stop.is_set() and not svc.should_stop:
            try:
                await asyncio.wait_for(stop.wait(), REPORT_S)
            except asyncio.TimeoutError:
                pass
            if not _report(conn, svc, metrics, generation):
                break
    finally:
        await svc.stop()                 # commits what was acknowledged
        _report(conn, svc, metrics, generation)


def _report(conn: Connection, svc: Any, metrics: Metrics, generation: int) -> bool:
    counters: list[tuple[str, list[str], float]] = []
    for name, metric in (("sightings", metrics.sightings), ("dlq", metrics.dlq)):
        for family in metric.collect():
            for s in family.samples:
                if s.name.endswith("_total"):
                    counters.append((name, [s.labels[k] for k in metric._labelnames],
                                     s.value))
    counters.append(("cpu", [], time.process_time()))
    wm = metrics.watermark.collect()[0].samples[0].value
    body = {"generation": generation, "started": svc.started_consuming,
            "lag": [(t, p, n) for (t, p), n in svc.lag.items()],
            "watermark": wm or None, "counters": counters, "rss": _rss_bytes()}
    try:
        conn.send(("report", body))
        return True
    except OSError:
        return False


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _die_with_parent() -> None:
    """Linux: SIGTERM when the worker dies, even by SIGKILL (PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _logging(loglevel: str, log_format: str) -> None:
    if log_format == "json":
        from .logjson import logging_config
        cfg = logging_config(loglevel)
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False,
                                   "formatters": cfg["formatters"],
                                   "handlers": cfg["handlers"],
                                   "root": {"level": loglevel.upper(),
                                            "handlers": ["default"]}})
    else:
        # As the worker's (Faust's) own lines look.
        logging.basicConfig(level=loglevel.upper(),
                            format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    # Library chatter stays at warning, as in the worker.
    for name in ("aiokafka", "mode", "asyncio"):
        logging.getLogger(name).setLevel(max(logging.WARNING,
                                             logging.getLogger().getEffectiveLevel()))
