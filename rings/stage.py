"""What every stage of the core shares: keyed state, a persisted watermark, and judging
queued items in event-time order once the watermark has passed them.

A stage queues items on arrival (`_arrive`), and when the watermark advances it judges, per
entity, everything queued before it (`_judge`), then reschedules or forgets the entity
(`_next_action`). The subject stage (`engine.Engine`) and the two convoy stages
(`convoy.SiteStage`, `convoy.PairStage`) differ only in those three hooks.
"""

from __future__ import annotations

from bisect import insort
from dataclasses import dataclass, field
from typing import Any, Generic, Iterable, TypeVar

import orjson

from .schedule import NEVER, NO_TIME, SECOND, EntityTable
from .state import KV

T = TypeVar("T")
O = TypeVar("O")


def _ts_id(row: list[Any]) -> tuple[Any, Any]:
    return row[0], row[1]


def insert_sorted(rows: list[list[Any]], row: list[Any]) -> None:
    """Insert into rows kept sorted by (ts, id): appended when in order (the usual case);
    out of order (several upstream partitions interleave), inserted in place, since a sort
    per insert cost the site stage most of its time."""
    if rows and (row[0], row[1]) < (rows[-1][0], rows[-1][1]):
        insort(rows, row, key=_ts_id)
    else:
        rows.append(row)


@dataclass(slots=True)
class Stats:
    """Counters the drivers turn into metrics; plain ints so the core stays dependency-free."""

    processed: int = 0
    duplicates: int = 0
    late: int = 0
    expired: int = 0
    alerts: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    excepted: int = 0          # alerts dropped by their rule's `exceptions:`


class Stage(Generic[T, O]):
    # Whether an entity's judgement and rescheduling is the last change to it in a batch, so
    # that it can be encoded at once (EntityTable.seal): not where judging one entity
    # changes another (the site stage's `hot` passes).
    seals = False

    def __init__(self, store: KV, namespace: str) -> None:
        self.store = store
        self.table = EntityTable(store, namespace)
        self._wm_key = f"~{namespace}wm"
        self.stats = Stats()
        raw = store.get(self._wm_key)
        self.watermark: int = orjson.loads(raw) if raw is not None else NO_TIME

    def process(self, batch: Iterable[T], watermark: int | None = None,
                advance_to: int | None = None) -> list[O]:
        """Take a batch. `watermark` is the driver's event-time watermark before the batch,
        `advance_to` the one after it (both from the driver, so that the worker and replay
        judge lateness alike)."""
        wm = self.watermark if watermark is None else max(self.watermark, watermark)
        out: list[O] = []
        try:
            arrive = self._arrive
            for item in batch:
                arrive(item, wm, out)
            target = wm if advance_to is None else max(wm, advance_to)
            if target > self.watermark:
                # Index the arrivals so that the sweep sees them, but write each entity
                # once per batch: advance() commits what both touched.
                self.table.index_pending(seal=self.seals)
                out.extend(self.advance(target))
            else:
                self.table.commit()
        except BaseException:
            self.table.discard()
            raise
        return out

    def advance(self, watermark: int) -> list[O]:
        """Move event time forward: judge what became final, expire what is over."""
        if watermark <= self.watermark:
            return []
        self.watermark = watermark
        self.store.put(self._wm_key, orjson.dumps(watermark))
        limit = self.limit
        out: list[O] = []
        judge, reschedule = self._judge, self._reschedule
        for key, st in self.table.due(watermark):
            judge(key, st, limit, out)
            reschedule(key, st, limit)
        self._after_sweep(limit)
        self.table.commit()
        return out

    @property
    def limit(self) -> int:
        """Items before this event time are final and judged (whole seconds: see due())."""
        return (self.watermark // SECOND) * SECOND

    def _reschedule(self, key: str, st: dict[str, Any], now: int | None = None) -> None:
        nx = self._next_action(st)
        if now is not None and nx < now:
            self.table.delete(key)
            self.stats.expired += 1
            return
        st["nx"] = min(nx, NEVER - 1)
        self.table.put(key, st)

    @staticmethod
    def enqueue(st: dict[str, Any], row: list[Any]) -> None:
        """Insert into the entity's queue, kept sorted by (ts, id)."""
        insert_sorted(st.setdefault("q", []), row)

    # hooks ------------------------------------------------------------------

    def _after_sweep(self, limit: int) -> None:
        """Everything before `limit` is judged (a stage whose entities serve each other as
        context forgets them only now)."""

    def _arrive(self, item: T, watermark: int, out: list[O]) -> None:
        raise NotImplementedError

    def _judge(self, key: str, st: dict[str, Any], limit: int, out: list[O]) -> None:
        raise NotImplementedError

    def _next_action(self, st: dict[str, Any]) -> int:
        raise NotImplementedError
