"""More stage processes of one worker: the stages on every core of the machine.

A worker's stages (subjects, sites, pairs, the plans) run in one Faust consumer group, and
several members of that group share its partitions and their state (scale-out). Python
runs one thread at a time, so one process keeps one core busy at most: profiled on the
bench's backlog, the worker's process was the bottleneck at one core while the machine's
second core was half idle. `rings worker --processes N` (`RINGS_PROCESSES`; default: the
cores this process may run on, at most `--partitions`) therefore runs N members: itself
and N-1 children, each the same app on a data directory of its own
(`<data-dir>/process-<i>`), so each holds its share of the partitions, their RocksDB and
their changelogs. It is what several workers would do, as one unit:

- **one ingest**, the worker's, started once every stage process has its assignment:
  with the group formed before the first sighting flows, there is no rebalance (a pause,
  and state moved) while the stages take in a backlog;
- **one web port**: `/metrics` is the sum of the processes' own (counters and histograms
  added, gauges added or, for times and watermarks, their lowest or highest: see
  `streams.metrics.merged`), asked of each child when scraped; `/ready` answers 200 only
  when every process has its assignment in the group;
- **one life**: a child that dies is started again (its partitions move to the others
  meanwhile, as when a worker leaves the group); the worker stopping stops them; the
  worker killed kills them (`SIGKILL`, so that a crash of the worker is a crash of all of
  it, as the recovery tests expect of a worker).

The RocksDB budget (`RINGS_ROCKSDB_MB`) is shared out among the processes; the state cache
(`RINGS_STATE_CACHE`) is per partition, wherever the partition runs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from mode import Service

from rings.net import Net
from rings.ruleset import RuleSet

from .children import ChildProcess, become_child
from .config import KafkaSettings, env_int
from .metrics import Metrics, Snapshot, snapshot

if TYPE_CHECKING:
    from .app import WorkerOptions

log = logging.getLogger("rings.worker")
REPORT_S = 0.5              # seconds between a child's reports of its partitions
SCRAPE_S = 2.0              # how long /metrics waits for a child's numbers


def processes_from_env(partitions: int, env: dict[str, str] | None = None) -> int:
    """RINGS_PROCESSES: stage processes of one worker; default: the cores this process may
    run on (its CPU affinity, which a container's cpuset limits), at most `partitions`
    (a process without partitions would only wait)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    n = env_int("RINGS_PROCESSES", min(cores, partitions), env, low=1)
    return min(n, partitions)


@dataclass(slots=True)
class StageConfig:
    """What a stage child needs to build the same app; it crosses the process boundary
    (pickled), so settings come without their SSLContext (`KafkaSettings.portable`)."""

    settings: KafkaSettings
    net: Net
    rules: RuleSet
    opts: "WorkerOptions"
    rules_offset: int | None
    subject_topic: str


class StageProcess(ChildProcess):
    """The worker's side of stage process `index` (1 to N-1; the worker itself is 0)."""

    def __init__(self, config: StageConfig, **kw: Any) -> None:
        super().__init__(stage_child_main, config, **kw)
        self.name = f"rings-stages-{config.opts.process_index}"
        self.partitions: list[int] = []          # of the subject topic, as last reported
        self.ready = False                       # it has its assignment in the group
        self._seq = itertools.count()
        self._scrapes: dict[int, asyncio.Future[Snapshot]] = {}

    def _next_generation(self) -> None:
        super()._next_generation()
        self.partitions, self.ready = [], False

    def healthy(self) -> bool:
        return self.ready

    def on_exit(self) -> None:
        self.partitions, self.ready = [], False
        for fut in self._scrapes.values():
            if not fut.done():
                fut.set_result([])

    def on_message(self, kind: str, body: Any) -> None:
        if kind == "report" and body["generation"] == self._generation:
            self.partitions, self.ready = body["partitions"], body["assigned"]
        elif kind == "metrics":
            fut = self._scrapes.pop(body[0], None)
            if fut is not None and not fut.done():
                fut.set_result(body[1])

    async def scrape(self, timeout: float = SCRAPE_S) -> Snapshot:
        """The child's metrics now; nothing if it does not answer in time (restarting, or
        busy with one envelope longer than that: its numbers are then missing from this
        scrape, not wrong)."""
        seq = next(self._seq)
        fut: asyncio.Future[Snapshot] = asyncio.get_running_loop().create_future()
        self._scrapes[seq] = fut
        if not self.send("scrape", seq):
            self._scrapes.pop(seq, None)
            return []
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            log.warning("%s did not give its metrics within %.0f s", self.name, timeout)
            return []
        finally:
            self._scrapes.pop(seq, None)


# ---------------------------------------------------------------------- the child

def stage_child_main(config: StageConfig, conn: Connection, generation: int) -> None:
    """Entry point of a stage process: the worker's app, without ingest and web, linked
    to the worker by `conn`."""
    from .app import build_app
    from .worker import run_app

    opts = config.opts
    become_child(f"rings-stages-{opts.process_index}", opts.loglevel, opts.log_format,
                 signal.SIGKILL)
    app, metrics = build_app(config.settings.restored(), config.net, config.rules, opts,
                             rules_offset=config.rules_offset)
    app.service(ParentLink(app, metrics, conn, generation, config.subject_topic))
    run_app(app, opts.loglevel, opts.log_format)


class ParentLink(Service):
    """In a stage process: answers the worker's scrapes, reports the partitions held, and
    stops the process when the worker asks."""

    def __init__(self, app: Any, metrics: Metrics, conn: Connection, generation: int,
                 subject_topic: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.app = app
        self.metrics = metrics
        self.conn = conn
        self.generation = generation
        self.subject_topic = subject_topic

    async def on_start(self) -> None:
        asyncio.get_running_loop().add_reader(self.conn.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        try:
            while self.conn.poll():
                kind, body = self.conn.recv()
                if kind == "scrape":
                    self._send("metrics", (body, snapshot(self.metrics.registry)))
                elif kind == "stop":
                    os.kill(os.getpid(), signal.SIGTERM)    # Faust's own graceful stop
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            os.kill(os.getpid(), signal.SIGTERM)            # the worker is gone

    def _send(self, kind: str, body: Any) -> None:
        try:
            self.conn.send((kind, body))
        except OSError:
            pass

    @Service.task
    async def _report(self) -> None:
        while not self.should_stop:
            self._send("report", {"generation": self.generation,
                                  "assigned": assigned(self.app), "partitions":
                                  subject_partitions(self.app, self.subject_topic)})
            await self.sleep(REPORT_S)


def assigned(app: Any) -> bool:
    """Whether this process has its assignment in the group: every member has one once it
    has joined (the global watchlist table's partitions at least, even when the group
    has more members than partitions)."""
    try:
        return bool(app.consumer.assignment())
    except Exception:  # noqa: BLE001 - not started yet
        return False


def subject_partitions(app: Any, topic: str) -> list[int]:
    """The partitions of the subject topic this process's consumer holds."""
    try:
        return sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == topic)
    except Exception:  # noqa: BLE001 - not started yet
        return []
