"""Peers for `rings bench`: the rates other consumers reach on the same sightings topic.

The engine's own rate means little alone. Three peers put it on a scale, each reading the
first `n` messages of one existing topic from the earliest offset, in a fresh consumer group:

- `aiokafka_eps`: aiokafka `getmany` in large batches plus `orjson.loads` of every value, in
  this process. The transport ceiling: no Python consumer of this topic can beat it.
- `faust_baseline_eps`: a bare Faust agent with Faust's default settings that only iterates
  the raw values. What Faust costs per message before any work is done.
- `quix_count_eps`: Quix Streams counting per subject (message key) in its RocksDB state,
  with a changelog topic (its default), values decoded as JSON. A stateful peer comparable
  with the engine's own per-subject state.

The Faust and Quix peers run in a child process (`python -m streams.bench_peers faust|quix`,
its spec as JSON on stdin so that credentials stay out of the process list, its result as
one JSON line on stdout), so that their event loop, threads, logging and memory do not
touch the caller or each other. The caller's process only waits for them.

What is timed: a monotonic clock is read right after the first message has been decoded and
handed to the peer's processing code (t_first), and right after the n-th message has been
processed (t_last). The rate is (n - 1) / (t_last - t_first), the n - 1 intervals between
the first message and the last. Excluded are start-up, connecting, the group join and
rebalance, the Quix changelog topics' creation and the first fetch; included is every fetch
after the first message.

One exception, Quix: its state writes wait in memory for the next checkpoint (every 5 s by
default), so a run of a few seconds would otherwise contain none of the state's cost. Its
t_last is therefore read when `Application.run` returns after the n-th message, which
includes the final checkpoint (state written to RocksDB, changelog produced and acknowledged,
offsets committed) and closing the consumer and the stores (about 0.1 s). The child's JSON
also reports `processed_eps`, the rate up to the n-th message alone. The Faust and aiokafka
peers hold no state; their final offset commit and shutdown are excluded.

All three functions are synchronous and must not be called from a running event loop.
Topic names are given before `settings.prefix` is applied, like everywhere in `streams`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Callable

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from .config import KafkaSettings
from .errors import StreamsError
from .kafka_io import drop_topics

# Large batches keep the per-call cost of getmany out of the transport ceiling.
AIOKAFKA_MAX_RECORDS = 10_000

# The aiokafka options a child process can honour: plain strings that cross a process
# boundary and that Faust's credentials and librdkafka both express. An ssl_context
# cannot be handed to another process: the children build their own from the same TLS files
# (settings.tls_files, from RINGS_KAFKA_CA_FILE etc.; none: the system's CAs).
PORTABLE_OPTIONS = frozenset(
    {"security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password"})

STDERR_TAIL_CHARS = 4000


class BenchPeerError(StreamsError):
    """A peer could not be measured: bad topic, child failure or timeout."""


class _Clock:
    """Counts processed messages; notes when the first and the n-th were done, and the
    process's CPU time then (all its threads: librdkafka's too)."""

    __slots__ = ("n", "seen", "first", "last", "cpu_first", "cpu_last")

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen = 0
        self.first = self.last = self.cpu_first = self.cpu_last = 0.0

    def tick(self) -> bool:
        """Count one processed message; True exactly once, at the n-th."""
        self.seen += 1
        if self.seen == 1:
            self.first, self.cpu_first = time.perf_counter(), time.process_time()
        elif self.seen == self.n:
            self.stop()
            return True
        return False

    def stop(self) -> None:
        self.last, self.cpu_last = time.perf_counter(), time.process_time()

    def result(self) -> dict[str, float]:
        seconds = self.last - self.first
        return {"n": self.n, "seconds": seconds, "eps": (self.n - 1) / seconds,
                "cores": (self.cpu_last - self.cpu_first) / seconds}


# ---------------------------------------------------------------------------------------------
# Parent side


def aiokafka_eps(settings: KafkaSettings, topic: str, n: int, *, timeout: float = 60.0) -> float:
    """Messages per second of raw aiokafka consumption plus `orjson.loads`, in this process."""
    _check_n(n)

    async def go() -> float:
        await _check_topic(settings, topic, n)
        return await _aiokafka_rate(settings, settings.topic(topic), n)

    try:
        return asyncio.run(asyncio.wait_for(go(), timeout))
    except TimeoutError:
        raise BenchPeerError(f"aiokafka peer did not read {n} messages of "
                             f"{settings.topic(topic)} within {timeout:g}s") from None


def faust_baseline(settings: KafkaSettings, topic: str, n: int, *,
                   timeout: float = 120.0) -> dict[str, float]:
    """A bare Faust agent iterating raw values, in a child process: messages per second
    (`eps`) and the cores its process kept busy meanwhile (`cores`)."""
    return _run_peer("faust", settings, topic, n, timeout)


def quix_count(settings: KafkaSettings, topic: str, n: int, *,
               timeout: float = 120.0) -> dict[str, float]:
    """A Quix Streams per-key count with changelog, in a child process, up to its final
    checkpoint (see the module's doc): messages per second (`eps`) and the cores its
    process kept busy meanwhile, its librdkafka threads included (`cores`). Needs the
    `bench` extra (quixstreams)."""
    if importlib.util.find_spec("quixstreams") is None:
        raise BenchPeerError("the Quix peer needs quixstreams: pip install 'rings[bench]'")
    return _run_peer("quix", settings, topic, n, timeout)


def _check_n(n: int) -> None:
    if n < 2:
        raise ValueError(f"a rate needs at least 2 messages, not {n}")


async def _check_topic(settings: KafkaSettings, topic: str, n: int) -> None:
    """Fail at once, rather than at the timeout, when the topic cannot supply n messages."""
    name = settings.topic(topic)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker, **settings.client_options)
    await admin.start()
    try:
        # Listed first: describing a missing topic would have the broker create it.
        if name not in await admin.list_topics():
            raise BenchPeerError(f"topic {name} does not exist on {settings.broker}")
        partitions = len((await admin.describe_topics([name]))[0]["partitions"])
    finally:
        await admin.close()
    tps = [TopicPartition(name, p) for p in range(partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker, **settings.client_options)
    await consumer.start()
    try:
        first = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    held = sum(end[tp] - first[tp] for tp in tps)
    if held < n:
        raise BenchPeerError(f"topic {name} holds {held} messages, fewer than {n}")


async def _aiokafka_rate(settings: KafkaSettings, name: str, n: int) -> float:
    # No group: the consumer is assigned every partition, commits nothing, leaves no trace.
    consumer = AIOKafkaConsumer(
        name, bootstrap_servers=settings.broker, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", **settings.client_options)
    await consumer.start()
    clock = _Clock(n)
    loads = orjson.loads
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=AIOKAFKA_MAX_RECORDS)
            for records in batches.values():
                for record in records:
                    loads(record.value)
                    if clock.tick():
                        return clock.result()["eps"]
    finally:
        await consumer.stop()


def _portable_options(settings: KafkaSettings) -> dict[str, str]:
    """The client options for a child. Refuses what a child could not honour rather than
    let it connect otherwise than the engine does."""
    options = {k: v for k, v in settings.client_options.items() if k != "ssl_context"}
    bad = sorted(k for k, v in options.items()
                 if k not in PORTABLE_OPTIONS or not isinstance(v, str))
    if bad:
        raise BenchPeerError(f"client options {', '.join(bad)} cannot be passed to the Faust "
                             f"and Quix peers (only {', '.join(sorted(PORTABLE_OPTIONS))})")
    options.update({f"tls_{k}": v for k, v in settings.tls_files.items()})   # ca, cert, key
    return options


def _run_peer(peer: str, settings: KafkaSettings, topic: str, n: int, timeout: float
              ) -> dict[str, float]:
    """Run one child peer with a private state dir and a fresh group; return its rate
    (`eps`) and cores (`cores`).

    The child runs in its own session so that a timeout kills it with everything it started.
    """
    _check_n(n)
    options = _portable_options(settings)
    asyncio.run(_check_topic(settings, topic, n))
    group = f"rings-bench-{peer}-{uuid.uuid4().hex[:12]}"
    spec = {"broker": settings.broker, "options": options, "topic": settings.topic(topic),
            "n": n, "group": group}
    try:
        with tempfile.TemporaryDirectory(prefix=f"rings-bench-{peer}-") as tmp:
            spec["dir"] = tmp
            out, err, code = _run_child(peer, spec, timeout)
    finally:
        if peer == "quix":
            asyncio.run(_delete_internal_topics(settings, group))
    if code is None:
        raise BenchPeerError(f"{peer} peer did not process {n} messages within {timeout:g}s "
                             f"and was killed; its stderr ends:\n{_tail(err)}")
    try:
        result = orjson.loads(out.strip().splitlines()[-1])
        return {"eps": float(result["eps"]), "cores": float(result.get("cores", 0.0))}
    except (IndexError, KeyError, TypeError, ValueError, orjson.JSONDecodeError):
        raise BenchPeerError(f"{peer} peer exited with {code} without a result; its stderr "
                             f"ends:\n{_tail(err)}") from None


def _run_child(peer: str, spec: dict[str, Any], timeout: float
               ) -> tuple[str, str, int | None]:
    """stdout, stderr and exit code of the child; the code is None if it was killed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.bench_peers", peer], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(orjson.dumps(spec), timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        code = None
    except BaseException:   # e.g. Ctrl-C: leave no orphan behind
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return out.decode(errors="replace"), err.decode(errors="replace"), code


def _tail(text: str) -> str:
    return text[-STDERR_TAIL_CHARS:] or "(nothing)"


async def _delete_internal_topics(settings: KafkaSettings, group: str) -> None:
    """Delete the changelog (and any repartition) topics Quix made for this run's group,
    which would otherwise keep a copy of the state on the broker after every run."""
    await drop_topics(settings, (f"changelog__{group}--", f"repartition__{group}--"))


# ---------------------------------------------------------------------------------------------
# Child side: `python -m streams.bench_peers faust|quix`, spec on stdin, result on stdout


def _faust_child(spec: dict[str, Any]) -> dict[str, float]:
    """A bare Faust agent with default settings, stopped by SIGTERM to itself at n."""
    import faust
    from aiokafka.helpers import create_ssl_context
    from faust.worker import Worker

    options = spec["options"]
    protocol = options.get("security_protocol", "PLAINTEXT").upper()
    tls = create_ssl_context(cafile=options.get("tls_ca"), certfile=options.get("tls_cert"),
                             keyfile=options.get("tls_key")) if protocol.endswith("SSL") \
        else None
    credentials: Any = None
    if protocol.startswith("SASL"):
        credentials = faust.SASLCredentials(
            username=options.get("sasl_plain_username"),
            password=options.get("sasl_plain_password"),
            mechanism=options.get("sasl_mechanism", "PLAIN"),
            ssl_context=tls)
    elif protocol == "SSL":
        credentials = faust.SSLCredentials(tls)
    app = faust.App(
        spec["group"],
        broker=[f"kafka://{b}" for b in spec["broker"].split(",")],
        broker_credentials=credentials,
        datadir=spec["dir"],
        web_enabled=False,
        # No leader topic: a fresh group per run would leave one behind each time.
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
    )
    topic = app.topic(spec["topic"], key_serializer="raw", value_serializer="raw")
    clock = _Clock(spec["n"])

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for _ in stream:
            if clock.tick():
                # The worker's own graceful stop: leaves the group, closes the consumer.
                os.kill(os.getpid(), signal.SIGTERM)

    # At "warning" or above Faust keeps a terminal spinner, which writes escape codes to
    # stdout even when it is a pipe and sets the root logger to DEBUG; "info" drops it.
    # Faust's own output goes to stderr: stdout carries the result alone.
    worker = Worker(app, loglevel="info", quiet=True, redirect_stdouts=False,
                    stdout=sys.stderr)
    try:
        worker.execute_from_commandline()
    except SystemExit:
        pass
    return clock.result() if clock.seen >= clock.n else {}


def _quix_child(spec: dict[str, Any]) -> dict[str, float]:
    """Quix Streams counting per key in RocksDB with changelog, stopped from the callback;
    `Application.stop` ends the poll loop after the current message."""
    from quixstreams import Application
    from quixstreams.kafka.configuration import ConnectionConfig
    from quixstreams.state import State

    options = spec["options"]
    connection = ConnectionConfig(
        bootstrap_servers=spec["broker"],
        security_protocol=options.get("security_protocol", "PLAINTEXT").lower(),
        sasl_mechanism=options.get("sasl_mechanism"),
        sasl_username=options.get("sasl_plain_username"),
        sasl_password=options.get("sasl_plain_password"),
        ssl_ca_location=options.get("tls_ca"),
        ssl_certificate_location=options.get("tls_cert"),
        ssl_key_location=options.get("tls_key"))
    app = Application(
        broker_address=connection, consumer_group=spec["group"], auto_offset_reset="earliest",
        state_dir=spec["dir"], loglevel="INFO")
    topic = app.topic(spec["topic"], key_deserializer="bytes", value_deserializer="json")
    clock = _Clock(spec["n"])

    def count(value: Any, state: State) -> None:
        state.set("count", state.get("count", 0) + 1)
        if clock.tick():
            app.stop()

    app.dataframe(topic).update(count, stateful=True)
    app.run()
    if clock.seen < clock.n:
        return {}
    processed = clock.result()["eps"]
    clock.stop()                       # after the final checkpoint: see the module's doc
    return {**clock.result(), "processed_eps": processed}


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, float]]] = {
    "faust": _faust_child, "quix": _quix_child}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in CHILDREN:
        print(f"usage: python -m streams.bench_peers {{{'|'.join(CHILDREN)}}} < spec.json",
              file=sys.stderr)
        return 2
    result = CHILDREN[argv[0]](orjson.loads(sys.stdin.buffer.read()))
    if not result:
        print(f"{argv[0]} peer stopped before the last message", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
