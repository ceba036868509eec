"""`rings simulate --answer-orders`: simulated checkpoints on Kafka.

Reads `plan-orders`, lets `rings.checkpoints.Checkpoints` decide how each site answers, and
sends the acknowledgements to `plan-acks` when they are due, keyed by activation, with `ts`
the time of sending. A stand-down order cancels the answers of its activation not sent yet.
Plain aiokafka, like the other command-line clients; `rings demo` runs it in a thread.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Callable, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from rings.checkpoints import STAND_DOWN, Answer, Checkpoints
from rings.errors import InvalidRecord
from rings.timefmt import format_ts

from .config import PLAN_ACKS, PLAN_ORDERS, KafkaSettings
from .errors import BrokerUnavailable

POLL_MS = 200


@dataclass(slots=True)
class SimStats:
    orders: int = 0
    stand_downs: int = 0
    cancelled: int = 0
    acks: int = 0
    refused: int = 0          # orders that did not parse


def _now_ms() -> int:
    return int(time.time() * 1000)


async def answer_orders(settings: KafkaSettings, model: Checkpoints, *,
                        from_beginning: bool = False, duration: float = 0.0,
                        quiet: bool = False, out: TextIO = sys.stdout,
                        should_stop: Callable[[], bool] | None = None,
                        ready: Callable[[], None] | None = None,
                        stats: SimStats | None = None) -> SimStats:
    """Answer orders until `duration` wall-clock seconds have passed (0: for ever), or
    `should_stop()` says so. `ready()` is called once the consumer knows where it reads
    from (orders sent after that are answered)."""
    consumer = AIOKafkaConsumer(
        settings.topic(PLAN_ORDERS), bootstrap_servers=settings.broker, group_id=None,
        enable_auto_commit=False, auto_offset_reset="earliest" if from_beginning else "latest",
        metadata_max_age_ms=5000, **settings.client_options)
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker, linger_ms=5,
                                acks="all", **settings.client_options)
    stats = stats if stats is not None else SimStats()
    try:
        try:
            await consumer.start()
            await producer.start()
        except KafkaConnectionError as e:
            raise BrokerUnavailable(f"cannot reach broker {settings.broker}: {e}") from None
        acks_topic = settings.topic(PLAN_ACKS)
        end = time.monotonic() + duration if duration > 0 else None
        is_ready = False
        while True:
            if should_stop is not None and should_stop():
                break
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                break
            wait = POLL_MS
            nxt = model.next_due()
            if nxt is not None:
                wait = max(0, min(wait, nxt - _now_ms()))
            if left is not None:
                wait = max(0, min(wait, int(left * 1000)))
            batch = await consumer.getmany(timeout_ms=wait, max_records=1000)
            if not is_ready and consumer.assignment():
                for tp in consumer.assignment():
                    await consumer.position(tp)       # resolves "from the end" now
                is_ready = True
                if ready is not None:
                    ready()
            now = _now_ms()
            for msgs in batch.values():
                for m in msgs:
                    _take(model, m.value, now, stats, quiet, out)
            due = model.due(_now_ms())
            if due:
                await _send(producer, acks_topic, due, stats, quiet, out)
    finally:
        await consumer.stop()
        await producer.stop()
    return stats


def _take(model: Checkpoints, value: bytes | None, now: int, stats: SimStats, quiet: bool,
          out: TextIO) -> None:
    try:
        order = orjson.loads(value or b"")
        if type(order) is not dict:
            raise InvalidRecord("bad-order", "an order must be a JSON object")
        if order.get("action") == STAND_DOWN:
            n = model.cancel(str(order.get("activation")))
            stats.stand_downs += 1
            stats.cancelled += n
            if n and not quiet:
                print(f"stand-down {order.get('activation')}: {n} pending answers cancelled",
                      file=out, flush=True)
            return
        model.receive(order, now)
        stats.orders += 1
    except (orjson.JSONDecodeError, InvalidRecord) as e:
        stats.refused += 1
        print(f"rings simulate: order ignored: {e}", file=sys.stderr)


async def _send(producer: AIOKafkaProducer, topic: str, due: list[Answer], stats: SimStats,
                quiet: bool, out: TextIO) -> None:
    sent = []
    for a in due:
        ack = {**a.ack, "ts": format_ts(_now_ms())}
        fut = await producer.send(topic, orjson.dumps(ack), key=ack["activation"].encode())
        sent.append((fut, a))
    for fut, a in sent:
        await fut
        stats.acks += 1
        if not quiet:
            ack = a.ack
            print(f"{ack['site']:<8} {ack['activation']}  {ack['state']:<12} "
                  f"after {a.delay_ms / 1000:.1f}s", file=out, flush=True)


def run_answer_orders(settings: KafkaSettings, model: Checkpoints, *,
                      from_beginning: bool = False, duration: float = 0.0,
                      quiet: bool = False, stats: SimStats | None = None) -> SimStats:
    """The command line's entry: runs until `duration` seconds or Ctrl-C (KeyboardInterrupt
    goes through, after the clients are stopped; `stats` has the counts so far)."""
    return asyncio.run(answer_orders(settings, model, from_beginning=from_beginning,
                                     duration=duration, quiet=quiet, stats=stats))
