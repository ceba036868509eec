"""Kafka I/O of `rings plan`: send a command and wait for the worker's answer; read status.

Plain aiokafka, like `kafka_io`: the command line must not need Faust. A command is
answered on two topics: `plan-status` (it was applied) or `plan-dlq` (it was refused). The
answer can come within milliseconds, so the end offsets of both are taken *before* the
command is sent and read from there: nothing the worker writes in reply can be missed, and
nothing written before is mistaken for the reply.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError

from .config import PLAN_COMMANDS, PLAN_DLQ, PLAN_STATUS, KafkaSettings
from .errors import BrokerUnavailable, StreamsError
from .kafka_io import read_to_end

READ_TIMEOUT_S = 30.0              # reading a topic to its end: far more than it takes


class MissingTopic(StreamsError):
    """A plan topic does not exist: no worker has ever run against this broker/prefix."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The worker's reply to a command: `kind` is "status" or "dlq", `record` its JSON."""

    kind: str
    record: dict[str, Any]


Matcher = Callable[[str, dict[str, Any]], bool]


def _consumer(settings: KafkaSettings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=settings.broker, enable_auto_commit=False,
                            group_id=None, auto_offset_reset="earliest",
                            **settings.client_options)


async def _start(client: Any, settings: KafkaSettings) -> None:
    try:
        await client.start()
    except KafkaConnectionError as e:
        await (client.stop() if hasattr(client, "stop") else client.close())
        raise BrokerUnavailable(f"cannot reach broker {settings.broker}: {e}") from None


async def _partitions(settings: KafkaSettings, names: list[str]) -> list[TopicPartition]:
    """Every partition of these topics (names before the prefix); MissingTopic if one does
    not exist (sending would auto-create it with the broker's defaults, not the worker's).
    Asked of the admin API: a consumer knows partitions only of topics it has fetched."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker, **settings.client_options)
    await _start(admin, settings)
    try:
        full = [settings.topic(n) for n in names]
        desc = await admin.describe_topics(full)
    finally:
        await admin.close()
    parts = {d["topic"]: d for d in desc}
    tps = []
    for name in full:
        d = parts.get(name)
        if d is None or d.get("error_code") or not d.get("partitions"):
            raise MissingTopic(f"topic {name} does not exist on {settings.broker}: no "
                               "`rings worker` has run there yet (it creates the plan topics)")
        tps += [TopicPartition(name, p["partition"])
                for p in sorted(d["partitions"], key=lambda p: p["partition"])]
    return tps


def _decode(value: bytes | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return d if isinstance(d, dict) else None


async def command(settings: KafkaSettings, cmd: dict[str, Any], key: str, wait_s: float,
                  on_status: Matcher, on_dead: Matcher) -> Answer | None:
    """Send `cmd` to plan-commands and wait up to `wait_s` seconds for the first plan-status
    record `on_status` accepts or plan-dlq record `on_dead` accepts (each gets the topic
    and the decoded record). None when nothing came in time (or `wait_s` is 0: not asked)."""
    consumer = _consumer(settings)
    await _start(consumer, settings)
    try:
        out_tps = await _partitions(settings, [PLAN_STATUS, PLAN_DLQ])
        await _partitions(settings, [PLAN_COMMANDS])
        consumer.assign(out_tps)
        ends = await consumer.end_offsets(out_tps)
        for tp in out_tps:
            consumer.seek(tp, ends[tp])
        await _send(settings, PLAN_COMMANDS, key.encode(), orjson.dumps(cmd))
        if wait_s <= 0:
            return None
        status_topic = settings.topic(PLAN_STATUS)
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            batch = await consumer.getmany(timeout_ms=max(1, int(min(left, 0.5) * 1000)))
            for tp, msgs in batch.items():
                for m in msgs:
                    d = _decode(m.value)
                    if d is None:
                        continue
                    if tp.topic == status_topic:
                        if on_status(tp.topic, d):
                            return Answer("status", d)
                    elif on_dead(tp.topic, d):
                        return Answer("dlq", d)
        return None
    finally:
        await consumer.stop()


async def _send(settings: KafkaSettings, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker, acks="all",
                                enable_idempotence=True, **settings.client_options)
    await _start(producer, settings)
    try:
        await producer.send_and_wait(settings.topic(topic), value, key=key)
    except KafkaError as e:
        raise BrokerUnavailable(f"could not send to {settings.topic(topic)}: {e}") from None
    finally:
        await producer.stop()


async def read_status(settings: KafkaSettings, timeout: float = READ_TIMEOUT_S
                      ) -> list[dict[str, Any]]:
    """Every record of plan-status from the beginning to the end offsets of when it was
    called, in order per partition (an activation's records share a key, so a partition)."""
    consumer = _consumer(settings)
    await _start(consumer, settings)
    try:
        tps = await _partitions(settings, [PLAN_STATUS])
        records, _ = await read_to_end(consumer, tps, timeout, settings.topic(PLAN_STATUS))
        return [d for d in map(_decode, (m.value for m in records)) if d is not None]
    finally:
        await consumer.stop()
