"""Plain aiokafka clients for the command line: publish, tail, topic creation.

These tools do not need Faust; using aiokafka directly keeps them fast and lets them run
against any broker, including one the worker is not attached to.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, BinaryIO, Iterable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from .config import KafkaSettings
from .errors import BrokerUnavailable


def subject_key_of(line: bytes) -> bytes | None:
    """The subject key of a sighting or watchlist line, or None if it does not parse."""
    try:
        d = orjson.loads(line)
        s = d["subject"]
        t, i = s["type"], s["id"]
        if isinstance(t, str) and isinstance(i, str):
            return f"{t}:{i}".encode()
    except Exception:
        pass
    return None


class _AuthFailures(logging.Handler):
    """Catches the SASL refusals aiokafka only logs (it then raises a bare "Unable to
    bootstrap"), so that a wrong password is reported as such, at once."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "SaslAuthenticationFailed" in msg or "UnsupportedSaslMechanism" in msg:
            self.seen = msg.split(": ", 1)[-1]


async def wait_for_broker(settings: KafkaSettings, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    auth = _AuthFailures()
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.addHandler(auth)
    try:
        while time.monotonic() < deadline:
            admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker,
                                        request_timeout_ms=5000, **settings.client_options)
            try:
                await admin.start()
                await admin.list_topics()
                return
            except Exception as e:  # noqa: BLE001 - any failure means "not yet"
                last = e
                if auth.seen:           # credentials do not get better by waiting
                    break
                await asyncio.sleep(0.5)
            finally:
                await admin.close()
    finally:
        aiokafka_log.removeHandler(auth)
    if auth.seen:
        raise BrokerUnavailable(f"broker {settings.broker} refused the login "
                                f"({settings.describe_security()}): {auth.seen}")
    raise BrokerUnavailable(f"broker {settings.broker} did not answer within {timeout:.0f}s "
                            f"({settings.describe_security()}): {last}")


async def ensure_topics(settings: KafkaSettings, specs: dict[str, dict]) -> None:
    """Create topics that do not exist yet. specs: name -> {partitions, compact, max_bytes}
    (max_bytes: the topic's max.message.bytes, the largest record batch it takes)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker, **settings.client_options)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = []
        for name, spec in specs.items():
            full = settings.topic(name)
            if full in existing:
                continue
            cfg = {"cleanup.policy": "compact"} if spec.get("compact") else {}
            if spec.get("max_bytes"):
                cfg["max.message.bytes"] = str(spec["max_bytes"])
            new.append(NewTopic(full, spec.get("partitions", 4), 1, topic_configs=cfg))
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def drop_topics(settings: KafkaSettings, prefixes: tuple[str, ...] | None = None) -> int:
    """Delete every topic under the settings' prefix (a prefix of one run's own: a bench
    run's, an integration test's), or under any of `prefixes`; returns how many there
    were."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker, **settings.client_options)
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics()
                if t.startswith(prefixes if prefixes is not None else settings.prefix)]
        if mine:
            await admin.delete_topics(mine)
        return len(mine)
    finally:
        await admin.close()


async def topic_partitions(settings: KafkaSettings, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker, **settings.client_options)
    await admin.start()
    try:
        desc = await admin.describe_topics([settings.topic(topic)])
        return len(desc[0]["partitions"])
    finally:
        await admin.close()


async def read_to_end(consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                      timeout: float, what: str
                      ) -> tuple[list[Any], dict[TopicPartition, int]]:
    """Every record of these partitions, from their beginning to their end offsets as of the
    call (returned too), in order per partition; BrokerUnavailable after `timeout` s.

    Seeks to explicit beginning offsets: `seek_to_beginning` on a consumer whose reset
    policy is "latest" (aiokafka's default) was seen to leave the position at the end."""
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    for tp, start in (await consumer.beginning_offsets(tps)).items():
        consumer.seek(tp, start)
    out: list[Any] = []
    todo = {tp for tp in tps if ends[tp] > 0}
    deadline = time.monotonic() + timeout
    while todo:
        if time.monotonic() >= deadline:
            raise BrokerUnavailable(f"reading {what} did not reach its end within "
                                    f"{timeout:.0f}s")
        for tp, msgs in (await consumer.getmany(*todo, timeout_ms=500)).items():
            out.extend(m for m in msgs if m.offset < ends[tp])
        for tp in list(todo):
            if await consumer.position(tp) >= ends[tp]:
                todo.discard(tp)
    return out, ends


async def publish_lines(settings: KafkaSettings, topic: str, lines: Iterable[bytes],
                        key_fn=subject_key_of) -> int:
    """Send each non-empty line verbatim as a message value; returns how many were sent."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker, linger_ms=5,
                                max_batch_size=256 * 1024, **settings.client_options)
    try:
        await producer.start()
    except KafkaConnectionError as e:
        await producer.stop()
        raise BrokerUnavailable(f"cannot reach broker {settings.broker} "
                                f"({settings.describe_security()}): {e}") from None
    n = 0
    pending = []
    try:
        for line in lines:
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            pending.append(await producer.send(settings.topic(topic), line, key=key_fn(line)))
            n += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        if pending:
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


async def tail(settings: KafkaSettings, topic: str, out: BinaryIO, *, from_beginning: bool,
               idle_timeout: float | None, max_messages: int | None = None) -> int:
    """Print message values as JSON lines until idle for `idle_timeout` seconds."""
    consumer = AIOKafkaConsumer(
        settings.topic(topic), bootstrap_servers=settings.broker, enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest", group_id=None,
        **settings.client_options)
    try:
        await consumer.start()
    except KafkaConnectionError as e:
        await consumer.stop()
        raise BrokerUnavailable(f"cannot reach broker {settings.broker} "
                                f"({settings.describe_security()}): {e}") from None
    n = 0
    last = time.monotonic()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            got = False
            for msgs in batch.values():
                for m in msgs:
                    got = True
                    v = m.value
                    if v is None:
                        out.write(orjson.dumps({"key": (m.key or b"").decode("utf-8", "replace"),
                                                "tombstone": True}) + b"\n")
                    else:
                        out.write(v.rstrip(b"\n") + b"\n")
                    n += 1
                    if max_messages is not None and n >= max_messages:
                        out.flush()
                        return n
            if got:
                out.flush()
                last = time.monotonic()
            elif idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                return n
    finally:
        await consumer.stop()
        try:
            out.flush()
        except BrokenPipeError:
            pass
        sys.stderr.flush()
