"""Ingest: raw sightings in, validated batch envelopes out, bad records to the DLQ.

This stage reads the `sightings` topic with aiokafka directly, not through a Faust agent:
a Faust agent pays its per-message cost for every sighting, while `getmany` hands over
thousands at once and the core decodes them in bulk. It runs inside the worker as a Faust
service, in its own consumer group, and commits its offsets only after the envelopes and
DLQ records of a batch are acknowledged by the broker (at least once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from mode import Service

from rings.clock import Watermark
from rings.convoy import vehicle_pass
from rings.engine import NO_TIME
from rings.decode import Limits, Rejected, decode_sightings
from rings.net import Net
from rings.pseudonym import Pseudonymizer

from .config import BY_SITE, BY_SUBJECT, SIGHTINGS, SIGHTINGS_DLQ, KafkaSettings
from .envelope import Envelope, partition_for
from .metrics import Metrics

log = logging.getLogger("rings.ingest")
TICK_S = 0.05           # seconds between envelopes that only carry event time
COMMIT_S = 0.5          # seconds between commits of the sightings consumed
SITE_HOLD_S = 0.25      # seconds rows wait for the site stage (see handle)


class IngestService(Service):
    def __init__(self, settings: KafkaSettings, net: Net, lateness_ms: int, partitions: int,
                 group_id: str, metrics: Metrics, *, by_site: bool, max_records: int = 5000,
                 tick_ms: int = 100, limits: Limits = Limits(),
                 pseudonyms: Pseudonymizer | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        # internal topic -> (partitioned by, vehicles only)
        self.targets: dict[str, tuple[str, bool]] = {
            settings.topic(BY_SUBJECT): ("subject", False)}
        if by_site:
            self.targets[settings.topic(BY_SITE)] = ("site", True)
        self.settings = settings
        self.net = net
        self.partitions = partitions
        self.group_id = group_id
        self.metrics = metrics
        self.max_records = max_records
        self.tick_ms = tick_ms
        self.limits = limits
        self.wm = Watermark(lateness_ms)
        self.pseudonyms = pseudonyms
        hold = {BY_SUBJECT: 0.0, BY_SITE: SITE_HOLD_S}
        self._hold_s = {settings.topic(t): hold[t] for t in (BY_SUBJECT, BY_SITE)
                        if settings.topic(t) in self.targets}
        self._held: dict[str, dict[int, tuple[list, list]]] = {t: {} for t in self.targets}
        self._sent_at = {t: 0.0 for t in self.targets}
        self._sent_wm: dict[str, dict[int, int] | None] = {t: None for t in self.targets}
        self._tick_at = {t: 0.0 for t in self.targets}
        self._uncommitted: dict[TopicPartition, OffsetAndMetadata] = {}
        self._site_partition: dict[str, int] = {}    # murmur2 in Python is slow; sites few
        self._committed_at = 0.0
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.ingested = 0
        self.rejected = 0
        self.started_consuming = False
        self.lag: dict[tuple[str, int], int] = {}    # (topic, partition): records unread

    def use_rules(self, lateness_ms: int, limits: Limits) -> None:
        """A rule set pushed while running: its lateness and event-time bounds apply from
        the next batch."""
        self.wm.lateness_ms = lateness_ms
        self.limits = limits

    async def on_start(self) -> None:
        s = self.settings
        self.consumer = AIOKafkaConsumer(
            s.topic(SIGHTINGS), bootstrap_servers=s.broker, group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=16 * 1024 * 1024,
            **s.client_options)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.broker, linger_ms=2, max_batch_size=1024 * 1024,
            max_request_size=8 * 1024 * 1024, acks="all", **s.client_options)
        await self.producer.start()
        await self.consumer.start()

    async def on_stop(self) -> None:
        if self.consumer is not None:
            if self._uncommitted:
                try:
                    await self.consumer.commit(dict(self._uncommitted))
                except Exception:  # noqa: BLE001 - read again at the next start
                    log.warning("could not commit the last ingested offsets")
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    @Service.task
    async def _run(self) -> None:
        assert self.consumer is not None
        while not self.should_stop:
            try:
                batch = await self.consumer.getmany(timeout_ms=self.tick_ms,
                                                    max_records=self.max_records)
                self.started_consuming = True
                await self.handle(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the ingest must never die of one batch
                log.exception("ingest batch failed; retrying from the last committed offset")
                await self._rewind()
                await asyncio.sleep(1.0)

    async def _rewind(self) -> None:
        assert self.consumer is not None
        # Rows not yet sent are read again from the committed offsets.
        for held in self._held.values():
            held.clear()
        self._uncommitted.clear()
        for tp in self.consumer.assignment():
            committed = await self.consumer.committed(tp)
            if committed is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)


    async def _caught_up(self) -> list[int]:
        """Partitions read to their end (as far as the last fetch knows): only these may go
        idle; one with unread data holds event time back however long it waits."""
        assert self.consumer is not None
        out = []
        lag = {}
        for tp in self.consumer.assignment():
            hw = self.consumer.highwater(tp)
            if hw is not None:
                pos = await self.consumer.position(tp)
                lag[(tp.topic, tp.partition)] = max(0, hw - pos)  # rings_consumer_lag_records
                if pos >= hw:
                    out.append(tp.partition)
        self.lag = lag
        return out

    async def handle(self, batch: dict[TopicPartition, list]) -> None:
        assert self.producer is not None and self.consumer is not None
        sites = self.net.sites
        dlq_topic = self.settings.topic(SIGHTINGS_DLQ)
        # target topic -> partition -> (rows, kafka timestamps)
        outs: dict[str, dict[int, tuple[list, list]]] = {t: {} for t in self.targets}
        futures = []
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        per_site: dict[str, int] = {}        # counted per batch: a label lookup each is slow
        site_part = self._site_partition
        # The reference of the rule set's event-time bounds (future-ts, too-old): this
        # worker's clock as it reads the batch.
        now_ms = int(time.time() * 1000)
        for tp, msgs in batch.items():
            raws = [m.value if m.value is not None else b"" for m in msgs]
            ok, bad = decode_sightings(raws, sites, self.limits, now_ms)
            for i, err in bad:
                m = msgs[i]
                rej = Rejected(raws[i], err.reason, err.detail, m.key,
                               (tp.topic, tp.partition, m.offset))
                futures.append(await self.producer.send(
                    dlq_topic, orjson.dumps(rej.to_json()), key=m.key,
                    headers=[("rings-reason", err.reason.encode())]))
                self.metrics.dlq.labels(err.reason).inc()
            self.rejected += len(bad)
            now = time.monotonic()
            pz = self.pseudonyms
            for i, s in ok:
                if pz is not None:
                    s = pz.sighting(s)          # before anything is kept or sent on
                self.wm.observe(tp.partition, s.ts, now)
                # Without `attrs`: no stage reads them, and they were a dict to encode
                # here and to decode in each stage for every sighting.
                kts = msgs[i].timestamp
                for topic, (by, vehicles_only) in self.targets.items():
                    if vehicles_only and s.subject.type != "vehicle":
                        continue
                    if by == "subject":
                        p = partition_for(s.key.encode(), self.partitions)
                        row = s.to_row(attrs=False)
                    else:
                        p = site_part.get(s.site)
                        if p is None:
                            p = site_part[s.site] = partition_for(s.site.encode(),
                                                                  self.partitions)
                        row = vehicle_pass(s)
                    rows, stamps = outs[topic].setdefault(p, ([], []))
                    rows.append(row)
                    stamps.append(kts)
                per_site[s.site] = per_site.get(s.site, 0) + 1
            self.ingested += len(ok)
            offsets[tp] = OffsetAndMetadata(msgs[-1].offset + 1, "")
        for site_id, n in per_site.items():
            site = sites[site_id]
            self.metrics.sightings.labels(site.type, site.ring or "off-ring").inc(n)
        now = time.monotonic()
        owned = [tp.partition for tp in self.consumer.assignment()]
        self.wm.assign(owned, now)
        caught_up = await self._caught_up()
        wm = self.wm.value(now, caught_up)
        src = self.wm.claims(now, caught_up)
        # Rows wait in `_held` until their topic's envelopes go out. The subject stage gets
        # them at once (its arrival rules answer in milliseconds); the site stage, ordered
        # only and judged after the lateness anyway, every SITE_HOLD_S: its state per site
        # is large and rewritten for each envelope, and an envelope per fetch was most of
        # the worker's time at a steady 2,000 sightings/s.
        for topic, parts in outs.items():
            held = self._held[topic]
            for p, (rows, stamps) in parts.items():
                hr, hs = held.setdefault(p, ([], []))
                hr.extend(rows)
                hs.extend(stamps)
        commit_due = bool(self._uncommitted or offsets) and (
            now - self._committed_at >= COMMIT_S or self.should_stop)
        for topic, held in self._held.items():
            if not (commit_due or now - self._sent_at[topic] >= self._hold_s[topic]):
                continue
            # A tick tells every partition the time, rows or not; at most every TICK_S (a
            # tick per fetch flooded the stage agents with envelopes, each a Faust message
            # and a changelog write).
            tick = src != self._sent_wm[topic] and now - self._tick_at[topic] >= TICK_S
            for p in (range(self.partitions) if tick else list(held)):
                rows, stamps = held.get(p, ([], []))
                for part in Envelope(src, rows, stamps).encode_parts():
                    futures.append(await self.producer.send(topic, part, partition=p))
            held.clear()
            self._sent_at[topic] = now
            if tick:
                self._sent_wm[topic] = src
                self._tick_at[topic] = now
        if futures:
            await asyncio.gather(*futures)
        if wm != NO_TIME:
            self.metrics.watermark.set(wm / 1000)
        # Committed after the envelopes are acknowledged (at least once), at most every
        # COMMIT_S: a commit per fetch was a broker round trip in line with every batch.
        self._uncommitted.update(offsets)
        if commit_due:                  # every held row went out above
            await self.consumer.commit(dict(self._uncommitted))
            self._uncommitted.clear()
            self._committed_at = now
