"""The detector core: batches of sightings in, alerts out, state in a key-value store.

Both drivers (the streaming worker and `rings replay`) call `Engine.process` with the same
sightings and get the same alerts; they differ only in where batches come from and in which
store backs the state. Per batch, each subject's state is read once and written once, so the
cost of the store (a changelog message per write in the worker) is paid per subject, not per
sighting.

State layout (all keys in one store, one store per partition):
- `s:<subject key>`: the subject's state (recent sighting ids, detectors' memory), JSON;
- `~x:<minute>`: subjects whose state may expire in that minute of event time (an index,
  so expiry never scans the store);
- `~wm`: the watermark reached, so a restarted worker does not move event time backwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import orjson

from .detectors import Context, Detector
from .models import Alert, Sighting
from .net import Net
from .ruleset import RuleSet
from .state import KV
from .watchlist import WatchlistView

BUCKET_MS = 60_000
NO_TIME = -(2**62)


@dataclass(slots=True)
class Stats:
    """Counters the drivers turn into metrics; plain ints so the core stays dependency-free."""

    processed: int = 0
    duplicates: int = 0
    late: int = 0
    expired: int = 0
    alerts: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


class Engine:
    def __init__(self, net: Net, rules: RuleSet, watchlist: WatchlistView, store: KV) -> None:
        self.net = net
        self.rules = rules
        self.ctx = Context(net, watchlist)
        self.store = store
        self.detectors: list[Detector] = list(rules.detectors)
        self.stateful = [d for d in self.detectors if d.stateful]
        self.stateless = [d for d in self.detectors if not d.stateful]
        self.horizon = max([rules.dedupe_ms, rules.lateness_ms,
                            *(d.horizon_ms() for d in self.detectors)])
        self.stats = Stats()
        raw = store.get("~wm")
        self.watermark: int = orjson.loads(raw) if raw is not None else NO_TIME
        self._swept_bucket = self.watermark // BUCKET_MS if self.watermark != NO_TIME else None
        self._low_bucket: int | None = None    # lowest bucket indexed before the first sweep

    # ------------------------------------------------------------------ processing

    def process(self, batch: Iterable[Sighting], watermark: int | None = None,
                advance_to: int | None = None) -> list[Alert]:
        """Run every rule over a batch; `watermark` is the driver's event-time watermark
        before the batch, `advance_to` the one after it (both from the driver, so that the
        worker and replay judge lateness alike).

        A sighting older than the watermark is late: stateless rules still judge it (a
        wanted car seen late is still a wanted car), stateful rules skip it.
        """
        alerts: list[Alert] = []
        states: dict[str, dict[str, Any]] = {}
        dirty: set[str] = set()
        wm = self.watermark if watermark is None else max(self.watermark, watermark)
        for s in batch:
            key = "s:" + s.key
            st = states.get(key)
            if st is None:
                raw = self.store.get(key)
                st = orjson.loads(raw) if raw is not None else {"seen": {}, "last": NO_TIME}
                states[key] = st
            seen = st["seen"]
            if s.id in seen:
                self.stats.duplicates += 1
                continue
            seen[s.id] = s.ts
            if s.ts > st["last"]:
                st["last"] = s.ts
            dirty.add(key)
            self.stats.processed += 1
            for d in self.stateless:
                alerts.extend(d.on_sighting(s, self.ctx, None))
            if s.ts < wm:
                self.stats.late += 1
            else:
                for d in self.stateful:
                    alerts.extend(d.on_sighting(s, self.ctx, st))
        self._write(states, dirty, wm)
        target = wm if advance_to is None else max(wm, advance_to)
        if target > self.watermark:
            alerts.extend(self.advance(target))
        for a in alerts:
            a.rules_version = self.rules.version
            self.stats.by_rule[a.rule] = self.stats.by_rule.get(a.rule, 0) + 1
        self.stats.alerts += len(alerts)
        return alerts

    def _write(self, states: dict[str, dict[str, Any]], dirty: set[str], wm: int) -> None:
        index_add: dict[int, list[str]] = {}
        # No state may be indexed into a bucket that is already swept (a very late sighting),
        # or, before the first sweep, far below the newest sighting here: both would be
        # missed by the sweep and kept forever. Such state expires at the next sweep instead.
        min_bucket = self._swept_bucket
        if min_bucket is None and dirty:
            min_bucket = max(states[k]["last"] for k in dirty) // BUCKET_MS - 2
        for key in dirty:
            st = states[key]
            seen = st["seen"]
            if len(seen) > 8:
                floor = st["last"] - self.rules.dedupe_ms
                st["seen"] = {i: t for i, t in seen.items() if t >= floor}
            bucket = max((st["last"] + self.horizon) // BUCKET_MS, min_bucket)
            if self._swept_bucket is None and (self._low_bucket is None
                                               or bucket < self._low_bucket):
                self._low_bucket = bucket
            if st.get("xb") != bucket:
                st["xb"] = bucket
                index_add.setdefault(bucket, []).append(key[2:])
            self.store.put(key, orjson.dumps(st))
        for bucket, keys in index_add.items():
            ikey = f"~x:{bucket}"
            raw = self.store.get(ikey)
            self.store.put(ikey, orjson.dumps((orjson.loads(raw) if raw else []) + keys))

    # ------------------------------------------------------------------ event time

    def advance(self, watermark: int) -> list[Alert]:
        """Move event time forward: expire state whose windows have passed."""
        if watermark <= self.watermark:
            return []
        self.watermark = watermark
        self.store.put("~wm", orjson.dumps(watermark))
        upto = watermark // BUCKET_MS          # buckets strictly below this are over
        start = self._swept_bucket
        if start is None:
            start = self._first_bucket(upto)
            if self._low_bucket is not None:
                start = min(start, self._low_bucket)
        for bucket in range(start, upto):
            ikey = f"~x:{bucket}"
            raw = self.store.get(ikey)
            if raw is None:
                continue
            for subject_key in orjson.loads(raw):
                key = "s:" + subject_key
                sraw = self.store.get(key)
                if sraw is None:
                    continue
                st = orjson.loads(sraw)
                if st.get("xb") == bucket:
                    self.store.delete(key)
                    self.stats.expired += 1
            self.store.delete(ikey)
        self._swept_bucket = upto
        return []

    def _first_bucket(self, upto: int) -> int:
        # First advance after a cold start: nothing older than the horizon can be indexed.
        return upto - (self.horizon // BUCKET_MS) - 2
