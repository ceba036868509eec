"""Child processes of the worker, and their supervision.

Python runs one thread at a time, so a worker uses more than one core only through
processes of its own: the ingest (`streams.ingest_process`) and, on a machine with more
cores, further stage processes (`streams.stage_process`). Each is a child the worker
starts, watches and stops: one unit for its operator, whose `/metrics` and `/ready` speak
for all of them.

What they share is here: a pipe to the worker (messages `(kind, body)` both ways), a
restart with a growing wait when a child dies, a stop that asks first and kills after
`STOP_S`, the child's name in `ps` and `top` (`PR_SET_NAME`), and the child's death with
the worker, also when the worker is killed (the pipe closes, and on Linux the kernel sends
the child the signal its kind asks for).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from multiprocessing.connection import Connection
from typing import Any, Callable

from mode import Service

log = logging.getLogger("rings.worker")
RESTART_S = (1.0, 30.0)     # first and longest wait before starting a dead child again
STOP_S = 15.0               # how long a stopping child may take to commit and close

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


class ChildProcess(Service):
    """The worker's side of one child: spawning it, supervising it, the pipe to it.

    A subclass names the child's entry point (`target`, called in the child as
    `target(config, conn, generation)`) and handles what the child sends (`on_message`).
    Each child started gets a new generation: what an older one sent is ignored."""

    name = "rings-child"

    def __init__(self, target: Callable[..., None], config: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.target = target
        self.config = config
        self.restarts = 0
        self._proc: Any = None
        self._conn: Connection | None = None
        self._generation = 0
        self._spawned = False
        self._stopping = False          # asked to stop: a child that exits is not restarted
        # Ready to spawn: a child whose start must wait (see start_when) spawns from the
        # supervising task once this says so, or after `start_timeout` seconds.
        self.start_when: Callable[[], bool] | None = None
        self.start_timeout = 60.0

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        if self.start_when is None:
            self._spawn()

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._next_generation()
        proc = ctx.Process(target=self.target, args=(self.config, child, self._generation),
                           name=self.name, daemon=True)
        proc.start()
        child.close()                    # the child's end lives in the child only
        self._proc, self._conn, self._spawned = proc, parent, True
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_readable)
        log.info("%s process started (pid %d)", self.name, proc.pid)

    def _next_generation(self) -> None:
        """A new child: what the old one reported no longer counts."""
        self._generation += 1

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _drop_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                asyncio.get_running_loop().remove_reader(conn.fileno())
            except (ValueError, OSError):
                pass
            conn.close()

    def request_stop(self) -> None:
        """Ask the child to stop, without waiting (`stop` waits for it to exit)."""
        self._stopping = True
        self.send("stop", None)

    async def on_stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self.request_stop()
        deadline = time.monotonic() + STOP_S
        while proc.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if proc.is_alive():
            log.warning("the %s process did not stop within %.0f s; killing it", self.name,
                        STOP_S)
            proc.kill()
            proc.join(5)
        self._drop_conn()

    @Service.task
    async def _supervise(self) -> None:
        """A dead child is started again, after a wait that doubles while it keeps dying
        (reset once it has been up and healthy, see `healthy`)."""
        if not self._spawned:
            waited = time.monotonic() + self.start_timeout
            while not self.should_stop and not self.start_when():  # type: ignore[misc]
                if time.monotonic() > waited:
                    log.warning("starting the %s process after %.0f s without its start "
                                "condition", self.name, self.start_timeout)
                    break
                await self.sleep(0.1)
            if self.should_stop:
                return
            self._spawn()
        wait = RESTART_S[0]
        while not self.should_stop:
            await self.sleep(0.5)
            proc = self._proc
            if proc is None or proc.is_alive() or self.should_stop or self._stopping:
                if proc is not None and proc.is_alive() and self.healthy():
                    wait = RESTART_S[0]
                continue
            log.error("the %s process exited (code %s); starting it again in %.0f s",
                      self.name, proc.exitcode, wait)
            self._drop_conn()
            self.on_exit()
            await self.sleep(wait)
            wait = min(RESTART_S[1], wait * 2)
            if not self.should_stop:
                self.restarts += 1
                self._spawn()

    def healthy(self) -> bool:
        """Whether the child, alive, has come far enough to reset the restart wait."""
        return True

    def on_exit(self) -> None:
        """The child died (before it is started again)."""

    # ------------------------------------------------------------------ the pipe

    def _on_readable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            while conn.poll():
                kind, body = conn.recv()
                self.on_message(kind, body)
        except (EOFError, OSError):
            self._drop_conn()            # the child is gone: _supervise sees it

    def on_message(self, kind: str, body: Any) -> None:
        raise NotImplementedError

    def send(self, kind: str, body: Any) -> bool:
        """To the child, if it is there (False if not: a dead child starts again with the
        config)."""
        if self._conn is None or self._proc is None or not self._proc.is_alive():
            return False
        try:
            self._conn.send((kind, body))
            return True
        except OSError:
            return False


# ---------------------------------------------------------------------- in the child

def become_child(name: str, loglevel: str, log_format: str,
                 death_signal: int = signal.SIGTERM) -> None:
    """First steps of every child: its name, its death with the worker, its logging, and
    the collector tuned as in the worker."""
    _prctl(_PR_SET_PDEATHSIG, death_signal)
    _prctl(_PR_SET_NAME, name.encode()[:15])
    child_logging(loglevel, log_format)
    from rings.gctune import tune_for_throughput

    tune_for_throughput()


def _prctl(option: int, arg: Any) -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):
        pass                            # not Linux: no death signal, no name


def process_name(pid: int) -> str | None:
    """A process's name as `become_child` set it (Linux: /proc/PID/comm)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def child_logging(loglevel: str, log_format: str) -> None:
    if log_format == "json":
        from .logjson import configure_root
        configure_root(loglevel)
    else:
        # As the worker's (Faust's) own lines look.
        logging.basicConfig(level=loglevel.upper(),
                            format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    # Library chatter stays at warning, as in the worker.
    for name in ("aiokafka", "mode", "asyncio"):
        logging.getLogger(name).setLevel(max(logging.WARNING,
                                             logging.getLogger().getEffectiveLevel()))


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
