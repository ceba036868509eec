"""The ingest in a process of its own, beside the worker's stages.

The ingest (decode, validate, route into envelopes: `streams.ingest`) holds no state but
its consumer offsets and talks to the stages only through Kafka, so it can run anywhere.
In the worker's own process it took a fifth of the one core the worker can use (Python
runs one thread at a time): profiled with py-spy over a whole bench run, 20% of the
worker's samples, 9 µs of CPU a sighting. In a child process it runs on another core, and
the stages get that fifth back.

The worker stays one unit for its operator (`streams.children`): it starts the child,
stops it, starts it again if it dies, and forwards what the child counts (`rings_sightings_total`, the ingest's DLQ
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
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from rings.decode import Limits
from rings.net import Net
from rings.pseudonym import Pseudonymizer

from .children import ChildProcess, become_child, rss_bytes
from .config import KafkaSettings
from .errors import ConfigError
from .metrics import Metrics

log = logging.getLogger("rings.ingest")
REPORT_S = 0.1              # seconds between the child's reports
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


class IngestProcess(ChildProcess):
    """The worker's side: the child, its supervision, and what it reported last. Offers
    what the worker reads of an inline IngestService (`started_consuming`, `lag`,
    `use_rules`)."""

    name = "rings-ingest"

    def __init__(self, config: IngestConfig, metrics: Metrics, **kw: Any) -> None:
        super().__init__(child_main, config, **kw)
        self.metrics = metrics
        self.started_consuming = False
        self.lag: dict[tuple[str, int], int] = {}
        self._counted: dict[tuple[str, tuple[str, ...]], float] = {}

    def _next_generation(self) -> None:
        """A new child: its totals start from zero, and reports of the old one are
        ignored."""
        super()._next_generation()
        self._counted.clear()

    def healthy(self) -> bool:
        return self.started_consuming

    def on_exit(self) -> None:
        self.started_consuming = False

    # ------------------------------------------------------------------ child -> worker

    def on_message(self, kind: str, body: Any) -> None:
        if kind == "report":
            self._apply(body)

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
        self.send("rules", (lateness_ms, limits))   # (a dead child starts with the config)


# ---------------------------------------------------------------------- the child

def child_main(config: IngestConfig, conn: Connection, generation: int) -> None:
    """Entry point of the child process."""
    become_child(IngestProcess.name, config.loglevel, config.log_format)
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
            "watermark": wm or None, "counters": counters, "rss": rss_bytes()}
    try:
        conn.send(("report", body))
        return True
    except OSError:
        return False
