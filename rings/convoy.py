"""`convoy`: vehicles travelling with a vehicle of interest (伴随车辆).

Finding companions needs sightings of different subjects side by side, which the subject
stage (partitioned by subject) cannot see. Two more stages do it:

    vehicle sightings ──by site──▶ SiteStage ──co-passes, by pair──▶ PairStage ──▶ alerts

- SiteStage, per site: in event-time order, each vehicle pass is paired with the passes of
  the `gap` before it; a pair becomes a *co-pass* when one of the two vehicles is
  watchlisted (or always, with `all_pairs`). State: the site's last `gap` of passes, and
  apart those of watchlisted vehicles (an unlisted pass pairs only with them).
- PairStage, per pair of vehicles: in event-time order, the co-passes of the last `window`;
  at `sites` distinct sites the pair alerts, then rests for `window`. State: the pair's
  co-passes of the last `window`.

Both stages judge only what the watermark has passed, so the result does not depend on the
order of arrival. The site stage reports, with its co-passes, the event time up to which it
has emitted them all (its frontier); the pair stage's watermark is the lowest frontier of
all site partitions, so it never judges a pair before every co-pass of that time is in.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from .detectors.base import Context
from .detectors.convoy import Convoy
from .detectors.describe import minutes, who
from .models import Alert, Sighting, Subject
from .schedule import NO_TIME
from .stage import Stage
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


class SiteStage(Stage[Sighting, CoPass]):
    def __init__(self, ctx: Context, rule: Convoy, store: KV) -> None:
        super().__init__(store, f"t:{rule.rule_id}:")
        self.ctx = ctx
        self.rule = rule
        self.gap = rule.p["gap"]

    def _arrive(self, s: Sighting, wm: int, out: list[CoPass]) -> None:
        if s.subject.type != "vehicle":
            return
        st = self.table.get(s.site) or {}
        if s.ts < wm:
            self.stats.late += 1
            return
        # A duplicate is queued too; judging finds it next to its twin and skips it.
        self.stats.processed += 1
        self.enqueue(st, [s.ts, s.id, s.subject.key, s.tz])
        self._reschedule(s.site, st)

    def _judge(self, site: str, st: dict[str, Any], limit: int, out: list[CoPass]) -> None:
        q = st.get("q") or []
        # Judged passes of the last `gap`, oldest first: [ts, id, key, tz, listed-then];
        # `hot` holds those whose vehicle was listed, the only partners of an unlisted pass.
        rec: list[list[Any]] = st.get("rec") or []
        hot: list[list[Any]] = st.get("hot") or []
        all_pairs = self.rule.p["all_pairs"]
        gap = self.gap
        n = 0
        for row in q:
            if row[0] >= limit:
                break
            n += 1
            ts, sid, key, tz = row
            if rec and ts <= rec[-1][0] and self._judged(rec, ts, sid):
                self.stats.duplicates += 1      # its twin was judged (now or before)
                self.stats.processed -= 1
                continue
            old = 0
            while old < len(rec) and ts - rec[old][0] > gap:
                old += 1
            if old:
                del rec[:old]
                while hot and ts - hot[0][0] > gap:
                    hot.pop(0)
            mine = self._listed(key, ts)
            for r in (rec if mine is not None or all_pairs else hot):
                if r[2] == key:
                    continue
                theirs = r[4]
                if key < r[2]:
                    cp = CoPass(key, r[2], site, ts, tz, (r[1], sid), mine, theirs)
                else:
                    cp = CoPass(r[2], key, site, ts, tz, (r[1], sid), theirs, mine)
                out.append(cp)
            r = [ts, sid, key, tz, mine]
            rec.append(r)
            if mine is not None:
                hot.append(r)
        del q[:n]
        st["rec"] = rec
        if hot:
            st["hot"] = hot
        else:
            st.pop("hot", None)
        if not q:
            st.pop("q", None)

    @staticmethod
    def _judged(rec: list[list[Any]], ts: int, sid: str) -> bool:
        """Whether pass `sid` at `ts` is among the judged passes (a twin has the same ts)."""
        i = bisect_left(rec, ts, key=lambda r: r[0])
        while i < len(rec) and rec[i][0] == ts:
            if rec[i][1] == sid:
                return True
            i += 1
        return False

    def _listed(self, key: str, ts: int) -> list[str] | None:
        e = self.ctx.listed(key, ts)
        return [e.severity, e.list] if e is not None else None

    def _next_action(self, st: dict[str, Any]) -> int:
        q = st.get("q")
        if q:
            return q[0][0]
        rec = st.get("rec")
        return (rec[-1][0] if rec else NO_TIME) + self.gap      # rec is in time order


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
                st["cd"] = row[0] + window
                out.append(self._alert(key, cps, row))
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
        return Alert(
            rule=self.rule.rule_id, severity=self.rule.severity(sev), subject=s, ts=last[0],
            tz=last[3], evidence=evidence, related=[p], site=last[2], ring=site.ring,
            summary=(f"{who(s)} travelled with {who(p, lst)} past {len(sites)} sites "
                     f"({', '.join(sites)}) in {minutes(last[0] - cps[0][0])}"),
            details={"sites": sites}, rules_version=self.rules_version or None)

    def _next_action(self, st: dict[str, Any]) -> int:
        if st.get("q"):
            return st["q"][0][0]
        keep = max((c[0] for c in st.get("cp", ())), default=NO_TIME) + self.rule.p["window"]
        return max(keep, st.get("cd", NO_TIME))
