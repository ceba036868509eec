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
from .models import SUBJECT_TYPES, Alert, Sighting, Subject
from .net import Net
from .ruleset import RuleSet
from .schedule import NEVER, NO_TIME, SECOND
from .stage import Stage, Stats, insert_sorted
from .state import KV
from .watchlist import WatchlistView

__all__ = ["BUCKET_MS", "NO_TIME", "Engine", "Stats"]

BUCKET_MS = SECOND
_NO_QUEUE: list[list[Any]] = []         # (never written to: the rules only read the queue)
log = logging.getLogger("rings.engine")


class Engine(Stage[Sighting, Alert]):
    seals = True            # a subject's judgement changes that subject alone

    def __init__(self, net: Net, rules: RuleSet, watchlist: WatchlistView, store: KV) -> None:
        super().__init__(store, "s:")
        self.net = net
        self.rules = rules
        self.ctx = Context(net, watchlist)
        for d in rules.detectors:
            d.setup(net)
        self.arrival = [d for d in rules.detectors if d.mode == "arrival"]
        self.ordered = [d for d in rules.detectors if d.mode == "ordered"]
        # Sightings are queued for the ordered rules, and for arrival rules that read the
        # queue (Context.queue).
        self._queues = bool(self.ordered) or any(d.reads_queue for d in self.arrival)
        self.by_id = {d.rule_id: d for d in rules.detectors}
        # How long a subject's state lives after its last sighting, at most (links of
        # linked-hit excepted: few subjects have them, and keep_until bounds them).
        self.horizon = max(rules.dedupe_ms, rules.lateness_ms,
                           *(d.horizon_ms() for d in self.ordered))
        # Hot-path lookups, resolved once: the rules per subject type, and the rules whose
        # state may outlive the horizon (the others promise keep_until <= last + horizon).
        types = {t for d in rules.detectors for t in (d.subjects or ())} | set(SUBJECT_TYPES)
        self._arrival_for = {t: [d for d in self.arrival if d.applies(t)] for t in types}
        self._ordered_for = {t: [(d, d.rule_id) for d in self.ordered if d.applies(t)]
                             for t in types}
        # ...and per (subject type, site, direction) the ordered rules that can react there
        # (Detector.reacts), filled in as they are met.
        self._ordered_at: dict[tuple[str, str, str | None], list[tuple[Any, str]]] = {}
        # (rule, id, 0: stateless / 1: stateful / 2: stateful, needs company)
        self._arrival_rules = {t: [self._arrival_entry(d) for d in rules]
                               for t, rules in self._arrival_for.items()}
        # ...of which these when no subject of the sighting is on the watchlist.
        self._arrival_unlisted = {t: [x for x in rules if not x[0].needs_entry]
                                  for t, rules in self._arrival_rules.items()}
        self._outliving = {d.rule_id for d in rules.detectors if d.horizon_ms() <= 0}
        self._dedupe = rules.dedupe_ms
        # Rules whose alerts need more than a version stamp: a plan, tags, exceptions.
        self._finishing = {d.rule_id: d for d in rules.detectors
                           if d.activation is not None or d.tags or d.exceptions is not None}

    # ------------------------------------------------------------------ hooks

    def _arrive(self, s: Sighting, wm: int, out: list[Alert]) -> None:
        subject = s.subject
        key = subject.key
        table = self.table
        st = table.get(key)
        if st is None:
            st = {"seen": {}, "last": NO_TIME}
        seen = st["seen"]
        sid, ts = s.id, s.ts
        if sid in seen:
            self.stats.duplicates += 1
            if "xb" in st:
                # Listed again under its next action: after a crash the subject's state can
                # be restored ahead of the index entry naming it (the repeat of its last
                # envelope is then all duplicates), and unlisted it would never be judged.
                # A second entry in the same second is skipped by the sweep.
                del st["xb"]
                table.put(key, st)
            return
        seen[sid] = ts
        if ts > st["last"]:
            st["last"] = ts
        self.stats.processed += 1
        if s.with_ or self.ctx.watchlist.get(key) is not None:
            arrival = self._arrival_rules.get(subject.type)
        else:
            arrival = self._arrival_unlisted.get(subject.type)
        if arrival is None:
            arrival = [self._arrival_entry(d) for d in self.arrival]
        if arrival:
            n0 = len(out)
            ctx = self.ctx
            ctx.queue = st.get("q") or _NO_QUEUE
            alone = not s.with_
            for d, rid, kind in arrival:
                if not kind:
                    found = d.on_arrival(s, ctx, None, wm)
                else:
                    # A rule's state is kept once it holds something: most arrivals leave
                    # it empty (linked-hit without a link), and `{"r": {rule: {}}}` was in
                    # nearly every vehicle's state written.
                    r = st.get("r")
                    rs = r.get(rid) if r is not None else None
                    if rs is None:
                        if kind == 2 and alone:
                            continue
                        rs = {}
                        found = d.on_arrival(s, ctx, rs, wm)
                        if rs:
                            if r is None:
                                r = st["r"] = {}
                            r[rid] = rs
                    else:
                        found = d.on_arrival(s, ctx, rs, wm)
                if found:
                    out.extend(found)
            if len(out) > n0:
                self._count(out, n0)
        if ts < wm:
            self.stats.late += 1
            log.debug("late sighting skipped by the ordered rules: %d ms before the watermark",
                      wm - ts)
        elif self._queues:
            row = [ts, sid, s.site, s.dir, s.tz]
            q = st.get("q")
            if q:
                insert_sorted(q, row)
            else:
                st["q"] = [row]
        # Ids are remembered for the dedupe window before the watermark and before the
        # subject's newest sighting, whichever is earlier: a sighting seen again after a
        # restart (input is read at least once) is then still remembered or older than the
        # watermark, so the ordered rules cannot count it twice; and a late sighting's id
        # is not forgotten the moment it is seen.
        floor = (wm if wm < st["last"] else st["last"]) - self._dedupe
        if len(seen) > 1 or ts < floor:
            if min(seen.values()) < floor:
                st["seen"] = {i: t for i, t in seen.items() if t >= floor}
        # _reschedule, inlined: with sightings queued the next action is the first of them
        # or of the deadlines.
        q = st.get("q")
        if q:
            nx = q[0][0]
            tm = st.get("tm")
            if tm and tm[0][0] < nx:
                nx = tm[0][0]
        else:
            nx = self._next_action(st)
        st["nx"] = nx if nx < NEVER else NEVER - 1
        table.put(key, st)

    @staticmethod
    def _arrival_entry(d: Any) -> tuple[Any, str, int]:
        return d, d.rule_id, 0 if d.stateless else 2 if d.needs_company else 1

    def _rules_at(self, stype: str, site: str, direction: str | None
                  ) -> list[tuple[Any, str]]:
        """The ordered rules for this subject type that can react at this site and
        direction (all of them at a site the net does not know: let them say so)."""
        rules = self._ordered_for.get(stype, ())
        where = self.net.sites.get(site)
        found = [(d, rid) for d, rid in rules if where is None or d.reacts(where, direction)]
        self._ordered_at[(stype, site, direction)] = found
        return found

    def _judge(self, key: str, st: dict[str, Any], limit: int, out: list[Alert]) -> None:
        """Feed the ordered rules everything of this subject before `limit`, in time order.
        At a tie a sighting goes before a deadline: a checkpoint pass exactly at the
        deadline still counts."""
        q = st.get("q")
        tm = st.get("tm")
        if not q and not tm:
            return
        stype = key.partition(":")[0]
        subject: Subject | None = None          # made when a deadline or an alert needs it
        rstate = st.get("r")
        if rstate is None:
            rstate = st["r"] = {}
        rules_at, ordered_at = self._rules_at, self._ordered_at
        ctx = self.ctx
        n0 = len(out)
        q = q or []
        timers = Timers(tm or [])
        rows = timers.rows
        nq = len(q)
        qi = 0
        while True:
            ev_t = q[qi][0] if qi < nq and q[qi][0] < limit else None
            tm_t = rows[0][0] if rows and rows[0][0] < limit else None
            if ev_t is None and tm_t is None:
                break
            if tm_t is not None and (ev_t is None or tm_t < ev_t):
                deadline, rule, payload = rows.pop(0)
                d = self.by_id.get(rule)
                if d is not None:
                    rs = rstate.get(rule)
                    if rs is None:
                        rs = rstate[rule] = {}
                    if subject is None:
                        subject = Subject.from_key(key)
                    out.extend(d.on_timer(deadline, payload, subject, ctx, rs))
                continue
            row = q[qi]
            qi += 1
            ordered = ordered_at.get((stype, row[2], row[3]))
            if ordered is None:
                ordered = rules_at(stype, row[2], row[3])
            if not ordered:
                continue
            ev = Event(row[0], row[1], row[2], row[3], row[4], subject, key)
            for d, rid in ordered:
                rs = rstate.get(rid)
                if rs is None:
                    rs = rstate[rid] = {}
                found = d.on_event(ev, ctx, rs, timers)
                if found:
                    out.extend(found)
        if qi == nq:
            st.pop("q", None)
        else:
            del q[:qi]
        if rows:
            st["tm"] = rows
        else:
            st.pop("tm", None)
        if len(out) > n0:
            self._count(out, n0)

    def _reschedule(self, key: str, st: dict[str, Any], now: int | None = None) -> None:
        # Stage._reschedule with _next_action inlined (it runs for every judged subject).
        q = st.get("q")
        tm = st.get("tm")
        if q or tm:
            if q and tm:
                nx = min(q[0][0], tm[0][0])
            else:
                nx = q[0][0] if q else tm[0][0]
        else:
            nx = self._keep(st)
        if now is not None and nx < now:
            self.table.delete(key)
            self.stats.expired += 1
            return
        st["nx"] = nx if nx < NEVER else NEVER - 1
        table = self.table
        table.put(key, st)
        table.seal(key, st)

    def _next_action(self, st: dict[str, Any]) -> int:
        # Pending work comes first; the windows (`keep`) are looked at again after it.
        q = st.get("q")
        tm = st.get("tm")
        if q or tm:
            if q and tm:
                return min(q[0][0], tm[0][0])
            return q[0][0] if q else tm[0][0]
        return self._keep(st)

    def _keep(self, st: dict[str, Any]) -> int:
        """Until when the subject's windows last (nothing pending); forgets empty rule
        states and those of rules since removed."""
        keep = st["last"] + self.horizon
        r = st.get("r")
        if r:
            by_id, outliving = self.by_id, self._outliving
            for rule in list(r):
                rs = r[rule]
                if not rs or rule not in by_id:
                    del r[rule]                 # nothing kept, or a rule since removed
                elif rule in outliving:
                    until = by_id[rule].keep_until(rs)
                    if until > keep:
                        keep = until
        return keep

    def _count(self, out: list[Alert], start: int) -> None:
        """Stamp and count the alerts a hook added to `out` (from `start` on). Counted where
        they are made: process() releases judged alerts through advance(), so counting in
        both would count those twice."""
        if self._finishing:
            self._finish(out, start)
        for a in out[start:]:
            a.rules_version = self.rules.version
            self.stats.by_rule[a.rule] = self.stats.by_rule.get(a.rule, 0) + 1
        self.stats.alerts += len(out) - start

    def _finish(self, out: list[Alert], start: int) -> None:
        """The rules' `activate:` (the plan), `tags:` and `exceptions:` (an excepted alert
        is dropped here, the rule's state being as if it had been sent)."""
        finishing = self._finishing
        kept = []
        for a in out[start:]:
            d = finishing.get(a.rule)
            if d is not None:
                if d.exceptions is not None and d.exceptions.drops(a):
                    self.stats.excepted += 1
                    continue
                if d.activation is not None:
                    a.plan = d.plan_for(a, self.net)
                if d.tags:
                    a.tags = d.tags
            kept.append(a)
        if len(kept) < len(out) - start:
            out[start:] = kept
