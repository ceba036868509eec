"""The lockdown plans on Kafka: commands and acks in, orders, status, audit and alerts out.

    plan-commands ─┐ (forwarders: any partitioning)
    plan-acks ─────┼──▶ rings-plan-inbox (1 partition) ──plans (Desk)──▶ plan-orders, plan-status,
    alerts of rules│                                                     plan-audit, plan-dlq, alerts
    with `plan` ───┘

Activations are few (a handful a day, tens of sites each), and every input concerns state
that another input may change (an ack, its activation; an activation, the one it repeats),
so all of them meet in one partition, in one order, on one worker: the inbox. Its table
(`plan-state`, RocksDB and changelog) holds the activations, and a timer on the worker that
owns it fires the deadlines, also right after a restart.

Per input: the desk decides, the outputs are sent and delivered, and only then are the new
state and the inbox offset written (one changelog batch). A crash in between makes the input
run again on the state before it; the desk's ids are deterministic, so what is sent again
is the same records, which consumers deduplicate (at-least-once, like alerts).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any, Awaitable, Callable

import faust
import orjson

from rings.decode import Rejected
from rings.lockdown import Desk, Outcome, Source
from rings.models import Alert
from rings.net import Net
from rings.ruleset import RuleSet

from .changelog import MAX_FLUSH_BYTES, ChangelogWriter, PartitionKV
from .config import (PLAN_ACKS, PLAN_AUDIT, PLAN_COMMANDS, PLAN_DLQ, PLAN_INBOX, PLAN_ORDERS,
                     PLAN_STATUS, KafkaSettings)
from .metrics import Metrics

log = logging.getLogger("rings.worker")
TICK_S = 1.0


def inbox_record(kind: str, src: tuple[str, int, int, int], raw: bytes | None = None,
                 alert: dict[str, Any] | None = None) -> bytes:
    """An inbox message: what it is, where it came from, and the original bytes exactly."""
    d: dict[str, Any] = {"k": kind, "src": list(src)}
    if alert is not None:
        d["alert"] = alert
    if raw is not None:
        try:
            d["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            d["b64"] = base64.b64encode(raw).decode("ascii")
    return orjson.dumps(d)


def forwarded_from(value: bytes) -> tuple[str | None, int]:
    """For a command or ack forwarded to the inbox: the bookkeeping key of its source
    partition and its source offset; (None, -1) for anything else (a rule's trigger, a
    record that does not parse: `_apply` reports it)."""
    try:
        d = orjson.loads(value)
        if d.get("k") in ("cmd", "ack"):
            topic, partition, offset = d["src"][:3]
            return f"~src:{topic}:{int(partition)}", int(offset)
    except Exception:  # noqa: BLE001
        pass
    return None, -1


class Lockdown:
    """The plan agents of one worker (built by `build_app`)."""

    def __init__(self, app: faust.App, settings: KafkaSettings, net: Net, rules: RuleSet,
                 metrics: Metrics, changelog: ChangelogWriter,
                 raw_topic: Callable[..., Any], emit: Callable[[list[Alert]], Awaitable[None]],
                 kv_for: Callable[[Any, int], PartitionKV]) -> None:
        self.app = app
        self.settings = settings
        self.net = net
        self.rules = rules
        self.metrics = metrics
        self.changelog = changelog
        self.emit = emit
        self.kv_for = kv_for
        self.desk: Desk | None = None
        self.lock = asyncio.Lock()
        self.inbox = raw_topic(PLAN_INBOX, partitions=1, internal=True)
        self.commands = raw_topic(PLAN_COMMANDS)
        self.acks = raw_topic(PLAN_ACKS)
        self.orders = raw_topic(PLAN_ORDERS)
        self.status = raw_topic(PLAN_STATUS)
        self.audit = raw_topic(PLAN_AUDIT)
        self.dlq = raw_topic(PLAN_DLQ)
        self.table = app.Table("plan-state", key_type=bytes, value_type=bytes, partitions=1,
                               options={"driver": "rocksdict"})
        self._install()

    def reset(self) -> None:
        """After a rebalance: the inbox partition may be elsewhere now."""
        self.desk = None

    def set_rules(self, rules: RuleSet) -> None:
        """A pushed rule set: its plans apply from the next input (activations of a plan
        that is gone run on, with the deadlines they were given)."""
        self.rules = rules
        self.desk = None

    async def trigger(self, alerts: list[Alert], emitted: str) -> None:
        """Alerts whose rule activates a plan go to the inbox (after the alerts themselves)."""
        now_ms = int(time.time() * 1000)
        futs = [await self.inbox.send(value=inbox_record(
            "trigger", ("alerts", -1, -1, now_ms), alert=a.to_json(emitted)), partition=0)
            for a in alerts if a.plan]
        if futs:
            await asyncio.gather(*futs)

    # ------------------------------------------------------------------ agents

    def _install(self) -> None:
        app = self.app

        async def forward(kind: str, stream: Any) -> None:
            async for event in stream.events():
                m = event.message
                src = (m.topic, m.partition, m.offset, int((m.timestamp or 0) * 1000))
                fut = await self.inbox.send(value=inbox_record(kind, src, m.value or b""),
                                            partition=0)
                await fut

        async def plan_commands(stream: Any) -> None:
            await forward("cmd", stream)

        async def plan_acks(stream: Any) -> None:
            await forward("ack", stream)

        app.agent(self.commands, name="plan-commands")(plan_commands)
        app.agent(self.acks, name="plan-acks")(plan_acks)

        async def plans(stream: Any) -> None:
            async for event in stream.events():
                off = event.message.offset
                async with self.lock:
                    desk, kv = self._desk()
                    raw_last = kv.get("~off")
                    if raw_last is not None and off <= int(raw_last):
                        continue
                    # A forwarder reads its topic at least once: after a rebalance it can
                    # forward a command or ack again, at a new inbox offset. The source
                    # position tells a repeat (each source partition is forwarded in order).
                    seen_key, src_off = forwarded_from(event.value)
                    if seen_key is not None:
                        raw_seen = kv.get(seen_key)
                        if raw_seen is not None and src_off <= int(raw_seen):
                            log.info("plans: a forwarded record seen before, skipped")
                            kv.put("~off", str(off).encode())
                            await self.changelog.flush(kv)
                            continue
                    try:
                        out = self._apply(desk, event.value, int(time.time() * 1000))
                    except Exception:  # noqa: BLE001 - a bug: keep the input, go on
                        log.exception("plans failed on an inbox record; kept on the plan "
                                      "DLQ")
                        out = Outcome(dead=[Rejected(event.value, "engine-error",
                                                     "the engine failed on this record")])
                        self.desk = None          # reload from the store: drop half-applied
                        kv.discard_writes()
                    await self._send(out)
                    if seen_key is not None:
                        kv.put(seen_key, str(src_off).encode())
                    kv.put("~off", str(off).encode())
                    await self.changelog.flush(kv)

        app.agent(self.inbox, name="plans")(plans)

        @app.timer(TICK_S)
        async def plan_deadlines() -> None:
            if app.rebalancing or getattr(app, "in_recovery", False) or not self._owned():
                return
            async with self.lock:
                desk, kv = self._desk()
                out = desk.tick(int(time.time() * 1000))
                await self._send(out)
                await self.changelog.flush(kv)
                for plan, n in desk.overdue_sites_by_plan().items():
                    self.metrics.plan_overdue_sites.labels(plan).set(n)

    def _owned(self) -> bool:
        tp_topic = self.inbox.get_topic_name()
        return any(tp.topic == tp_topic for tp in self.app.assignor.assigned_actives())

    def _desk(self) -> tuple[Desk, PartitionKV]:
        kv = self.kv_for(self.table, 0)
        if self.desk is None or self.desk.store is not kv:
            self.desk = Desk(self.net, self.rules.plans, kv, self.rules.version,
                             self.rules.utc_offset_min)
        return self.desk, kv

    def _apply(self, desk: Desk, value: bytes, now: int) -> Outcome:
        d = orjson.loads(value)
        topic, partition, offset, ts = d["src"]
        src = Source(topic, partition, offset, ts)
        raw = d["raw"].encode() if "raw" in d else base64.b64decode(d.get("b64", ""))
        kind = d["k"]
        if kind == "cmd":
            return desk.command(raw, src, now)
        if kind == "ack":
            return desk.ack(raw, src, now)
        alert = d["alert"]
        return desk.trigger(alert, orjson.dumps(alert), src, now)

    # ------------------------------------------------------------------ outputs

    async def _send(self, out: Outcome) -> None:
        """Deliver everything the desk decided, retrying through a broker outage: the
        state that says it was done is written only after this returns."""
        delay = 0.5
        while True:
            try:
                await self._send_once(out)
                break
            except Exception as e:  # noqa: BLE001
                log.warning("plan outputs not delivered (%s); sending again", type(e).__name__)
                await asyncio.sleep(delay)
                delay = min(10.0, delay * 2)
        m = self.metrics
        for what, plan, value in out.events:
            if what == "activated":
                m.plan_activations.labels(plan, value).inc()
            elif what == "responded":
                m.plan_time_to_respond.labels(plan).observe(value)
            elif what == "closed":
                m.plan_time_to_close.labels(plan).observe(value)
        for d in out.dead:
            m.dlq.labels(d.reason).inc()
            log.info("plan input refused to %s: %s", PLAN_DLQ, d.reason)
        for s in out.statuses:
            log.info("plan %s activation %s: %s", s["plan"], s["activation"], s["state"])

    async def _send_once(self, out: Outcome) -> None:
        futs = []
        for o in out.orders:
            futs.append(await self.orders.send(key=o["activation"].encode(),
                                               value=orjson.dumps(o)))
        for s in out.statuses:
            futs.append(await self.status.send(key=s["activation"].encode(),
                                               value=orjson.dumps(s)))
        for k, v in out.audit:
            futs.append(await self.audit.send(key=k.encode(), value=orjson.dumps(v)))
        for d in out.dead:
            futs.append(await self.dlq.send(value=orjson.dumps(d.to_json()),
                                            headers={"rings-reason": d.reason.encode()}))
        if futs:
            await asyncio.gather(*futs)
        if out.alerts:
            await self.emit(out.alerts)


def topic_specs() -> dict[str, dict]:
    """The plan topics, for `rings worker` to create: commands and acks are tiny streams,
    and the audit trail is compacted under one key per event, so it is kept for good."""
    return {PLAN_COMMANDS: {"partitions": 1}, PLAN_ACKS: {"partitions": 1},
            PLAN_ORDERS: {"partitions": 1}, PLAN_STATUS: {"partitions": 1},
            PLAN_AUDIT: {"partitions": 1, "compact": True}, PLAN_DLQ: {"partitions": 1},
            PLAN_INBOX: {"partitions": 1},
            "rings-plan-state-changelog": {"partitions": 1, "compact": True,
                                           "max_bytes": MAX_FLUSH_BYTES}}
