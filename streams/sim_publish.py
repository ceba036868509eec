"""Publishing simulated traffic to Kafka, optionally paced to its event time (for demos)."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiokafka import AIOKafkaProducer

from rings.sim import Simulator
from rings.timefmt import parse_ts

from .config import KafkaSettings
from .kafka_io import publish_lines


def publish_sim(settings: KafkaSettings, topic: str, sim: Simulator, *, realtime: bool,
                speed: float = 1.0, watchlist_topic: str | None = None,
                stop_after: float | None = None) -> int:
    return asyncio.run(_publish(settings, topic, sim, realtime, speed, watchlist_topic,
                                stop_after))


async def _publish(settings: KafkaSettings, topic: str, sim: Simulator, realtime: bool,
                   speed: float, watchlist_topic: str | None, stop_after: float | None) -> int:
    if watchlist_topic:
        await publish_lines(settings, watchlist_topic,
                            [orjson.dumps(e) for e in sim.watchlist()])
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker, linger_ms=5,
                                **settings.client_options)
    await producer.start()
    n = 0
    t_wall0 = time.monotonic()
    t_ev0: int | None = None
    pending = []
    try:
        for rec in sim.sightings():
            if realtime:
                ts = parse_ts(rec["ts"])[0]
                if t_ev0 is None:
                    t_ev0 = ts
                due = (ts - t_ev0) / 1000 / speed
                ahead = due - (time.monotonic() - t_wall0)
                if ahead > 0.005:
                    if pending:
                        await asyncio.gather(*pending)
                        pending.clear()
                    await asyncio.sleep(ahead)
            if stop_after is not None and time.monotonic() - t_wall0 > stop_after:
                break
            s = rec["subject"]
            key = f"{s['type']}:{s['id']}".encode()
            pending.append(await producer.send(settings.topic(topic), orjson.dumps(rec), key=key))
            n += 1
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        if pending:
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n
