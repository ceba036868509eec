"""The subject stage of the detector core: sightings in, alerts out, state per subject.

Both drivers (the streaming worker and `rings replay`) call `Engine.process` with the same
sightings and watermarks and get the same alerts; they differ only in where batches come
from and in which store backs the state. Per batch, each subject's state is read once and
written once (see `schedule.EntityTable`), so a changelog-backed store costs per subject,
not per sighting.

Per sighting, on arrival: refuse a duplicate id; run the arrival rules; queue the sighting
for the ordered rules, unless it is late (older than the watermark). When the watermark
advances, every subject with queued sightings or deadlines before it is judged by the
ordered rules in event-time order (ties by sighting id), and subjects whose windows are
all over are forgotten.

Subject state (JSON): `seen` {id: ts} for duplicates, `last` newest ts, `q` queued rows for
ordered rules, `tm` deadlines, `r` {rule id: rule state}, `nx`/`xb` scheduling.
"""

from __future__ import annotations

import logging
from typing import Any

from .detectors import Context
from .detectors.base import Event, Timers
from .models import Alert, Sighting, Subject
from .net import Net
from .ruleset import RuleSet
from .schedule import NO_TIME, SECOND
from .stage import Stage, Stats
from .state import KV
from .watchlist import WatchlistView

__all__ = ["BUCKET_MS", "NO_TIME", "Engine", "Stats"]

BUCKET_MS = SECOND
log = logging.getLogger("rings.engine")


class Engine(Stage[Sighting, Alert]):
    def __init__(self, net: Net, rules: RuleSet, watchlist: WatchlistView, store: KV) -> None:
        super().__init__(store, "s:")
        self.net = net
        self.rules = rules
        self.ctx = Context(net, watchlist)
        for d in rules.detectors:
            d.setup(net)
        self.arrival = [d for d in rules.detectors if d.mode == "arrival"]
        self.ordered = [d for d in rules.detectors if d.mode == "ordered"]
        self.by_id = {d.rule_id: d for d in rules.detectors}
        # How long a subject's state lives after its last sighting, at most (links of
        # linked-hit excepted: few subjects have them, and keep_until bounds them).
        self.horizon = max(rules.dedupe_ms, rules.lateness_ms,
                           *(d.horizon_ms() for d in self.ordered))

    # ------------------------------------------------------------------ hooks

    def _arrive(self, s: Sighting, wm: int, out: list[Alert]) -> None:
        key = s.key
        st = self.table.get(key)
        if st is None:
            st = {"seen": {}, "last": NO_TIME}
        seen = st["seen"]
        if s.id in seen:
            self.stats.duplicates += 1
            return
        seen[s.id] = s.ts
        if s.ts > st["last"]:
            st["last"] = s.ts
        self.stats.processed += 1
        stype = s.subject.type
        n0 = len(out)
        for d in self.arrival:
            if d.applies(stype):
                out.extend(d.on_arrival(s, self.ctx, st.setdefault("r", {})
                                        .setdefault(d.rule_id, {}), wm))
        self._count(out, n0)
        if s.ts < wm:
            self.stats.late += 1
            log.debug("late sighting skipped by the ordered rules: %d ms before the watermark",
                      wm - s.ts)
        elif self.ordered:
            self.enqueue(st, [s.ts, s.id, s.site, s.dir, s.tz])
        # Ids are remembered for the dedupe window before the watermark and before the
        # subject's newest sighting, whichever is earlier: a sighting seen again after a
        # restart (input is read at least once) is then still remembered or older than the
        # watermark, so the ordered rules cannot count it twice; and a late sighting's id
        # is not forgotten the moment it is seen.
        floor = min(wm, st["last"]) - self.rules.dedupe_ms
        if min(seen.values()) < floor:
            st["seen"] = {i: t for i, t in seen.items() if t >= floor}
        self._reschedule(key, st)

    def _judge(self, key: str, st: dict[str, Any], limit: int, out: list[Alert]) -> None:
        """Feed the ordered rules everything of this subject before `limit`, in time order.
        At a tie a sighting goes before a deadline: a checkpoint pass exactly at the
        deadline still counts."""
        q = st.get("q") or []
        timers = Timers(st.get("tm") or [])
        if not q and not timers.rows:
            return
        subject = Subject.from_key(key)
        rstate = st.setdefault("r", {})
        stype = subject.type
        n0 = len(out)
        qi = 0
        while True:
            ev_t = q[qi][0] if qi < len(q) and q[qi][0] < limit else None
            tm_t = timers.rows[0][0] if timers.rows and timers.rows[0][0] < limit else None
            if ev_t is None and tm_t is None:
                break
            if tm_t is not None and (ev_t is None or tm_t < ev_t):
                deadline, rule, payload = timers.rows.pop(0)
                d = self.by_id.get(rule)
                if d is not None:
                    out.extend(d.on_timer(deadline, payload, subject, self.ctx,
                                          rstate.setdefault(rule, {})))
                continue
            ev = Event.from_row(q[qi], subject)
            qi += 1
            for d in self.ordered:
                if d.applies(stype):
                    out.extend(d.on_event(ev, self.ctx, rstate.setdefault(d.rule_id, {}),
                                          timers))
        del q[:qi]
        for name, value in (("q", q), ("tm", timers.rows)):
            if value:
                st[name] = value
            else:
                st.pop(name, None)
        self._count(out, n0)

    def _next_action(self, st: dict[str, Any]) -> int:
        keep = st["last"] + self.horizon
        r = st.get("r")
        if r:
            for rule, rs in list(r.items()):
                d = self.by_id.get(rule)
                if d is None or not rs:
                    del r[rule]
                    continue
                keep = max(keep, d.keep_until(rs))
        # Pending work comes first; the windows (`keep`) are looked at again after it.
        pending = [x[0][0] for x in (st.get("q"), st.get("tm")) if x]
        return min(pending) if pending else keep

    def _count(self, out: list[Alert], start: int) -> None:
        """Stamp and count the alerts a hook added to `out` (from `start` on). Counted where
        they are made: process() releases judged alerts through advance(), so counting in
        both would count those twice."""
        for a in out[start:]:
            a.rules_version = self.rules.version
            self.stats.by_rule[a.rule] = self.stats.by_rule.get(a.rule, 0) + 1
        self.stats.alerts += len(out) - start
