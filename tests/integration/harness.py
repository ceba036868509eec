"""Test harness for the real broker: a worker subprocess, publishing, and barriers.

Barriers replace sleeps. To know that everything published so far has been processed, the
harness puts a sentinel subject on every partition (a watchlist entry, then sightings of
it): order is kept within a partition, so once every sentinel has alerted, every watchlist
entry and sighting published before it has been applied.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import murmur2

from rings.timefmt import parse_ts
from streams.config import KafkaSettings
from streams.kafka_io import drop_topics

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
SENTINEL_LIST = "sentinel"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def partition_of(key: str, n: int = PARTITIONS) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % n


def one_id_per_partition(subject_type: str, stem: str) -> list[str]:
    """Ids `<stem><k>`, one per partition of `<subject_type>:<id>`, in partition order."""
    found: dict[int, str] = {}
    for k in itertools.count():
        found.setdefault(partition_of(f"{subject_type}:{stem}{k}"), f"{stem}{k}")
        if len(found) == PARTITIONS:
            return [found[p] for p in range(PARTITIONS)]
    raise AssertionError("unreachable")


class PrivateBroker:
    """A broker of one test or module alone (`deploy/local-kafka` on its own free ports and
    data dir, with any extra settings, e.g. SCRAM): it can be stopped, started again or
    configured apart without touching the suite's broker."""

    def __init__(self, data: Path, extra_env: dict[str, str] | None = None) -> None:
        port = free_port()
        controller = free_port()
        while controller == port:
            controller = free_port()
        self.port = port
        self.data = data
        self.env = {**os.environ, **(extra_env or {}), "RINGS_KAFKA_PORT": str(port),
                    "RINGS_KAFKA_CONTROLLER_PORT": str(controller),
                    "RINGS_KAFKA_DATA": str(data)}
        self.address = ""

    def _run(self, *args: str) -> str:
        r = subprocess.run([str(ROOT / "deploy" / "local-kafka"), *args], env=self.env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=300)
        if r.returncode != 0:
            raise AssertionError(f"local-kafka {' '.join(args)} failed:\n{r.stderr}")
        return r.stdout

    def up(self) -> str:
        self.address = self._run("up").strip().splitlines()[-1]
        return self.address

    def down(self, wipe: bool = False) -> None:
        self._run("down", *(["--wipe"] if wipe else []))


class Worker:
    """A `rings worker` subprocess with its own data dir and web port."""

    def __init__(self, broker: str, prefix: str, data_dir: Path, log_path: Path,
                 extra_args: Iterable[str] = (), env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.data_dir = data_dir
        # `env`: more variables for the worker (e.g. RINGS_KAFKA_* security settings)
        env = {**os.environ, "RINGS_BROKER": broker, "RINGS_TOPIC_PREFIX": prefix,
               "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rings.cli", "worker", "--web-port", str(self.port),
             "--data-dir", str(data_dir), "--partitions", str(PARTITIONS), *extra_args],
            env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            return 0, b""

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n"
                                     + self.log_tail())
            return self.get("/ready")[0] == 200
        wait_until(ready, timeout, "the worker to be ready")

    def metrics(self) -> str:
        return self.get("/metrics")[1].decode()

    def stage_watermarks(self) -> dict[str, float]:
        out = {}
        for line in self.metrics().splitlines():
            if line.startswith("rings_stage_watermark_seconds{"):
                stage = line.split('stage="', 1)[1].split('"', 1)[0]
                out[stage] = float(line.rsplit(" ", 1)[1])
        return out

    def log_tail(self, n: int = 60) -> str:
        lines = self.log_path.read_bytes().decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def children(self) -> list[int]:
        """The worker's child processes (its ingest and stage processes)."""
        try:
            return [int(c) for t in Path(f"/proc/{self.proc.pid}/task").iterdir()
                    for c in (t / "children").read_text().split()]
        except OSError:
            return []

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Stop it and wait until all of it is gone: its children die with it (a SIGKILL
        reaches them through PR_SET_PDEATHSIG, a moment after the worker itself)."""
        kids = self.children()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

        def gone(pid: int) -> bool:
            try:
                return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
            except (OSError, IndexError):
                return True
        wait_until(lambda: all(map(gone, kids)), 30, "the worker's processes to end")
        return self.proc.returncode


class Kafka:
    """Synchronous helpers over aiokafka for tests; every topic name gets the prefix."""

    def __init__(self, broker: str, prefix: str) -> None:
        self.broker = broker
        self.prefix = prefix
        self._sentinel_seq = itertools.count()
        self._sentinels: list[str] | None = None

    def t(self, name: str) -> str:
        return self.prefix + name

    # ------------------------------------------------------------------ produce

    def send(self, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> None:
        async def go() -> None:
            p = AIOKafkaProducer(bootstrap_servers=self.broker, linger_ms=5)
            await p.start()
            try:
                futs = [await p.send(self.t(topic), v, key=k) for k, v in records]
                await asyncio.gather(*futs)
            finally:
                await p.stop()
        asyncio.run(go())

    def send_json(self, topic: str, objs: Iterable[dict]) -> None:
        def key(o: dict) -> bytes:
            s = o["subject"]
            return f"{s['type']}:{s['id']}".encode()
        self.send(topic, [(key(o), orjson.dumps(o)) for o in objs])

    def topics(self) -> list[str]:
        """Every topic on the broker (not only this test's)."""
        async def go() -> list[str]:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.broker)
            await admin.start()
            try:
                return list(await admin.list_topics())
            finally:
                await admin.close()
        return asyncio.run(go())

    def drop_own_topics(self) -> int:
        """Delete every topic of this test's prefix: each test makes a dozen, and a broker
        that keeps them all runs out of file handles after a few runs of the suite (about
        20,000 partitions, found on a developer's broker)."""
        return asyncio.run(drop_topics(KafkaSettings(self.broker, self.prefix)))

    def topic_config(self, topic: str, name: str) -> str | None:
        """One setting of this test's topic as the broker has it (None: not set at all)."""
        async def go() -> str | None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.broker)
            await admin.start()
            try:
                [resp] = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, self.t(topic))])
            finally:
                await admin.close()
            [res] = resp.resources
            return next((e[1] for e in res[4] if e[0] == name), None)
        return asyncio.run(go())

    def end_offsets(self, topic: str) -> dict[int, int]:
        """The end offset of each partition of this test's topic, now."""
        async def go() -> dict[int, int]:
            name = self.t(topic)
            c = AIOKafkaConsumer(bootstrap_servers=self.broker, group_id=None)
            await c.start()
            try:
                ends = await c.end_offsets([TopicPartition(name, p)
                                            for p in await self._partitions(name)])
            finally:
                await c.stop()
            return {tp.partition: n for tp, n in ends.items()}
        return asyncio.run(go())

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """The offsets this test's consumer group `group` has committed on `topic`."""
        async def go() -> dict[int, int]:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.broker)
            await admin.start()
            try:
                got = await admin.list_consumer_group_offsets(self.t(group))
            finally:
                await admin.close()
            return {tp.partition: meta.offset for tp, meta in got.items()
                    if tp.topic == self.t(topic) and meta.offset >= 0}
        return asyncio.run(go())

    # ------------------------------------------------------------------ consume

    def read_all(self, topic: str, timeout: float = 5.0) -> list[Any]:
        """Every record now in a topic (up to its end offsets when called)."""
        async def go() -> list[Any]:
            c = AIOKafkaConsumer(bootstrap_servers=self.broker, group_id=None,
                                 auto_offset_reset="earliest", enable_auto_commit=False)
            await c.start()
            try:
                name = self.t(topic)
                parts = await self._partitions(name)
                if not parts:
                    return []
                tps = [TopicPartition(name, p) for p in parts]
                c.assign(tps)
                await c.seek_to_beginning(*tps)
                ends = await c.end_offsets(tps)
                out: list[Any] = []
                deadline = time.monotonic() + timeout
                while True:
                    positions = [await c.position(tp) for tp in tps]
                    if all(pos >= ends[tp] for pos, tp in zip(positions, tps)):
                        return out
                    if time.monotonic() > deadline:
                        raise AssertionError(f"could not read {topic} to its end")
                    for msgs in (await c.getmany(timeout_ms=200)).values():
                        out.extend(msgs)
            finally:
                await c.stop()
        return asyncio.run(go())

    async def _partitions(self, name: str) -> list[int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.broker)
        await admin.start()
        try:
            if name not in await admin.list_topics():
                return []
            desc = await admin.describe_topics([name])
            return sorted(p["partition"] for d in desc for p in d["partitions"])
        finally:
            await admin.close()

    def alerts(self, include_sentinels: bool = False) -> list[dict]:
        out = [orjson.loads(m.value) for m in self.read_all("alerts")]
        if include_sentinels:
            return out
        return [a for a in out if not a["subject"]["id"].startswith("SENTINEL-")]

    def dlq(self) -> list[tuple[Any, dict]]:
        return [(m, orjson.loads(m.value)) for m in self.read_all("sightings-dlq")]

    # ------------------------------------------------------------------ barrier

    def sentinels(self) -> list[str]:
        """One vehicle id per partition, so sentinels cover every partition."""
        if self._sentinels is None:
            self._sentinels = one_id_per_partition("vehicle", "SENTINEL-")
        return self._sentinels

    def barrier(self, worker: Worker | None = None, timeout: float = 90.0,
                ts: str = "2026-11-29T12:00:00+08:00", judged: str | None = None) -> None:
        """Return once everything published before the call has been processed; with
        `judged` (an RFC 3339 time), also once every stage of `worker` has judged all that
        happened before that time (the ordered rules answer only then)."""
        ids = self.sentinels()
        self.send_json("watchlist", [
            {"subject": {"type": "vehicle", "id": sid}, "list": SENTINEL_LIST,
             "severity": "low", "reason": f"barrier {next(self._sentinel_seq)}"}
            for sid in ids])
        pending = set(ids)
        deadline = time.monotonic() + timeout
        while pending:
            if worker is not None and not worker.alive:
                raise AssertionError("worker died:\n" + worker.log_tail())
            round_ids = {}
            for sid in pending:
                n = next(self._sentinel_seq)
                round_ids[f"barrier-{sid}-{n}"] = sid
            self.send_json("sightings", [
                {"id": rid, "ts": ts, "site": "CP01", "dir": "in",
                 "subject": {"type": "vehicle", "id": sid}} for rid, sid in round_ids.items()])
            round_deadline = min(deadline, time.monotonic() + 3.0)
            while time.monotonic() < round_deadline and pending:
                seen = {e for a in self.alerts(include_sentinels=True)
                        for e in a["evidence"]}
                for rid, sid in round_ids.items():
                    if rid in seen:
                        pending.discard(sid)
                if pending:
                    time.sleep(0.2)
            if time.monotonic() > deadline and pending:
                raise AssertionError(f"barrier: no alert for sentinels {sorted(pending)} "
                                     f"within {timeout:.0f}s")
        if judged is not None:
            assert worker is not None
            target = parse_ts(judged)[0] / 1000
            wait_until(lambda: all(v >= target for v in worker.stage_watermarks().values())
                       and len(worker.stage_watermarks()) == 3,
                       max(1.0, deadline - time.monotonic()),
                       f"every stage to judge up to {judged}")


# ---------------------------------------------------------------------- stores on disk

FAUST_OFFSET_KEY = b"__faust\0offset__"


def store_matches_changelog(store: dict[bytes, bytes], records: Iterable[Any]
                            ) -> tuple[int | None, int]:
    """Whether a partition's RocksDB store (read on disk, its worker dead) is a state its
    changelog passed through: the offset after which the changelog's records up to there
    give exactly the store (-1: before the first), or None; and the fewest keys that
    differed on the way. A store ahead of its changelog matches nowhere."""
    state: dict[bytes, bytes] = {}
    differ = set(store)
    fewest = len(differ)
    if not differ:
        return -1, 0
    for m in records:
        k = m.key
        if m.value is None:
            state.pop(k, None)
        else:
            state[k] = m.value
        if state.get(k) == store.get(k):
            differ.discard(k)
        else:
            differ.add(k)
        fewest = min(fewest, len(differ))
        if not differ:
            return m.offset, 0
    return None, fewest


def stores_off_their_changelogs(kafka: "Kafka", data_dir: Path,
                                tables: Iterable[str]) -> tuple[list[str], int]:
    """Every partition store of `tables` under a dead worker's data directory (its stage
    processes' too) that is no state its changelog passed through, described; and how
    many stores were checked. A changelog partition the log cleaner has compacted (its
    offsets no longer contiguous from 0) holds no longer every state it passed through:
    its stores are not checked."""
    import rocksdict
    problems, checked = [], 0
    for table in tables:
        by_partition: dict[int, list[Any]] = {}
        for m in kafka.read_all(f"rings-{table}-changelog", timeout=30):
            by_partition.setdefault(m.partition, []).append(m)
        for path in sorted(data_dir.rglob(f"{table}-*.db")):
            p = int(path.name[len(table) + 1:-3])
            db = rocksdict.Rdict(str(path), rocksdict.Options(raw_mode=True),
                                 access_type=rocksdict.AccessType.read_only())
            try:
                store = {k: v for k, v in db.items() if k != FAUST_OFFSET_KEY}
            finally:
                db.close()
            records = sorted(by_partition.get(p, []), key=lambda m: m.offset)
            if any(m.offset != i for i, m in enumerate(records)):
                continue
            checked += 1
            at, fewest = store_matches_changelog(store, records)
            if at is None:
                problems.append(f"{path.relative_to(data_dir)}: {len(store)} keys, at least "
                                f"{fewest} of them in no state of its {len(records)} "
                                "changelog records")
    return problems, checked
