"""The `rules` topic: pushing a rule set, and following it in a running worker.

The topic is compacted with one key (`rules`): its last record is the rule set every worker
should run. A worker reads it to its end before it starts (so a restart keeps the pushed
rules, not the files it was started with) and then follows it; a record that is not a valid
rule set for this net is refused and the running set stays. Every push is also kept in the
compacted `rules-audit` topic under its own key: who pushed which version, when and why.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from mode import Service

from rings.errors import RingsError
from rings.net import Net
from rings.rulebundle import rules_from_bundle
from rings.ruleset import RuleSet

from .config import RULES, RULES_AUDIT, KafkaSettings
from .kafka_io import ensure_topics, read_to_end

log = logging.getLogger("rings.worker")
RULES_KEY = b"rules"
TOPICS = {RULES: {"partitions": 1, "compact": True},
          RULES_AUDIT: {"partitions": 1, "compact": True}}


async def publish_bundle(settings: KafkaSettings, bundle: dict[str, Any]) -> None:
    await ensure_topics(settings, TOPICS)
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker, acks="all",
                                enable_idempotence=True, **settings.client_options)
    await producer.start()
    try:
        audit = {k: bundle[k] for k in ("version", "by", "reason", "pushed", "rules", "plans")}
        await producer.send_and_wait(settings.topic(RULES_AUDIT), orjson.dumps(audit),
                                     key=f"{bundle['pushed']}:{bundle['version']}".encode())
        await producer.send_and_wait(settings.topic(RULES), orjson.dumps(bundle),
                                     key=RULES_KEY)
    finally:
        await producer.stop()


async def read_latest(settings: KafkaSettings, net: Net
                      ) -> tuple[RuleSet | None, dict[str, Any] | None, int]:
    """The last valid rule set on the topic (None if none) and the offset after its end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.broker, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **settings.client_options)
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic(RULES), 0)
        records, ends = await read_to_end(consumer, [tp], 60.0, settings.topic(RULES))
        end = ends[tp]
        last: tuple[RuleSet | None, dict[str, Any] | None] = (None, None)
        for m in records:
            got = _parse(m.value, net)
            if got is not None:
                last = got
        return last[0], last[1], end
    finally:
        await consumer.stop()


def _parse(value: bytes | None, net: Net) -> tuple[RuleSet, dict[str, Any]] | None:
    if value is None:
        return None
    try:
        bundle = orjson.loads(value)
        return rules_from_bundle(bundle, net), bundle
    except (orjson.JSONDecodeError, RingsError) as e:
        log.warning("ignoring a record on the rules topic that is not a valid rule set for "
                    "this net: %s", str(e).splitlines()[0][:300])
        return None


class RulesFeed(Service):
    """Follows the `rules` topic from `offset` and calls `on_change` with each new set."""

    def __init__(self, settings: KafkaSettings, net: Net, offset: int,
                 on_change: Callable[[RuleSet, dict[str, Any]], None],
                 on_refused: Callable[[], None], **kw: Any) -> None:
        super().__init__(**kw)
        self.settings = settings
        self.net = net
        self.offset = offset
        self.on_change = on_change
        self.on_refused = on_refused

    @Service.task
    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.broker, group_id=None,
                                    enable_auto_commit=False, **self.settings.client_options)
        await consumer.start()
        try:
            tp = TopicPartition(self.settings.topic(RULES), 0)
            consumer.assign([tp])
            consumer.seek(tp, self.offset)
            while not self.should_stop:
                batch = await consumer.getmany(tp, timeout_ms=500)
                for m in batch.get(tp, []):
                    got = _parse(m.value, self.net)
                    if got is None:
                        if m.value is not None:
                            self.on_refused()
                        continue
                    self.on_change(*got)
        except asyncio.CancelledError:
            raise
        finally:
            await consumer.stop()
