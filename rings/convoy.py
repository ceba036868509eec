"""`convoy`: vehicles travelling with a vehicle of interest (伴随车辆).

Finding companions needs sightings of different subjects side by side, which the subject
stage (partitioned by subject) cannot see. Two more stages do it:

    vehicle sightings ──by site──▶ SiteStage ──co-passes, by pair──▶ PairStage ──▶ alerts

- SiteStage, per site: in event-time order, each vehicle pass is paired with the passes of
  the `gap` before it; a pair becomes a *co-pass* when one of the two vehicles is
  watchlisted (or always, with `all_pairs`). State: the site's passes of the last `gap`
  and `lateness`, in time buckets, and apart those of watchlisted vehicles (an unlisted
  pass pairs only with them).
- PairStage, per pair of vehicles: in event-time order, the co-passes of the last `window`;
  at `sites` distinct sites the pair alerts, then rests for `window`. State: the pair's
  co-passes of the last `window`.

Both stages judge only what the watermark has passed, so the result does not depend on the
order of arrival. The site stage reports, with its co-passes, the event time up to which it
has emitted them all (its frontier); the pair stage's watermark is the lowest frontier of
all site partitions, so it never judges a pair before every co-pass of that time is in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .detectors.base import Context
from .detectors.convoy import Convoy
from .detectors.describe import minutes, who
from .models import Alert, Sighting, Subject
from .schedule import NEVER, NO_TIME
from .stage import Stage, insert_sorted
from .state import KV


@dataclass(slots=True)
class CoPass:
    """Two vehicles at one site within `gap`: the unit the pair stage counts."""

    a: str                      # the subject key that sorts first
    b: str
    site: str
    ts: int                     # the later of the two passes
    tz: int
    ids: tuple[str, str]        # sighting ids, earlier first
    wa: list[str] | None        # [severity, list] when `a` was watchlisted at its pass
    wb: list[str] | None

    def row(self) -> list[Any]:
        return [self.ts, "|".join(self.ids), self.site, self.tz, self.wa, self.wb]

    def to_wire(self) -> list[Any]:
        return [self.a, self.b, self.site, self.ts, self.tz, list(self.ids), self.wa, self.wb]

    @staticmethod
    def from_wire(w: list[Any]) -> "CoPass":
        return CoPass(w[0], w[1], w[2], w[3], w[4], (w[5][0], w[5][1]), w[6], w[7])


def vehicle_pass(s: Sighting) -> list[Any]:
    """A vehicle's sighting as the site stage takes it: [ts, id, site, vehicle key, tz].

    The worker's ingest sends these rows on the site topic, so the site stage reads them as
    they come (making a Sighting of each row again cost 0.58 µs, measured), and replay
    makes the same from its sightings."""
    return [s.ts, s.id, s.site, s.subject.key, s.tz]


class SiteStage(Stage[list[Any], CoPass]):
    """Co-passes per site, with the site's passes kept in time buckets.

    A busy site sees dozens of vehicles a second; its last `gap` and `lateness` of passes
    are thousands of rows. Kept as one entity, every envelope rewrote them all (to RocksDB
    and to the changelog: tens of MB/s at city rates). So each site's passes live in
    bucket entities `<site>#<n>` of BUCKET_MS each, and only buckets that changed are
    written. A bucket's rows are sorted by (ts, id); the judged ones are a prefix (`j`),
    since a pass arriving after the watermark sorts after every judged one, and a pass
    before it is late. The site's own entity holds only `hot`: its judged passes of the
    last `gap` whose vehicle was listed, the only partners of an unlisted pass.

    Row: [ts, id, vehicle key, tz, listed-then] (listed-then: [severity, list] or None,
    set when the pass is judged).

    Input: vehicle passes (`vehicle_pass`), of vehicles only.
    """

    BUCKET_MS = 5_000

    def __init__(self, ctx: Context, rule: Convoy, store: KV) -> None:
        super().__init__(store, f"t:{rule.rule_id}:")
        self.ctx = ctx
        self.rule = rule
        self.gap = rule.p["gap"]
        self._over: list[str] = []          # entities over, forgotten after the sweep

    def _arrive(self, p: list[Any], wm: int, out: list[CoPass]) -> None:
        ts, sid, site, vkey, tz = p
        if ts < wm:
            self.stats.late += 1
            return
        key = f"{site}#{ts // self.BUCKET_MS}"
        st = self.table.get(key)
        if st is None:
            st = {"r": [], "j": 0}
        rows = st["r"]
        i = len(rows) - 1                   # a twin has the same ts: look only there
        while i >= 0 and rows[i][0] >= ts:
            if rows[i][0] == ts and rows[i][1] == sid:
                self.stats.duplicates += 1
                return
            i -= 1
        self.stats.processed += 1
        row = [ts, sid, vkey, tz, None]
        if rows and rows[-1][0] >= ts:
            insert_sorted(rows, row)
        else:
            rows.append(row)            # in order: the usual case, without the call
        # _reschedule, inlined (a pass is never over on arrival): once per vehicle sighting.
        nx = self._next_action(st)
        st["nx"] = nx if nx < NEVER else NEVER - 1
        self.table.put(key, st)

    def _judge(self, key: str, st: dict[str, Any], limit: int, out: list[CoPass]) -> None:
        site, sep, _ = key.partition("#")
        if not sep:
            return                          # the site's entity: `hot` is pruned below
        rows = st["r"]
        j = st["j"]
        if j >= len(rows) or rows[j][0] >= limit:
            return
        main = self.table.get(site) or {}
        hot: list[list[Any]] = main.get("hot") or []
        hot_before = len(hot), (hot[0][1] if hot else None)
        all_pairs = self.rule.p["all_pairs"]
        gap = self.gap
        wl = self.ctx.watchlist
        while j < len(rows) and rows[j][0] < limit:
            row = rows[j]
            ts, sid, vkey, tz, _ = row
            j += 1
            while hot and ts - hot[0][0] > gap:
                hot.pop(0)
            # Most vehicles have no entry at all: answered without _listed's two calls.
            mine = self._listed(vkey, ts) if wl.get(vkey) is not None else None
            row[4] = mine
            partners = self._recent(site, ts, row) if mine is not None or all_pairs \
                else hot
            for r in partners:
                if r[2] == vkey:
                    continue
                theirs = r[4]
                if vkey < r[2]:
                    cp = CoPass(vkey, r[2], site, ts, tz, (r[1], sid), mine, theirs)
                else:
                    cp = CoPass(r[2], vkey, site, ts, tz, (r[1], sid), theirs, mine)
                out.append(cp)
            if mine is not None:
                hot.append(row)
        st["j"] = j
        if (len(hot), hot[0][1] if hot else None) != hot_before:
            self._keep_hot(site, main, hot)

    def _keep_hot(self, site: str, main: dict[str, Any], hot: list[list[Any]]) -> None:
        if hot:
            main["hot"] = hot
            self._reschedule(site, main)
        elif main:
            self.table.delete(site)

    def _reschedule(self, key: str, st: dict[str, Any], now: int | None = None) -> None:
        # Within a sweep a bucket (or the site's `hot`) may still be the context of passes
        # judged later in the same sweep: what is over is forgotten after it.
        nx = self._next_action(st)
        if now is not None and nx < now:
            self._over.append(key)
            return
        st["nx"] = nx if nx < NEVER else NEVER - 1
        self.table.put(key, st)

    def _after_sweep(self, limit: int) -> None:
        for key in self._over:
            st = self.table.get(key)
            if st is None:
                continue
            if "#" in key:
                self.table.delete(key)
                self.stats.expired += 1
            else:   # passes from `limit` on need the listed ones of the gap before it
                hot = [h for h in st.get("hot") or () if h[0] >= limit - self.gap]
                self._keep_hot(key, st, hot)
        self._over.clear()

    def _recent(self, site: str, ts: int, row: list[Any]) -> list[list[Any]]:
        """The site's passes of the `gap` before `row` (ties: those sorting before it)."""
        out: list[list[Any]] = []
        b = self.BUCKET_MS
        for n in range((ts - self.gap) // b, ts // b + 1):
            bucket = self.table.get(f"{site}#{n}")
            if bucket is None:
                continue
            for r in bucket["r"]:
                if r is row or (r[0], r[1]) >= (ts, row[1]):
                    break
                if ts - r[0] <= self.gap:
                    out.append(r)
        return out

    def _listed(self, key: str, ts: int) -> list[str] | None:
        e = self.ctx.listed(key, ts)
        return [e.severity, e.list] if e is not None else None

    def _next_action(self, st: dict[str, Any]) -> int:
        hot = st.get("hot")
        if hot is not None:                 # the site's entity: until its first goes
            return hot[0][0] + self.gap
        rows, j = st["r"], st["j"]
        if j < len(rows):
            return rows[j][0]               # the first unjudged pass
        # Judged: a partner for the passes of the next `gap`, then gone.
        return rows[-1][0] + self.gap if rows else NO_TIME


class PairStage(Stage[CoPass, Alert]):
    def __init__(self, ctx: Context, rule: Convoy, store: KV, rules_version: str = "") -> None:
        super().__init__(store, f"p:{rule.rule_id}:")
        self.ctx = ctx
        self.rule = rule
        self.rules_version = rules_version

    def _arrive(self, cp: CoPass, wm: int, out: list[Alert]) -> None:
        key = f"{cp.a}|{cp.b}"
        st = self.table.get(key) or {}
        if cp.ts < wm:
            self.stats.late += 1         # a repeat after a restart, judged already
            return
        row = cp.row()
        if any(r[1] == row[1] for r in st.get("q", ())):
            self.stats.duplicates += 1
            return
        self.stats.processed += 1
        self.enqueue(st, row)
        self._reschedule(key, st)

    def _judge(self, key: str, st: dict[str, Any], limit: int, out: list[Alert]) -> None:
        q = st.get("q") or []
        cps: list[list[Any]] = st.get("cp") or []
        window = self.rule.p["window"]
        n = 0
        for row in q:
            if row[0] >= limit:
                break
            n += 1
            if any(c[1] == row[1] for c in cps):
                continue
            cps = [c for c in cps if row[0] - c[0] <= window] + [row]
            if len({c[2] for c in cps}) >= self.rule.p["sites"] and \
                    row[0] >= st.get("cd", NO_TIME):
                st["cd"] = row[0] + window          # an excepted alert rests the pair too
                alert = self._alert(key, cps, row)
                if self.rule.excepts(alert):
                    self.stats.excepted += 1
                else:
                    out.append(alert)
        del q[:n]
        st["cp"] = cps
        if not q:
            st.pop("q", None)

    def _alert(self, key: str, cps: list[list[Any]], last: list[Any]) -> Alert:
        a, b = key.split("|", 1)
        wa, wb = last[4], last[5]
        if wa is not None and wb is None:
            subject, partner, entry = b, a, wa           # b travels with listed a
        else:
            subject, partner, entry = a, b, wb           # a with listed b (or both listed)
        sev = entry[0] if entry else "low"
        lst = entry[1] if entry else None
        s, p = Subject.from_key(subject), Subject.from_key(partner)
        sites = sorted({c[2] for c in cps})
        evidence = [i for c in cps for i in c[1].split("|")]
        site = self.ctx.net.sites[last[2]]
        alert = Alert(
            rule=self.rule.rule_id, severity=self.rule.severity(sev), subject=s, ts=last[0],
            tz=last[3], evidence=evidence, related=[p], site=last[2], ring=site.ring,
            summary=(f"{who(s)} travelled with {who(p, lst)} past {len(sites)} sites "
                     f"({', '.join(sites)}) in {minutes(last[0] - cps[0][0])}"),
            details={"sites": sites, "listed_severity": sev} if entry else {"sites": sites},
            rules_version=self.rules_version or None)
        alert.plan = self.rule.plan_for(alert, self.ctx.net)
        if self.rule.tags:
            alert.tags = self.rule.tags
        return alert

    def _next_action(self, st: dict[str, Any]) -> int:
        if st.get("q"):
            return st["q"][0][0]
        keep = max((c[0] for c in st.get("cp", ())), default=NO_TIME) + self.rule.p["window"]
        return max(keep, st.get("cd", NO_TIME))
